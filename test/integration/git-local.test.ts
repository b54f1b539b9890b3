// A local directory as the source: metadata read with isomorphic-git from real repositories.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { isFilesystemPath } from '../../src/git/local-source.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { git, tempDir, type TempDir } from '../helpers/fixtures.js';
import { workRepo } from '../helpers/git-http-server.js';

const ctx: PhaseContext = { signal: new AbortController().signal, log: { write: () => undefined } };
const provider = createSourceProvider({ workDir: '/nonexistent-work-dir', git: { depth: 50, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1, tokenHosts: [] } });

function job(path: string, extra: Partial<BuildJob> = {}): BuildJob {
  return {
    id: 'local-1',
    trigger: 'cli',
    source: { kind: 'local', path },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
    ...extra,
  };
}

const checkout = (path: string, extra: Partial<BuildJob> = {}) => provider.checkout({ kind: 'local', path }, job(path, extra), ctx);

describe('git source: local directory', () => {
  const temps: TempDir[] = [];
  const temp = async () => {
    const t = await tempDir();
    temps.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(temps.splice(0).map((t) => t.cleanup()));
  });

  it('reads commit, branch, commit time, and names the repository after the directory', async () => {
    const t = await temp();
    const repo = await workRepo(t, 'my-service');
    const commit = repo.commit({ 'main.go': 'package main\n', '.gitignore': 'dist/\n' }, 'one');
    const result = await checkout(repo.dir, { repository: { before: 'a'.repeat(40) } });
    expect(result.dir).toBe(repo.dir);
    expect(result.repository).toEqual({ fullName: 'my-service', ref: 'refs/heads/main', branch: 'main', commit, before: 'a'.repeat(40), dirty: false });
    expect(result.commitTime).toBe(Number(repo.git(['log', '-1', '--format=%ct'])));
    expect(result.warnings).toEqual([]);
    await result.dispose();
    // dispose() must not touch the user's directory
    expect(repo.git(['status', '--porcelain'])).toBe('');
  });

  it('takes owner/name and a credential-free URL from the origin remote', async () => {
    const t = await temp();
    const repo = await workRepo(t, 'checkout-dir');
    repo.commit({ 'a.txt': 'a' });
    repo.git(['remote', 'add', 'origin', 'https://someone:s3cr3t-t0ken@github.example/acme/widget.git']);
    const result = await checkout(repo.dir);
    expect(result.repository.fullName).toBe('acme/widget');
    expect(result.repository.cloneUrl).toBe('https://github.example/acme/widget.git');
    expect(JSON.stringify(result.repository)).not.toContain('s3cr3t');
  });

  it('names a clone of a directory after the directory built, not the origin path\'s last segments', async () => {
    const t = await temp();
    const upstream = await workRepo(t, 'main');
    upstream.commit({ 'a.txt': 'a' });
    for (const [origin, into] of [[upstream.dir, 'api'], [`${upstream.dir}/.`, 'api-dot'], [`file://${upstream.dir}`, 'api-file'], ['../main', 'api-relative']] as const) {
      const dir = join(t.path, into);
      execFileSync('git', ['clone', '-q', upstream.dir, dir]);
      execFileSync('git', ['-C', dir, 'remote', 'set-url', 'origin', origin]);
      const result = await checkout(dir);
      expect(result.repository.fullName, origin).toBe(into);
      expect(result.repository.cloneUrl, origin).toBeUndefined();
    }
    // scp-like and URL remotes still name owner/name.
    expect(isFilesystemPath('git@github.com:acme/widget.git')).toBe(false);
    expect(isFilesystemPath('ssh://git@github.com/acme/widget.git')).toBe(false);
    expect(isFilesystemPath('./widget')).toBe(true);
  });

  it('reports a detached HEAD without a branch', async () => {
    const t = await temp();
    const repo = await workRepo(t);
    const first = repo.commit({ 'a.txt': 'a' });
    repo.commit({ 'a.txt': 'b' });
    repo.git(['checkout', '-q', '--detach', first]);
    const result = await checkout(repo.dir);
    expect(result.repository.commit).toBe(first);
    expect(result.repository.branch).toBeUndefined();
    expect(result.repository.ref).toBe(first);
  });

  it('detects a dirty worktree: modified, deleted and untracked files count, ignored files do not', async () => {
    const t = await temp();
    const repo = await workRepo(t);
    repo.commit({ 'a.txt': 'a\n', 'b.txt': 'b\n', '.gitignore': 'dist/\n*.log\n' });
    await mkdir(join(repo.dir, 'dist'));
    await writeFile(join(repo.dir, 'dist', 'app'), 'binary');
    await writeFile(join(repo.dir, 'debug.log'), 'log');
    expect((await checkout(repo.dir)).repository.dirty).toBe(false);

    await writeFile(join(repo.dir, 'a.txt'), 'changed\n');
    expect((await checkout(repo.dir)).repository.dirty).toBe(true);
    repo.git(['checkout', '--', 'a.txt']);

    await rm(join(repo.dir, 'b.txt'));
    expect((await checkout(repo.dir)).repository.dirty).toBe(true);
    repo.git(['checkout', '--', 'b.txt']);

    await writeFile(join(repo.dir, 'new.txt'), 'untracked\n');
    expect((await checkout(repo.dir)).repository.dirty).toBe(true);
    await rm(join(repo.dir, 'new.txt'));

    // staged but identical to HEAD again: clean
    expect((await checkout(repo.dir)).repository.dirty).toBe(false);
    // the user's index is left alone: no refresh written by us
    expect(repo.git(['status', '--porcelain'])).toBe('');
  });

  it('reads a linked worktree (git worktree add): its branch, its commit, its own changes', async () => {
    const t = await temp();
    const repo = await workRepo(t, 'main-checkout');
    repo.commit({ 'main.go': 'package main\n', '.gitignore': 'dist/\n' });
    const linked = join(t.path, 'linked');
    repo.git(['worktree', 'add', '-q', '-b', 'feature', linked]);
    const commit = repo.git(['-C', linked, 'rev-parse', 'HEAD']);
    await mkdir(join(linked, 'dist'));
    await writeFile(join(linked, 'dist', 'app'), 'ignored build output');
    const clean = await checkout(linked);
    expect(clean.repository).toMatchObject({ fullName: 'linked', branch: 'feature', ref: 'refs/heads/feature', commit, dirty: false });
    expect(clean.commitTime).toBe(Number(repo.git(['-C', linked, 'log', '-1', '--format=%ct'])));
    expect(await clean.objectIdOf?.('main.go')).toBe(repo.git(['-C', linked, 'rev-parse', 'HEAD:main.go']));
    // A change in the main checkout is not the linked worktree's, and the other way round.
    await writeFile(join(repo.dir, 'main.go'), 'package main // edited there\n');
    expect((await checkout(linked)).repository.dirty).toBe(false);
    await writeFile(join(linked, 'main.go'), 'package main // edited here\n');
    expect((await checkout(linked)).repository.dirty).toBe(true);
    // Staged as well: HEAD's files decide.
    repo.git(['-C', linked, 'add', 'main.go']);
    expect((await checkout(linked)).repository.dirty).toBe(true);
    repo.git(['-C', linked, 'checkout', 'HEAD', '--', 'main.go']);
    expect((await checkout(linked)).repository.dirty).toBe(false);
  });

  it('is fast on a small repository', async () => {
    const t = await temp();
    const repo = await workRepo(t);
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`src/pkg${i % 10}/file${i}.go`] = `package p\n// ${i}\n`;
    repo.commit(files);
    await checkout(repo.dir);
    const started = performance.now();
    const result = await checkout(repo.dir);
    expect(result.repository.dirty).toBe(false);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('refuses a directory that is not a Git repository, saying how to fix it (exit 2)', async () => {
    const t = await temp();
    const error = await checkout(t.path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(2);
    expect((error as InputError).message).toContain(t.path);
    expect((error as InputError).message).toContain('git init && git add -A && git commit -m');
    expect((error as InputError).hint).toContain('git init && git add -A && git commit -m');
  });

  it('refuses a repository without commits, and a missing directory', async () => {
    const t = await temp();
    git(t.path, ['init', '-q']);
    const error = await checkout(t.path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).message).toMatch(/without any commit/);
    expect((error as InputError).hint).toContain('git commit');
    await expect(checkout(join(t.path, 'nope'))).rejects.toBeInstanceOf(InputError);
  });

  it('lists changed files since a base, relative to the directory, uncommitted changes included', async () => {
    const t = await temp();
    const repo = await workRepo(t);
    const base = repo.commit({ 'apps/api/main.go': 'v1', 'apps/web/index.js': 'v1', 'README.md': 'r' });
    repo.commit({ 'apps/api/main.go': 'v2', 'libs/util/u.go': 'new' });
    repo.git(['rm', '-q', 'README.md']);
    repo.git(['commit', '-q', '-m', 'rm readme']);
    const result = await checkout(repo.dir);
    expect(await result.changedFilesSince(base, ctx)).toEqual(['README.md', 'apps/api/main.go', 'libs/util/u.go']);
    expect(await result.changedFilesSince('0'.repeat(40), ctx)).toBeUndefined();
    expect(await result.changedFilesSince('f'.repeat(40), ctx)).toBeUndefined();

    await writeFile(join(repo.dir, 'apps/web/index.js'), 'v2-uncommitted');
    const dirty = await checkout(repo.dir);
    expect(await dirty.changedFilesSince(base, ctx)).toEqual(['README.md', 'apps/api/main.go', 'apps/web/index.js', 'libs/util/u.go']);

    // a subdirectory of a repository: paths relative to it, other directories left out
    const sub = await checkout(join(repo.dir, 'apps'));
    expect(sub.repository.fullName).toBe('apps');
    expect(await sub.changedFilesSince(base, ctx)).toEqual(['api/main.go', 'web/index.js']);
  });

  it('takes the base as git rev-parse would: branches, tags, remote branches, HEAD~N and ^N', async () => {
    const t = await temp();
    const repo = await workRepo(t);
    const root = repo.commit({ 'a.txt': '1' }, 'root');
    repo.git(['tag', '-a', '-m', 'release', 'v1']);
    repo.git(['update-ref', 'refs/remotes/origin/main', root]);
    repo.git(['checkout', '-q', '-b', 'topic']);
    const onTopic = repo.commit({ 'topic.txt': 't' }, 'topic');
    repo.git(['checkout', '-q', 'main']);
    repo.commit({ 'b.txt': '2' }, 'second');
    repo.git(['merge', '-q', '--no-ff', '-m', 'merge topic', 'topic']);
    const merged = await checkout(repo.dir);

    const sinceRoot = ['b.txt', 'topic.txt'];
    for (const base of [root, root.slice(0, 7), 'v1', 'refs/tags/v1', 'origin/main', 'HEAD~2', 'HEAD^1^', 'main~1~1', 'HEAD^^', 'HEAD~2^0']) {
      expect(await merged.changedFilesSince(base, ctx), base).toEqual(sinceRoot);
    }
    expect(await merged.changedFilesSince('HEAD^2', ctx)).toEqual(['b.txt']); // the merged topic's side
    expect(await merged.changedFilesSince('topic', ctx)).toEqual(['b.txt']);
    expect(onTopic).toBe(repo.git(['rev-parse', 'HEAD^2']));
    expect(await merged.changedFilesSince('HEAD', ctx)).toEqual([]);
    // Nothing there: every project counts as affected.
    for (const base of ['HEAD~9', 'HEAD^3', 'no-such-branch', 'main~x', '../../etc/passwd', '']) {
      expect(await merged.changedFilesSince(base, ctx), base).toBeUndefined();
    }
  });
});
