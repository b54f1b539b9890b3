// The direct reader of local repositories (src/git/local-repository.ts) against git and
// isomorphic-git, which it replaces on a local build's path: HEAD and its branch, commits loose
// and packed, `git rev-parse <commit>:<path>`, config values, and the gitignore decisions of
// isomorphic-git's statusMatrix.

import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import git from '../../src/git/isomorphic-git.js';
import { findRepositoryRoot, lastConfigValue, LocalRepository } from '../../src/git/local-repository.js';
import { git as runGit, tempDir, type TempDir } from '../helpers/fixtures.js';

let temp: TempDir;
let count = 0;
beforeAll(async () => {
  temp = await tempDir('oci-build-local-repository-');
});
afterAll(async () => {
  await temp.cleanup();
});

function newRepo(files: Record<string, string> = { 'a.txt': 'a\n', 'src/lib/util.go': 'package lib\n', 'docs/x.md': 'x\n' }): string {
  const dir = join(temp.path, `repo-${count++}`);
  mkdirSync(dir);
  runGit(dir, ['init', '-q', '-b', 'main']);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  runGit(dir, ['add', '-A']);
  runGit(dir, ['commit', '-q', '-m', 'one']);
  return dir;
}

/** `git config --get` of the value as printed, untrimmed (the helper trims); undefined when unset. */
function gitConfigGet(dir: string, key: string): string | undefined {
  try {
    return execFileSync('git', ['config', '--get', key], { cwd: dir, encoding: 'utf8' }).replace(/\n$/, '');
  } catch {
    return undefined;
  }
}

const open = (dir: string) => {
  const repo = LocalRepository.at(dir);
  if (!repo) throw new Error(`no repository at ${dir}`);
  return repo;
};

