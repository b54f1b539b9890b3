// The index-based worktree status (src/git/worktree-status.ts) against the two oracles it must
// agree with: isomorphic-git's statusMatrix walk (what local builds used before, and still use
// when the index cannot tell) and real git (`git diff HEAD` + untracked, not ignored files).

import { chmodSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import git from '../../src/git/isomorphic-git.js';
import { LocalRepository } from '../../src/git/local-repository.js';
import { worktreeChangesWalked } from '../../src/git/local-source.js';
import { gitObjectId } from '../../src/git/object-hash.js';
import { parseIndex, statTrusted, worktreeChangesFromIndex } from '../../src/git/worktree-status.js';
import { git as runGit, tempDir, type TempDir } from '../helpers/fixtures.js';

const FILES = ['a.txt', 'b.txt', 'src/main.go', 'src/lib/util.go', 'docs/readme.md', 'dist-keep/x.txt'];
const GITIGNORE = 'dist/\n*.log\nbuild/out/\n!keep.log\n';
const UNTRACKED = ['new.txt', 'src/new.go', 'dist/app', 'debug.log', 'keep.log', 'build/out/o.bin', 'build/notes.txt', 'fresh/deep/file.txt', 'src/lib/.gitignore'];

type Op =
  | { kind: 'modify'; file: number; content: string }
  | { kind: 'same-size'; file: number }
  | { kind: 'touch'; file: number }
  | { kind: 'delete'; file: number }
  | { kind: 'untracked'; path: number }
  | { kind: 'stage'; file: number }
  | { kind: 'symlink'; file: number }
  | { kind: 'to-dir'; file: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('modify' as const), file: fc.nat(FILES.length - 1), content: fc.string({ maxLength: 12 }) }),
  fc.record({ kind: fc.constant('same-size' as const), file: fc.nat(FILES.length - 1) }),
  fc.record({ kind: fc.constant('touch' as const), file: fc.nat(FILES.length - 1) }),
  fc.record({ kind: fc.constant('delete' as const), file: fc.nat(FILES.length - 1) }),
  fc.record({ kind: fc.constant('untracked' as const), path: fc.nat(UNTRACKED.length - 1) }),
  fc.record({ kind: fc.constant('stage' as const), file: fc.nat(FILES.length - 1) }),
  fc.record({ kind: fc.constant('symlink' as const), file: fc.nat(FILES.length - 1) }),
  fc.record({ kind: fc.constant('to-dir' as const), file: fc.nat(FILES.length - 1) }),
);

function apply(dir: string, o: Op): void {
  const write = (path: string, content: string) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  };
  const exists = (path: string) => {
    try {
      lstatSync(join(dir, path));
      return true;
    } catch {
      return false;
    }
  };
  switch (o.kind) {
    case 'modify':
      if (exists(FILES[o.file]!)) rmSync(join(dir, FILES[o.file]!), { recursive: true, force: true });
      write(FILES[o.file]!, o.content);
      return;
    case 'same-size': {
      // Same size and the same mtime as before: only the ctime (and the content) says it changed.
      const file = join(dir, FILES[o.file]!);
      if (!exists(FILES[o.file]!) || !lstatSync(file).isFile()) return;
      const mtimeNs = lstatSync(file, { bigint: true }).mtimeNs;
      const bytes = readFileSync(file);
      if (bytes.length === 0) return;
      bytes[0] = bytes[0] === 0x7a ? 0x79 : 0x7a;
      writeFileSync(file, bytes);
      restoreMtime(file, mtimeNs);
      return;
    }
    case 'touch': {
      const file = join(dir, FILES[o.file]!);
      if (exists(FILES[o.file]!) && lstatSync(file).isFile()) utimesSync(file, new Date(), new Date(Date.now() + 5000));
      return;
    }
    case 'delete':
      rmSync(join(dir, FILES[o.file]!), { recursive: true, force: true });
      return;
    case 'untracked':
      if (!exists(UNTRACKED[o.path]!)) write(UNTRACKED[o.path]!, 'untracked\n');
      return;
    case 'stage':
      // A path gone from the worktree and the index (deleted, then its deletion staged) matches
      // no pathspec: git add refuses it, git rm --cached --ignore-unmatch stages the same nothing.
      if (exists(FILES[o.file]!)) runGit(dir, ['add', '-A', '--', FILES[o.file]!]);
      else runGit(dir, ['rm', '-r', '-q', '--cached', '--ignore-unmatch', '--', FILES[o.file]!]);
      return;
    case 'symlink':
      rmSync(join(dir, FILES[o.file]!), { recursive: true, force: true });
      mkdirSync(dirname(join(dir, FILES[o.file]!)), { recursive: true });
      symlinkSync('target-elsewhere', join(dir, FILES[o.file]!));
      return;
    case 'to-dir':
      rmSync(join(dir, FILES[o.file]!), { recursive: true, force: true });
      write(`${FILES[o.file]!}/inside.txt`, 'now a directory\n');
      return;
  }
}

