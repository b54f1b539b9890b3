// The symlink check of detect (detect/tree-symlinks.ts) on real trees with real links.

import { existsSync } from 'node:fs';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UnsafeSymlinkError } from '../../src/core/errors.js';
import { createProjectDetector } from '../../src/detect/detect-projects.js';
import { assertNoEscapingSymlinks, findEscapingSymlinks } from '../../src/detect/tree-symlinks.js';
import type { ProjectDetector } from '../../src/core/ports.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

let root: TempDir;
let tree: string;
let outside: string;

beforeEach(async () => {
  root = await tempDir('oci-build-links-');
  tree = join(root.path, 'repo');
  outside = join(root.path, 'outside');
  await mkdir(join(tree, 'src', 'pkg'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(tree, 'go.mod'), 'module example.com/x\n');
  await writeFile(join(tree, 'src', 'pkg', 'a.go'), 'package pkg\n');
});

afterEach(async () => {
  await root.cleanup();
});

describe('findEscapingSymlinks', () => {
  it('accepts links that stay inside: relative, absolute into the tree, to the tree itself, dangling inside', async () => {
    await symlink('src/pkg', join(tree, 'pkg'));
    await symlink(join(tree, 'go.mod'), join(tree, 'src', 'go.mod'));
    await symlink('..', join(tree, 'src', 'root'));
    await symlink('../dist/app', join(tree, 'src', 'later'));
    expect(await findEscapingSymlinks(tree)).toEqual([]);
    await expect(assertNoEscapingSymlinks(tree)).resolves.toBeUndefined();
  });

  it('finds absolute, relative and dangling links leading out, and links through other links', async () => {
    await symlink(outside, join(tree, 'dist'));
    await symlink('../../outside/x', join(tree, 'src', 'up'));
    await symlink('/nonexistent/oci-build/target', join(tree, 'src', 'pkg', 'dangling'));
    await symlink('dist', join(tree, 'via-dist'));
    const found = await findEscapingSymlinks(tree);
    expect(found.map((f) => f.link)).toEqual(['dist', 'src/pkg/dangling', 'src/up', 'via-dist']);
    expect(found.find((f) => f.link === 'via-dist')).toMatchObject({ target: 'dist', resolved: outside });
    expect(found.find((f) => f.link === 'src/up')).toMatchObject({ target: '../../outside/x', resolved: join(outside, 'x') });
  });

  it('walks node_modules (a repository may commit it) but not .git', async () => {
    await mkdir(join(tree, 'node_modules', '.bin'), { recursive: true });
    await symlink('/etc', join(tree, 'node_modules', '.bin', 'tool'));
    await mkdir(join(tree, '.git', 'hooks'), { recursive: true });
    await symlink('/etc', join(tree, '.git', 'hooks', 'pre-commit'));
    expect((await findEscapingSymlinks(tree)).map((f) => f.link)).toEqual(['node_modules/.bin/tool']);
  });

  it('finds every link of a wide and deep tree, its directories listed many at a time', async () => {
    const expected: string[] = [];
    for (let a = 0; a < 30; a++) {
      for (let b = 0; b < 12; b++) {
        const dir = join(tree, 'node_modules', `p${a}`, 'lib', `d${b}`, ...(b % 3 === 0 ? ['deep', 'er'] : []));
        await mkdir(dir, { recursive: true });
        if ((a + b) % 7 === 0) {
          await symlink(outside, join(dir, 'out'));
          expected.push(`${join(dir, 'out').slice(tree.length + 1)}`);
        }
        if ((a * b) % 5 === 1) await symlink('.', join(dir, 'in'));
      }
    }
    const found = (await findEscapingSymlinks(tree)).map((f) => f.link);
    expect(found).toEqual([...expected].sort((x, y) => x.localeCompare(y)));
    expect(found.length).toBeGreaterThan(40);
  });

  it('judges a tree reached through a link by its real path', async () => {
    const alias = join(root.path, 'alias');
    await symlink(tree, alias);
    await symlink(join(tree, 'src'), join(tree, 'abs-src'));
    expect(await findEscapingSymlinks(alias)).toEqual([]);
  });
});

describe('detect with an escaping link', () => {
  let detector: ProjectDetector;
  beforeEach(() => {
    detector = createProjectDetector({ overrides: {}, nx: { detect: async () => Promise.reject(new Error('the Nx detector must not run')) } });
  });

  it('fails with E_UNSAFE_SYMLINK (a build failure, never retried) naming the link and its target', async () => {
    await symlink(outside, join(tree, 'dist'));
    const error = await detector.detect(tree, { name: 'x' }, { signal: new AbortController().signal, log: { write: () => {} } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsafeSymlinkError);
    const e = error as UnsafeSymlinkError;
    expect(e.code).toBe('E_UNSAFE_SYMLINK');
    expect(e.exitCode).toBe(1);
    expect(e.transient).toBe(false);
    expect(e.message).toContain(`dist -> ${outside}`);
    expect(e.hint).toBeTruthy();
    expect(await readdir(outside)).toEqual([]);
  });

  it('checks before the Nx detector runs anything', async () => {
    await writeFile(join(tree, 'nx.json'), '{}');
    await symlink(outside, join(tree, 'node_modules'));
    const error = await detector.detect(tree, { name: 'x' }, { signal: new AbortController().signal, log: { write: () => {} } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsafeSymlinkError);
    expect(existsSync(join(outside, 'nx'))).toBe(false);
  });
});
