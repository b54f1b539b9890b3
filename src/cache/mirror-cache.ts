// The Git mirrors of remote sources (<workDir>/repos/<host>/<owner…>/<name>) and the spare worktrees
// kept for their next build (<workDir>/worktrees/.spare/<key>), seen as a cache: the next build
// clones or checks out again whatever is missing, so `cache size` counts them and `cache clean`
// removes the mirrors not used for a while. A mirror is removed under its repository lock
// (git/lock.ts), taken without waiting: a mirror a build is fetching is skipped, and a build waits
// for a clean at most the time of two renames. Nothing outside those two directories (and the
// lock file) is touched, and no link is followed.

import type { Stats } from 'node:fs';
import { lstat, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { walkFiles } from './cache-service.js';
import { processAlive, withLockIfFree } from '../git/lock.js';
import { MIRROR_STATE_FILE, mirrorLockPathOf } from '../git/url.js';
import { spareWorktreePath, spareWorktreesRoot } from '../git/worktree-pool.js';

/**
 * What a clean moved out of the way and is deleting. Never a mirror's or a spare's name: hosts
 * and spare keys never start with a dot. One found later is what a killed clean left: garbage.
 */
const TRASH_PREFIX = '.oci-build-removing-';

/**
 * A build reads its mirror after releasing the lock (the checkout; the changed files of an
 * affected build, after an Nx workspace's `npm ci`), which the lock does not cover. A mirror
 * used this recently is kept whatever --older-than says, so that no running build loses it.
 */
export const MIRROR_MIN_IDLE_MS = 60 * 60_000;

export interface MirrorUsage {
  kind: 'git-mirrors';
  /** Everything under the counted directories: mirrors, spare worktrees, leftovers. */
  bytes: number;
  files: number;
  /** Mirrors found (bare repositories under <workDir>/repos). */
  repositories: number;
  /** The directories counted. */
  paths: string[];
  /** What was not counted, and why. */
  notes: string[];
}

export interface RemovedMirror {
  /** `<host>[_<port>]/<owner…>/<name>`, as under <workDir>/repos. */
  repository: string;
  /** The mirror and its spare worktree. */
  bytes: number;
  lastUsedAt: string;
}

export interface MirrorCleanResult {
  removed: RemovedMirror[];
  /** Bytes of the removed mirrors, their spare worktrees and the orphans. */
  removedBytes: number;
  /** Mirrors used within the cut-off: left as they are. */
  kept: number;
  /** Mirrors not looked at: in use (their lock is held), or could not be moved. */
  skipped: Array<{ repository: string; reason: string }>;
  /** Spare worktrees of mirrors that no longer exist, and leftovers of an interrupted clean. */
  removedOrphans: number;
  notes: string[];
}

interface MirrorDir {
  repository: string;
  gitdir: string;
  lock: string;
  spare: string;
}

let trashCounter = 0;

export class MirrorCache {
  readonly workDir: string;
  readonly reposRoot: string;
  readonly spareRoot: string;

  constructor(workDir: string) {
    // Not resolved: the spare worktree's key hashes the mirror's path as the builds spell it,
    // and they spell it from the configured (absolute) workDir.
    this.workDir = workDir;
    this.reposRoot = join(workDir, 'repos');
    this.spareRoot = spareWorktreesRoot(workDir);
  }

  async size(): Promise<MirrorUsage> {
    const usage: MirrorUsage = { kind: 'git-mirrors', bytes: 0, files: 0, repositories: 0, paths: [this.reposRoot, this.spareRoot], notes: [] };
    const roots = await this.ownRoots(usage.notes);
    for (const root of [roots.repos ? this.reposRoot : undefined, roots.spare ? this.spareRoot : undefined]) {
      if (!root) continue;
      await walkFiles(root, (_path, st) => {
        usage.bytes += st.size;
        usage.files += 1;
      });
    }
    if (roots.repos) usage.repositories = (await this.mirrors()).length;
    return usage;
  }

  /**
   * Removes every mirror, with its spare worktree, not used for `olderThanMs` (and never one used
   * within MIRROR_MIN_IDLE_MS). "Used" is the latest of: the state file's mtime (every completed
   * fetch) and atime (every build reads it, where the filesystem records reads: with relatime,
   * to within a day), and the spare worktree's mtime (written when a build hands it back). Also
   * removes spare worktrees whose mirror is gone, by the same rule, and a killed clean's leftovers.
   */
  async clean(options: { olderThanMs: number; now?: Date }): Promise<MirrorCleanResult> {
    const cutoff = (options.now ?? new Date()).getTime() - Math.max(options.olderThanMs, MIRROR_MIN_IDLE_MS);
    const result: MirrorCleanResult = { removed: [], removedBytes: 0, kept: 0, skipped: [], removedOrphans: 0, notes: [] };
    const roots = await this.ownRoots(result.notes);
    const mirrors = roots.repos ? await this.mirrors() : [];
    if (roots.repos) await this.removeLeftovers(this.reposRoot, result);
    if (roots.spare) await this.removeLeftovers(this.spareRoot, result);

    for (const mirror of mirrors) {
      const outcome = await withLockIfFree(mirror.lock, async () => {
        if (!(await isDirectory(mirror.gitdir))) return { gone: true as const };
        // Judged under the lock: a build may have fetched since the listing.
        const lastUsed = await this.lastUsedMs(mirror, roots.spare);
        if (lastUsed >= cutoff) return { kept: true as const };
        // Moved aside, not deleted, under the lock: from here on builds see no mirror and clone a
        // new one, never a half-deleted one, even if the deletion fails or this process is killed.
        const trash = [await moveAside(mirror.gitdir, this.reposRoot)];
        // A spare is claimed by renaming it, as a build takes it (worktree-pool.ts): one a build
        // took already is that build's, and stays untouched.
        if (roots.spare && (await isDirectory(mirror.spare))) {
          const spareAside = await moveAside(mirror.spare, this.spareRoot).catch(() => undefined);
          if (spareAside) trash.push(spareAside);
        }
        await this.removeEmptyParents(dirname(mirror.gitdir));
        return { kept: false as const, lastUsed, trash };
      }).catch((err: unknown) => ({
        failed: `could not be removed: ${err instanceof Error ? err.message : String(err)}; check the permissions of ${this.workDir} and run the clean again`,
      }));
      if ('failed' in outcome) {
        result.skipped.push({ repository: mirror.repository, reason: outcome.failed });
        continue;
      }
      if (!outcome.acquired) {
        result.skipped.push({
          repository: mirror.repository,
          reason: `in use: its lock ${mirror.lock} is held by ${describeHolder(outcome.holder)}; run the clean again once that build is done`,
        });
        continue;
      }
      const done = outcome.value;
      if ('gone' in done) continue;
      if (done.kept) {
        result.kept += 1;
        continue;
      }
      // Outside the lock: the mirror's place is already free for the next build.
      let bytes = 0;
      for (const path of done.trash) {
        const size = await usageOf(path);
        if (await this.deleteTrash(path, result.notes)) bytes += size;
      }
      result.removed.push({ repository: mirror.repository, bytes, lastUsedAt: new Date(done.lastUsed).toISOString() });
      result.removedBytes += bytes;
    }

    // With no listing of the mirrors (repos is a link), no spare can be told to be an orphan.
    if (roots.spare && !roots.reposLinked) await this.removeOrphanSpares(new Set(mirrors.map((m) => basename(m.spare))), cutoff, result);
    return result;
  }

  /**
   * Whether <workDir>/repos and <workDir>/worktrees/.spare may be walked: a link in their place
   * would lead out of the work directory, so it is neither followed nor counted (a note says so).
   */
  private async ownRoots(notes: string[]): Promise<{ repos: boolean; reposLinked: boolean; spare: boolean }> {
    const check = async (path: string): Promise<'directory' | 'link' | 'none'> => {
      const st = await lstat(path).catch(() => undefined);
      if (st?.isSymbolicLink()) {
        notes.push(`${path} is a symbolic link: oci-build neither counts nor removes what it leads to; make it a directory (or a mount point) to have it counted and cleaned`);
        return 'link';
      }
      return st?.isDirectory() ? 'directory' : 'none';
    };
    const repos = await check(this.reposRoot);
    const spare = (await check(dirname(this.spareRoot))) === 'directory' && (await check(this.spareRoot)) === 'directory';
    return { repos: repos === 'directory', reposLinked: repos === 'link', spare };
  }

  /** Every mirror under <workDir>/repos: a bare repository at least two levels down (<host>/<name>). */
  private async mirrors(): Promise<MirrorDir[]> {
    const found: MirrorDir[] = [];
    const visit = async (dir: string, depth: number): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
        // Dirent types are lstat's: a link to a directory is a link, never followed.
        if (!entry.isDirectory()) continue;
        if (depth === 0 && entry.name.startsWith('.')) continue; // a clean's trash, never a host
        const path = join(dir, entry.name);
        if (depth >= 1 && (await isBareRepository(path))) found.push(this.mirrorAt(path));
        else await visit(path, depth + 1);
      }
    };
    await visit(this.reposRoot, 0);
    return found;
  }

  private mirrorAt(gitdir: string): MirrorDir {
    return {
      repository: relative(this.reposRoot, gitdir).split(sep).join('/'),
      gitdir,
      lock: mirrorLockPathOf(this.workDir, gitdir),
      spare: spareWorktreePath(this.workDir, gitdir),
    };
  }

  private async lastUsedMs(mirror: MirrorDir, spareRootUsable: boolean): Promise<number> {
    const times: number[] = [];
    // Only ever stat-ed: reading the state file would refresh its atime, and the clean would count as a use.
    const state = await lstat(join(mirror.gitdir, MIRROR_STATE_FILE)).catch(() => undefined);
    if (state?.isFile()) times.push(state.mtimeMs, state.atimeMs);
    // Never completed a fetch (a first clone that was killed): when the clone started.
    else times.push((await lstat(mirror.gitdir)).mtimeMs);
    if (spareRootUsable) {
      const spare = await lstat(mirror.spare).catch(() => undefined);
      if (spare?.isDirectory()) times.push(spare.mtimeMs);
    }
    return Math.max(...times);
  }

  /** Spare worktrees no mirror of the listing owns, not used since the cut-off. */
  private async removeOrphanSpares(owned: Set<string>, cutoff: number, result: MirrorCleanResult): Promise<void> {
    let entries;
    try {
      entries = await readdir(this.spareRoot, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory() || owned.has(entry.name) || entry.name.startsWith('.')) continue;
      const path = join(this.spareRoot, entry.name);
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isDirectory() || st.mtimeMs >= cutoff) continue;
      const bytes = await usageOf(path);
      // Claimed by renaming it, as a build takes a spare: a build that took it first keeps it.
      const aside = await moveAside(path, this.spareRoot).catch(() => undefined);
      if (!aside) continue;
      await this.deleteTrash(aside, result.notes);
      result.removedOrphans += 1;
      result.removedBytes += bytes;
    }
  }

  /** What an interrupted clean had moved aside. */
  private async removeLeftovers(root: string, result: MirrorCleanResult): Promise<void> {
    let entries;
    try {
      entries = await readdir(root, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.name.startsWith(TRASH_PREFIX)) continue;
      // Another clean running right now is deleting it.
      const pid = Number(/^(\d+)-/.exec(entry.name.slice(TRASH_PREFIX.length))?.[1]);
      if (pid !== process.pid && processAlive(pid)) continue;
      const path = join(root, entry.name);
      const bytes = entry.isDirectory() ? await usageOf(path) : 0;
      if (await this.deleteTrash(path, result.notes)) {
        result.removedOrphans += 1;
        result.removedBytes += bytes;
      }
    }
  }

  /** fs.rm removes links as links: nothing a link in the trash leads to is touched. */
  private async deleteTrash(path: string, notes: string[]): Promise<boolean> {
    try {
      await rm(path, { recursive: true, force: true });
      return true;
    } catch (err) {
      const error = err as NodeJS.ErrnoException;
      notes.push(`could not delete ${path} (${error.code ?? error.message}): nothing uses it any more; delete it by hand, or the next clean tries again`);
      return false;
    }
  }

  /** The owner and host directories a removed mirror leaves empty, up to <workDir>/repos. */
  private async removeEmptyParents(dir: string): Promise<void> {
    for (let current = dir; current !== this.reposRoot && current.startsWith(this.reposRoot + sep); current = dirname(current)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (another repository of the owner), or gone already
      }
    }
  }
}

