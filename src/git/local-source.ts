// A local directory as the source: built in place (no copy), described from its Git metadata.
// Read-only towards the user's repository: no index refresh, no lock files.

import * as fs from 'node:fs';
import { basename, relative, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import type { PhaseContext, SourceCheckout } from '../core/ports.js';
import type { BuildJob, RepositoryInfo } from '../core/types.js';
import { findRepositoryRoot, LocalRepository } from './local-repository.js';
import { parseRemoteUrl, redactUrl } from './url.js';
import { worktreeChangesFromIndex } from './worktree-status.js';

/** isomorphic-git, loaded only for what LocalRepository does not read (and for --affected). */
const isomorphicGit = async () => (await import('./isomorphic-git.js')).default;

export async function checkoutLocal(path: string, job: BuildJob, _ctx: PhaseContext): Promise<SourceCheckout> {
  const dir = resolve(path);
  const notARepository = (why: string) =>
    new InputError(`${dir} ${why}: make it one with \`git init && git add -A && git commit -m "initial commit"\` there`, {
      hint: `Images are tagged with the commit they are built from, so the source must be a Git repository with at least one commit: cd ${JSON.stringify(dir)} && git init && git add -A && git commit -m "initial commit"`,
    });

  let stats: fs.Stats;
  try {
    stats = await fs.promises.stat(dir);
  } catch {
    throw new InputError(`The source directory ${dir} does not exist`, { hint: 'Give the path of a checked-out Git repository, or an http(s) Git URL.' });
  }
  if (!stats.isDirectory()) throw new InputError(`The source ${dir} is not a directory`, { hint: 'Give the path of a checked-out Git repository, or an http(s) Git URL.' });

  const root = findRepositoryRoot(dir);
  if (root === undefined) throw notARepository('is not a Git repository');
  const prefix = relative(root, dir);
  const repo = LocalRepository.at(root);
  // Where isomorphic-git finds the git directory: `.git`, or the one a `.git` file names (a
  // submodule's checkout). A linked worktree's objects are elsewhere (its commondir), which it does not read.
  const location = { dir: root, ...(repo && !repo.plain && repo.commondir === repo.gitdir ? { gitdir: repo.gitdir } : {}) };
  const cache = {};
  // HEAD, its commit and the origin remote read directly; isomorphic-git for what that does not read.
  const head = repo?.head();
  const direct = head && repo?.readCommit(head.commit);
  let commit: string;
  let branch: string | undefined;
  let origin: unknown;
  let tree: string;
  let commitTime: number;
  if (repo && head && direct) {
    ({ commit, branch } = head);
    ({ tree, committerTime: commitTime } = direct);
    origin = repo.config('remote.origin.url');
  } else {
    const git = await isomorphicGit();
    try {
      commit = await git.resolveRef({ fs, ...location, ref: 'HEAD' });
    } catch {
      throw notARepository('is a Git repository without any commit yet');
    }
    const [{ commit: commitObject }, currentBranch, originUrl] = await Promise.all([
      git.readCommit({ fs, ...location, oid: commit, cache }),
      git.currentBranch({ fs, ...location, fullname: false, test: true }),
      git.getConfig({ fs, ...location, path: 'remote.origin.url' }).catch(() => undefined),
    ]);
    branch = currentBranch ?? undefined;
    origin = originUrl;
    tree = commitObject.tree;
    commitTime = commitObject.committer.timestamp;
  }
  // Only the directory built counts: a change elsewhere in the repository does not make it dirty.
  const changedInWorktree = await worktreeChanges(location, repo, tree, cache, prefix);
  let fullName = basename(dir);
  let cloneUrl: string | undefined;
  // A clone of a directory (`git clone /srv/main`, `file://…`) names no repository anyone else can
  // fetch: it is named like a repository without a remote, after the directory built, and its path
  // goes into no label (it differs between machines, so the image digest would too).
  if (typeof origin === 'string' && origin.length > 0 && !isFilesystemPath(origin)) {
    try {
      const location = parseRemoteUrl(origin);
      fullName = location.fullName;
      cloneUrl = location.cloneUrl;
    } catch {
      // An SSH or odd remote still names the repository: owner/name from its last two segments.
      cloneUrl = redactUrl(origin);
      // `.` segments come from a clone of a local path (`git clone .` records `/path/.`).
      const segments = cloneUrl.replace(/\.git$/, '').split(/[/:]/).filter((s) => s.length > 0 && s !== '.');
      if (segments.length >= 2) fullName = segments.slice(-2).join('/');
    }
  }

  const inside = (file: string) => prefix === '' || file === prefix || file.startsWith(prefix + '/');
  const dirty = changedInWorktree.some(inside);

  const repository: RepositoryInfo = {
    fullName,
    ...(cloneUrl ? { cloneUrl } : {}),
    ref: branch ? `refs/heads/${branch}` : commit,
    ...(branch ? { branch } : {}),
    commit,
    ...(job.repository?.before ? { before: job.repository.before } : {}),
    dirty,
  };

  const toDirRelative = (files: string[]) =>
    files.filter(inside).map((file) => (prefix === '' ? file : file.slice(prefix.length + 1)));

  return {
    dir,
    repository,
    // A subdirectory of a repository (a fixture, one service of a monorepo without Nx) is imaged
    // under its own name, not the repository's.
    ...(prefix !== '' ? { imageName: basename(dir) } : {}),
    commitTime,
    warnings: [],
    async changedFilesSince(base) {
      const { changedFilesBetween, isNullCommit, resolveRevision } = await import('./tree-diff.js');
      if (isNullCommit(base)) return undefined;
      // `git rev-parse` forms: a SHA, a branch, tag or remote branch (origin/main), HEAD~2 …
      const resolved = await resolveRevision({ fs, ...location, cache }, base, (name) => [name]);
      if (!('commit' in resolved)) return undefined;
      const changed = await changedFilesBetween({ fs, ...location, cache }, resolved.commit, commit);
      if (changed === undefined) return undefined;
      // The build uses the worktree as it is, so uncommitted changes count as changed too.
      return toDirRelative([...new Set([...changed, ...changedInWorktree])].sort());
    },
    async objectIdOf(path) {
      const full = prefix === '' ? path : `${prefix}/${path}`;
      const found = repo?.objectIdIn(tree, full);
      if (found !== undefined) return found ?? undefined;
      const { objectIdAt } = await import('./object-id.js');
      return objectIdAt({ fs, ...location, cache }, commit, full);
    },
    async dispose() {
      // The user's own directory: nothing to remove; only the pack files read are closed.
      repo?.close();
    },
  };
}

type StatsLike = Pick<fs.Stats, 'isFile' | 'isDirectory' | 'isSymbolicLink'> & Record<string, unknown>;

/** Exact stat times, in the form isomorphic-git compares with the index. */
function exactStats(big: fs.BigIntStats): StatsLike {
  const low32 = (value: bigint) => Number(value & 0xffffffffn);
  return {
    isFile: () => big.isFile(),
    isDirectory: () => big.isDirectory(),
    isSymbolicLink: () => big.isSymbolicLink(),
    ctimeSeconds: Number(big.ctimeNs / 1_000_000_000n),
    ctimeNanoseconds: Number(big.ctimeNs % 1_000_000_000n),
    mtimeSeconds: Number(big.mtimeNs / 1_000_000_000n),
    mtimeNanoseconds: Number(big.mtimeNs % 1_000_000_000n),
    ctimeMs: Number(big.ctimeMs),
    mtimeMs: Number(big.mtimeMs),
    dev: low32(big.dev),
    ino: low32(big.ino),
    mode: Number(big.mode),
    uid: Number(big.uid),
    gid: Number(big.gid),
    size: Number(big.size),
  };
}

/**
 * node:fs for isomorphic-git's status walk. Stat times are nanosecond-exact: with float
 * milliseconds they never match what native git wrote to the index, and every file was hashed
 * again on every build. Stats and directory listings are synchronous: the walk awaits them one
 * by one, and a thread-pool round trip per file cost more than the stat itself.
 */
const statusFs = {
  promises: {
    ...fs.promises,
    lstat: async (path: string) => exactStats(fs.lstatSync(path, { bigint: true })),
    stat: async (path: string) => exactStats(fs.statSync(path, { bigint: true })),
    readdir: async (path: string) => fs.readdirSync(path),
  },
};

/**
 * Paths (relative to the repository root) whose worktree state differs from HEAD; ignored files
 * excluded. From the index when it settles the question (worktree-status.ts), else from
 * isomorphic-git's walk of HEAD, the index and the worktree.
 */
async function worktreeChanges(location: IsomorphicLocation, repo: LocalRepository | undefined, headTree: string, cache: object, prefix: string): Promise<string[]> {
  const git = repo ? undefined : await isomorphicGit();
  const fromIndex = await worktreeChangesFromIndex({
    root: location.dir,
    headTree,
    ...(repo ? { indexFile: repo.indexFile, headFiles: (under: string) => repo.filesOf(headTree, under) } : {}),
    ...(prefix === '' ? {} : { prefix }),
    isIgnored: async (filepath) => (repo ? repo.isIgnored(filepath) : git!.isIgnored({ fs, ...location, filepath })),
  });
  if (fromIndex) return fromIndex;
  // A linked worktree whose index neither reading settles: counted as changed as a whole (its
  // images are tagged -dirty and nothing is reused), since isomorphic-git cannot read it either.
  if (repo && repo.commondir !== repo.gitdir) return [prefix === '' ? '.' : prefix];
  return worktreeChangesWalked(location, cache, prefix);
}

/** Where isomorphic-git reads a repository: its worktree, and its git directory when that is not `<dir>/.git`. */
export interface IsomorphicLocation {
  dir: string;
  gitdir?: string;
}

/** worktreeChanges by isomorphic-git's statusMatrix. Exported for the tests, which compare both ways. */
export async function worktreeChangesWalked(location: IsomorphicLocation, cache: object, prefix: string): Promise<string[]> {
  const git = await isomorphicGit();
  // refresh: false — never rewrite the user's index just to describe it.
  const matrix = await git.statusMatrix({ fs: statusFs, ...location, cache, refresh: false, ...(prefix === '' ? {} : { filepaths: [prefix] }) });
  const changed: string[] = [];
  for (const [file, head, workdir] of matrix) {
    // Compared with HEAD only (the index does not matter: the build sees the worktree).
    // [1,1]: unchanged; [0,0]: only in the index, absent from both.
    if (head === 1 && workdir === 1) continue;
    if (head === 0 && workdir === 0) continue;
    changed.push(file);
  }
  return changed;
}

/**
 * Whether a remote URL is a path on this machine, as Git reads it: `file://…`, or anything that is
 * neither a URL with a scheme nor scp-like `host:path` (whose colon comes before any slash).
 */
export function isFilesystemPath(remote: string): boolean {
  if (/^file:/i.test(remote)) return true;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(remote)) return false;
  const colon = remote.indexOf(':');
  const slash = remote.indexOf('/');
  return colon === -1 || (slash !== -1 && slash < colon);
}
