// A Git URL as the source: the GitService syncs the persistent mirror and resolves the wanted ref;
// the commit is then checked out into a worktree of the build's own.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { monotonicMs } from '../core/elapsed.js';
import git from './isomorphic-git.js';
import type { PhaseContext, SourceCheckout } from '../core/ports.js';
import type { BuildJob, RepositoryInfo } from '../core/types.js';
import type { MirrorGitService, MirrorSync } from './git-service.js';
import { objectIdAt } from './object-id.js';
import { changedFilesBetween, isNullCommit } from './tree-diff.js';
import { worktreeName } from './url.js';
import { checkoutTree, type WorktreeManifest } from './worktree.js';
import { WorktreePool } from './worktree-pool.js';

export async function checkoutRemote(
  source: { url: string; ref?: string },
  job: BuildJob,
  ctx: PhaseContext,
  options: { workDir: string; service: MirrorGitService },
): Promise<SourceCheckout> {
  const worktreeDir = join(options.workDir, 'worktrees', worktreeName(job.id));
  const synced = await options.service.syncRepository(source.url, source.ref, ctx);
  const { mirror, path: gitdir } = synced;
  const log = (line: string) => ctx.log.write(line, 'system');

  const { commit: commitObject } = await git.readCommit({ fs, gitdir, oid: synced.commit, cache: mirror.cache });

  await fs.promises.rm(worktreeDir, { recursive: true, force: true });
  await fs.promises.mkdir(join(worktreeDir, '..'), { recursive: true });
  const pool = new WorktreePool(options.workDir, gitdir);
  const previous = await pool.take(worktreeDir);
  if (!previous) await fs.promises.mkdir(worktreeDir, { recursive: true });
  let manifest: WorktreeManifest;
  try {
    const started = monotonicMs();
    const result = await checkoutTree({ gitdir, cache: mirror.cache }, synced.commit, worktreeDir, { ...(previous ? { previous } : {}), signal: ctx.signal });
    manifest = result.manifest;
    log(
      `checked out ${synced.commit}${synced.branch ? ` (${synced.branch})` : synced.tag ? ` (tag ${synced.tag})` : ''}: ${result.files} files` +
        (previous ? ` (reused the worktree of ${previous.commit.slice(0, 7)}: ${result.written} written, ${result.removed} removed)` : '') +
        ` in ${Math.round(monotonicMs() - started)} ms`,
    );
  } catch (err) {
    await fs.promises.rm(worktreeDir, { recursive: true, force: true });
    throw err;
  }

  const repository: RepositoryInfo = {
    fullName: synced.fullName,
    cloneUrl: synced.cloneUrl,
    ref: synced.ref,
    ...(synced.branch ? { branch: synced.branch } : {}),
    ...(synced.tag ? { tag: synced.tag } : {}),
    commit: synced.commit,
    ...(job.repository?.before ? { before: job.repository.before } : {}),
  };

  const warnings = synced.warning ? [synced.warning] : [];
  const branchMovedOn = await movedOn(synced, job, mirror);
  if (branchMovedOn) warnings.push(branchMovedOn);

  return {
    dir: worktreeDir,
    repository,
    commitTime: commitObject.committer.timestamp,
    warnings,
    ...(branchMovedOn ? { branchMovedOn: true } : {}),
    async changedFilesSince(base, phaseCtx) {
      if (isNullCommit(base)) return undefined;
      // The base may be older than the shallow history: fetched on demand (unknown means "build all").
      const baseCommit = await options.service.resolveCommit(source.url, base, phaseCtx);
      if (baseCommit === undefined) return undefined;
      return changedFilesBetween({ fs, gitdir, cache: mirror.cache }, baseCommit, synced.commit);
    },
    objectIdOf: (path) => objectIdAt({ fs, gitdir, cache: mirror.cache }, synced.commit, path),
    async dispose() {
      // The directory leaves the build's path either way; it may wait as the next build's start.
      await pool.give(worktreeDir, manifest);
    },
  };
}

/**
 * A push builds its commit by SHA; the branch it was pushed to comes from the job. When the
 * mirror, just fetched, says that branch now points elsewhere (a later push, a force-push, a
 * deletion), this build is not the branch's newest: the warning explains why it gets no branch tag.
 */
async function movedOn(synced: { commit: string; branch?: string }, job: BuildJob, mirror: MirrorSync['mirror']): Promise<string | undefined> {
  const branch = job.repository?.branch;
  if (!branch || synced.branch !== undefined || job.repository?.commit !== synced.commit) return undefined;
  const head = await mirror.resolve(`refs/heads/${branch}`);
  if (head?.commit === synced.commit) return undefined;
  const now = head ? `has moved on to ${head.commit.slice(0, 7)}` : 'no longer exists on the remote';
  return `branch ${branch} ${now}: this image of ${synced.commit.slice(0, 7)} gets no ${branch} tag, so the tag never moves back to an older push`;
}