describe('local repository: HEAD, commits, trees', () => {
  it('reads HEAD, its branch and its commit as git does, with loose and with packed refs and objects', () => {
    const dir = newRepo();
    runGit(dir, ['checkout', '-q', '-b', 'feature/deep/name']);
    writeFileSync(join(dir, 'a.txt'), 'b\n');
    runGit(dir, ['commit', '-q', '-am', 'two']);
    for (const state of ['loose', 'packed']) {
      if (state === 'packed') {
        runGit(dir, ['gc', '-q', '--aggressive']);
        runGit(dir, ['pack-refs', '--all']);
        expect(fs.existsSync(join(dir, '.git', 'refs', 'heads', 'feature', 'deep', 'name')), state).toBe(false);
      }
      const repo = open(dir);
      try {
        expect(repo.head(), state).toEqual({ commit: runGit(dir, ['rev-parse', 'HEAD']), branch: 'feature/deep/name' });
        expect(repo.readCommit(runGit(dir, ['rev-parse', 'HEAD'])), state).toEqual({
          tree: runGit(dir, ['rev-parse', 'HEAD^{tree}']),
          committerTime: Number(runGit(dir, ['log', '-1', '--format=%ct'])),
        });
      } finally {
        repo.close();
      }
    }
  });

  it('reads a detached HEAD without a branch, and leaves an unborn branch, or HEAD on a non-branch ref, to isomorphic-git', () => {
    const dir = newRepo();
    const first = runGit(dir, ['rev-parse', 'HEAD']);
    runGit(dir, ['checkout', '-q', '--detach', first]);
    expect(open(dir).head()).toEqual({ commit: first });

    runGit(dir, ['checkout', '-q', '--orphan', 'unborn']);
    expect(open(dir).head()).toBeUndefined();

    runGit(dir, ['symbolic-ref', 'HEAD', 'refs/remotes/origin/main']);
    expect(open(dir).head()).toBeUndefined();

    const empty = join(temp.path, `empty-${count++}`);
    mkdirSync(empty);
    runGit(empty, ['init', '-q']);
    expect(open(empty).head()).toBeUndefined();
  });

  it("reads a linked worktree (git worktree add) and a submodule's checkout, whose .git is a file naming the git directory", () => {
    const main = newRepo();
    runGit(main, ['config', 'remote.origin.url', 'https://github.com/acme/api.git']);
    mkdirSync(join(main, '.git', 'info'), { recursive: true });
    writeFileSync(join(main, '.git', 'info', 'exclude'), 'secret-notes.txt\n');
    const linked = join(temp.path, `linked-${count++}`);
    runGit(main, ['worktree', 'add', '-q', '-b', 'feature', linked]);
    writeFileSync(join(linked, 'a.txt'), 'on feature\n');
    runGit(linked, ['commit', '-q', '-am', 'feature work']);
    runGit(main, ['gc', '-q']);
    const repo = open(linked);
    try {
      expect(repo.plain).toBe(false);
      expect(repo.indexFile).toBe(join(main, '.git', 'worktrees', linked.split('/').pop()!, 'index'));
      expect(repo.head()).toEqual({ commit: runGit(linked, ['rev-parse', 'HEAD']), branch: 'feature' });
      expect(repo.readCommit(runGit(linked, ['rev-parse', 'HEAD']))?.tree).toBe(runGit(linked, ['rev-parse', 'HEAD^{tree}']));
      expect(repo.config('remote.origin.url')).toBe('https://github.com/acme/api.git');
      expect(repo.isIgnored('secret-notes.txt')).toBe(true);
      const files = repo.filesOf(runGit(linked, ['rev-parse', 'HEAD^{tree}']));
      const listed = runGit(linked, ['ls-tree', '-r', 'HEAD']).split('\n').map((line) => {
        const [meta, path] = line.split('\t');
        const [mode, , oid] = meta!.split(' ');
        return [path!, { oid: oid!, mode: mode! }] as const;
      });
      expect(files).toEqual(new Map(listed));
      expect(repo.filesOf(runGit(linked, ['rev-parse', 'HEAD^{tree}']), 'src')).toEqual(new Map(listed.filter(([p]) => p.startsWith('src/'))));
    } finally {
      repo.close();
    }

    const outer = newRepo();
    const inner = newRepo({ 'lib.go': 'package lib\n' });
    runGit(outer, ['-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', inner, 'vendor/lib']);
    const checkout = open(join(outer, 'vendor', 'lib'));
    expect(checkout.plain).toBe(false);
    expect(checkout.gitdir).toBe(join(outer, '.git', 'modules', 'vendor', 'lib'));
    expect(checkout.head()?.commit).toBe(runGit(inner, ['rev-parse', 'HEAD']));
  });

  it('finds the root from a subdirectory, and none outside a repository', () => {
    const dir = newRepo();
    expect(findRepositoryRoot(join(dir, 'src', 'lib'))).toBe(dir);
    const plain = join(temp.path, `plain-${count++}`);
    mkdirSync(plain);
    expect(findRepositoryRoot(plain)).toBe(findRepositoryRoot(temp.path));
    expect(LocalRepository.at(plain)).toBeUndefined();
  });

  it("gives an object's id at a path as git rev-parse <commit>:<path>, loose and packed", () => {
    const dir = newRepo({ 'a.txt': 'a\n', 'src/lib/util.go': 'package lib\n', 'src/main.go': 'package main\n', 'docs/x.md': 'x\n' });
    const tree = runGit(dir, ['rev-parse', 'HEAD^{tree}']);
    const paths = ['', '.', './', 'src', 'src/', './src/lib', 'src/lib/util.go', 'a.txt', 'docs/x.md', 'nope', 'src/nope', 'a.txt/under-a-file', '../outside'];
    for (const state of ['loose', 'packed']) {
      if (state === 'packed') runGit(dir, ['gc', '-q']);
      const repo = open(dir);
      try {
        for (const path of paths) {
          let expected: string | null;
          try {
            expected = runGit(dir, ['rev-parse', '-q', '--verify', `HEAD:${path.replace(/^\.\/?/, '')}`]);
          } catch {
            expected = null;
          }
          if (path.startsWith('..')) expected = null;
          expect(repo.objectIdIn(tree, path), `${state} ${path}`).toBe(expected);
        }
      } finally {
        repo.close();
      }
    }
  });
});