async function isBareRepository(dir: string): Promise<boolean> {
  const [head, objects] = await Promise.all([lstat(join(dir, 'HEAD')).catch(() => undefined), lstat(join(dir, 'objects')).catch(() => undefined)]);
  return Boolean(head?.isFile() && objects?.isDirectory());
}

async function isDirectory(path: string): Promise<boolean> {
  const st: Stats | undefined = await lstat(path).catch(() => undefined);
  return st?.isDirectory() ?? false;
}

async function usageOf(dir: string): Promise<number> {
  let bytes = 0;
  await walkFiles(dir, (_path, st) => {
    bytes += st.size;
  });
  return bytes;
}

/** Renames `path` to a trash name directly under `root` (same filesystem); returns the new path. */
async function moveAside(path: string, root: string): Promise<string> {
  trashCounter += 1;
  const aside = join(root, `${TRASH_PREFIX}${process.pid}-${Date.now()}-${trashCounter}`);
  await rename(path, aside);
  return aside;
}

/** `pid 1234 on ci-worker-2 since 2026-06-01T08:00:00.000Z`, from what withLock writes into the lock file. */
function describeHolder(holder: string): string {
  try {
    const info = JSON.parse(holder) as { host?: string; pid?: number; since?: string };
    if (typeof info.pid === 'number') return `pid ${info.pid}${info.host ? ` on ${info.host}` : ''}${info.since ? ` since ${info.since}` : ''}`;
  } catch {
    // being written right now
  }
  return 'another process';
}