/** Sets a file's mtime to the nanosecond (utimes from Node rounds it): touch calls utimensat. */
function restoreMtime(file: string, mtimeNs: bigint): void {
  execFileSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${String(mtimeNs % 1_000_000_000n).padStart(9, '0')}`, file]);
}

/** What real git says differs between the worktree and HEAD: tracked changes, and untracked files not ignored. */
function gitChanges(dir: string): string[] {
  const tracked = runGit(dir, ['diff', 'HEAD', '--name-only', '--no-renames', '-z']).split('\0');
  const untracked = runGit(dir, ['ls-files', '--others', '--exclude-standard', '-z']).split('\0');
  return [...new Set([...tracked, ...untracked].filter((p) => p.length > 0))].sort();
}

const headTree = (dir: string) => runGit(dir, ['rev-parse', 'HEAD^{tree}']);
/** From the index alone (HEAD's files not given): what the cache tree settles. */
const fromIndex = (dir: string, prefix?: string) =>
  worktreeChangesFromIndex({ root: dir, headTree: headTree(dir), ...(prefix ? { prefix } : {}), isIgnored: (filepath) => git.isIgnored({ fs, dir, filepath }) });
/** As a local build reads it: HEAD's files at hand for an index that is not HEAD. */
const fromRepository = (dir: string, prefix?: string) => {
  const repo = LocalRepository.at(dir)!;
  const tree = headTree(dir);
  try {
    return worktreeChangesFromIndex({ root: dir, headTree: tree, indexFile: repo.indexFile, headFiles: (under) => repo.filesOf(tree, under), ...(prefix ? { prefix } : {}), isIgnored: async (filepath) => repo.isIgnored(filepath) });
  } finally {
    repo.close();
  }
};

describe('worktree status from the index', () => {
  let temp: TempDir;
  let count = 0;
  beforeAll(async () => {
    temp = await tempDir('oci-build-worktree-status-');
  });
  afterAll(async () => {
    await temp.cleanup();
  });

  const freshRepo = () => {
    const dir = join(temp.path, `repo-${count++}`);
    mkdirSync(dir);
    runGit(dir, ['init', '-q', '-b', 'main']);
    writeFileSync(join(dir, '.gitignore'), GITIGNORE);
    for (const file of FILES) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), `${file}\n`);
    }
    chmodSync(join(dir, 'src/main.go'), 0o755);
    runGit(dir, ['add', '-A']);
    runGit(dir, ['commit', '-q', '-m', 'initial']);
    return dir;
  };

  it('agrees with statusMatrix and with git on random changes to a committed worktree', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 6 }), fc.constantFrom(undefined, 'src', 'docs', 'fresh'), async (ops, prefix) => {
        const dir = freshRepo();
        for (const o of ops) apply(dir, o);
        const walked = (await worktreeChangesWalked({ dir }, {}, prefix ?? '')).sort();
        const indexed = await fromIndex(dir, prefix);
        const staged = ops.some((o) => o.kind === 'stage');
        // The cache tree settles it unless something was staged since the commit; HEAD's files always do.
        if (!staged) expect(indexed).toBeDefined();
        if (indexed) expect([...indexed].sort()).toEqual(walked);
        expect(await fromRepository(dir, prefix)).toEqual(walked);
        const inside = (p: string) => !prefix || p === prefix || p.startsWith(`${prefix}/`);
        expect(walked).toEqual(gitChanges(dir).filter(inside));
        rmSync(dir, { recursive: true, force: true });
      }),
      // The first: a deletion staged, then staged again (CI seed 420059179 found the test's own
      // `git add` refusing it).
      { numRuns: 60, examples: [[[{ kind: 'delete', file: 1 }, { kind: 'stage', file: 1 }, { kind: 'stage', file: 1 }], undefined]] },
    );
  });

  it('finds nothing in a clean clone, whose index git wrote on checkout', async () => {
    const origin = freshRepo();
    const clone = join(temp.path, 'clone');
    runGit(temp.path, ['clone', '-q', origin, clone]);
    mkdirSync(join(clone, 'dist'));
    writeFileSync(join(clone, 'dist', 'app'), 'ignored build output');
    expect(await fromIndex(clone)).toEqual([]);
  });

  it('trusts stat data only when every field matches and the file is older than the index (racily clean otherwise)', () => {
    const entry = { mtimeSeconds: 100, mtimeNanoseconds: 5, ctimeSeconds: 100, ctimeNanoseconds: 7, ino: 42, size: 6 };
    const stat = { mtimeNs: 100_000_000_005n, ctimeNs: 100_000_000_007n, ino: 42n, size: 6n };
    const indexWritten = 100_000_000_900n;
    expect(statTrusted(entry, stat, indexWritten)).toBe(true);
    // Written in the same instant as the index, or after it: the content decides.
    expect(statTrusted(entry, stat, 100_000_000_005n)).toBe(false);
    expect(statTrusted(entry, stat, 99_000_000_000n)).toBe(false);
    for (const changed of [{ mtimeNs: 100_000_000_006n }, { ctimeNs: 101_000_000_007n }, { ino: 43n }, { size: 7n }]) {
      expect(statTrusted(entry, { ...stat, ...changed }, indexWritten), JSON.stringify(changed, (_, v) => (typeof v === 'bigint' ? String(v) : v))).toBe(false);
    }
    // Inode and size are compared on their low 32 bits, as the index stores them.
    expect(statTrusted(entry, { ...stat, ino: 42n + (1n << 32n) }, indexWritten)).toBe(true);
  });

  it('hashes a file whose stat data no longer matches, even with the same size and mtime', async () => {
    const dir = freshRepo();
    const file = join(dir, 'a.txt');
    const mtimeNs = lstatSync(file, { bigint: true }).mtimeNs;
    writeFileSync(file, 'z.txt\n');
    restoreMtime(file, mtimeNs);
    expect(lstatSync(file, { bigint: true }).mtimeNs).toBe(mtimeNs);
    expect(await fromIndex(dir)).toEqual(['a.txt']);
  });

  it('leaves what it does not read to the full walk: a staged change without HEAD\'s files, an intent-to-add entry, a submodule', async () => {
    const staged = freshRepo();
    writeFileSync(join(staged, 'a.txt'), 'staged\n');
    writeFileSync(join(staged, 'added.txt'), 'added\n');
    runGit(staged, ['add', 'a.txt', 'added.txt']);
    runGit(staged, ['rm', '-q', '--cached', 'b.txt']);
    expect(await fromIndex(staged)).toBeUndefined();
    // With HEAD's files: a staged change, a staged addition and a file removed from the index only.
    expect(await fromRepository(staged)).toEqual(['a.txt', 'added.txt']);
    expect(await fromRepository(staged)).toEqual((await worktreeChangesWalked({ dir: staged }, {}, '')).sort());

    const intent = freshRepo();
    writeFileSync(join(intent, 'later.txt'), 'later\n');
    runGit(intent, ['add', '-N', 'later.txt']);
    expect(await fromIndex(intent)).toBeUndefined();

    const withModule = freshRepo();
    const sub = freshRepo();
    runGit(withModule, ['-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub, 'vendor/sub']);
    runGit(withModule, ['commit', '-q', '-m', 'submodule']);
    expect(parseIndex(readFileSync(join(withModule, '.git', 'index')))).toBeUndefined();

    // A torn index (its checksum no longer matches) is not read either.
    const torn = freshRepo();
    const bytes = readFileSync(join(torn, '.git', 'index'));
    bytes[20] = bytes[20]! ^ 0xff;
    writeFileSync(join(torn, '.git', 'index'), bytes);
    expect(parseIndex(bytes)).toBeUndefined();
  });

  it('reads index format version 4 (prefix-compressed paths) as version 2', async () => {
    const dir = freshRepo();
    const v2 = parseIndex(readFileSync(join(dir, '.git', 'index')));
    runGit(dir, ['update-index', '--index-version', '4']);
    // update-index drops no extension: the cache tree is still there.
    const v4 = parseIndex(readFileSync(join(dir, '.git', 'index')));
    expect(v4?.entries.map((e) => [e.path, e.oid, e.mode])).toEqual(v2?.entries.map((e) => [e.path, e.oid, e.mode]));
    expect(v4?.tree).toBe(headTree(dir));
    expect(await fromIndex(dir)).toEqual([]);
    writeFileSync(join(dir, 'src/lib/util.go'), 'changed\n');
    expect(await fromIndex(dir)).toEqual(['src/lib/util.go']);
  });

  it('computes blob ids as git hash-object does', () => {
    const dir = freshRepo();
    for (const file of FILES) expect(gitObjectId('blob', readFileSync(join(dir, file)))).toBe(runGit(dir, ['hash-object', file]));
  });
});