describe('local repository: config values', () => {
  const value = fc.stringMatching(/^[a-zA-Z0-9 #;"\\/:@.=_\t-]{0,24}$/);

  it('reads a value git wrote as git config --get reads it, whatever its characters', () => {
    const dir = newRepo();
    fc.assert(
      fc.property(value, (url) => {
        runGit(dir, ['config', 'remote.origin.url', url]);
        expect(open(dir).config('remote.origin.url')).toBe(gitConfigGet(dir, 'remote.origin.url'));
      }),
      { numRuns: 60 },
    );
  });

  it('reads hand-written forms: quotes, comments, continued lines, old subsections, the last value, case', () => {
    const dir = newRepo();
    const file = join(dir, '.git', 'config');
    const cases = [
      '[remote "origin"]\n\turl = https://github.com/acme/api.git\n',
      '[remote "origin"]\n\turl = "https://github.com/acme/api.git" ; a comment\n',
      '[Remote "origin"]\n\tURL=https://first.example/a.git\n\turl = https://github.com/acme/api.git # last wins\n',
      '[remote "origin"]\n\turl = https://github.com/ac\\\nme/api.git\n',
      '[remote "other"]\n\turl = https://other.example/x.git\n[remote "origin"] url = https://github.com/acme/api.git\n',
      '[remote.origin]\n\turl = https://github.com/acme/api.git\n',
      '[remote "Origin"]\n\turl = https://case.example/x.git\n',
      '[remote "origin"]\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n',
      '[remote "origin"]\n\turl\n',
    ];
    for (const text of cases) {
      writeFileSync(file, `[core]\n\trepositoryformatversion = 0\n${text}`);
      expect(open(dir).config('remote.origin.url'), text).toBe(gitConfigGet(dir, 'remote.origin.url'));
    }
    expect(lastConfigValue('[a "b"]\nc = d\n', { section: 'a', subsection: 'b', key: 'c' })).toBe('d');
  });
});

describe('local repository: ignore rules', () => {
  const patterns = ['dist/', '*.log', '!keep.log', 'build/out/', '/root-only.txt', 'sub/', '!sub/keep.txt', '**/gen/*.go', 'tmp', '!tmp/x', 'a/**/b', '#comment', '\\#hash', 'space\\ name', '*.o', '!*.o.keep'];
  const paths = ['dist', 'dist/app', 'debug.log', 'keep.log', 'x/keep.log', 'build/out', 'build/out/o.bin', 'build/notes.txt', 'root-only.txt', 'x/root-only.txt', 'sub', 'sub/keep.txt', 'sub/other', 'src/gen/a.go', 'gen/b.go', 'tmp', 'tmp/x', 'a/b', 'a/q/b', '#hash', 'space name', 'x.o', 'x.o.keep', 'src/lib/z.o', 'src/lib/.git', 'deep/dist/file'];

  it("decides every untracked path as isomorphic-git's isIgnored does, with nested .gitignore files and info/exclude", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.subarray(patterns),
        fc.subarray(patterns),
        fc.subarray(patterns),
        async (root, nested, exclude) => {
          const dir = newRepo();
          writeFileSync(join(dir, '.gitignore'), root.join('\n'));
          mkdirSync(join(dir, 'src', 'lib'), { recursive: true });
          writeFileSync(join(dir, 'src', '.gitignore'), nested.join('\n'));
          mkdirSync(join(dir, '.git', 'info'), { recursive: true });
          writeFileSync(join(dir, '.git', 'info', 'exclude'), exclude.join('\n'));
          const repo = open(dir);
          for (const path of [...paths, ...paths.map((p) => `src/${p}`)]) {
            expect(repo.isIgnored(path), `${path} with ${JSON.stringify({ root, nested, exclude })}`).toBe(await git.isIgnored({ fs, dir, filepath: path }));
          }
          rmSync(dir, { recursive: true, force: true });
        },
      ),
      { numRuns: 40 },
    );
  });
});
