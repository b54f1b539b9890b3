// A Git URL as the source: sync the persistent mirror (under the repository lock, with retries),
// resolve the wanted ref, and check the commit out into a worktree of the build's own.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { AuthCallback, HttpClient } from 'isomorphic-git';
import git from './isomorphic-git.js';
import {
  GitAuthError,
  GitRefNotFoundError,
  InputError,
  OciBuildError,
  ServiceUnavailableError,
} from '../core/errors.js';
import type { Clock, PhaseContext, SourceCheckout } from '../core/ports.js';
import type { BuildJob, RepositoryInfo } from '../core/types.js';
import type { Config } from '../config/config.js';
import { withLock } from './lock.js';
import { FULL_DEPTH, Mirror, type ResolvedRef } from './mirror.js';
import { RemoteFetchFailure, retryTransient, secretMasker, type RemoteFailure } from './remote-errors.js';
import { changedFilesBetween, isNullCommit } from './tree-diff.js';
import { mirrorLockPath, mirrorPath, parseRemoteUrl, worktreeName, type RemoteCredentials } from './url.js';
import { checkoutTree, type WorktreeManifest } from './worktree.js';
import { WorktreePool } from './worktree-pool.js';

export interface GitSourceOptions {
  workDir: string;
  git: Config['git'];
  clock: Clock;
  http: HttpClient;
  /** For tests: randomness of the retry jitter. */
  random?: () => number;
}

/** Refs as `git check-ref-format` allows them, minus anything that could walk out of refs/. */
export function checkRefName(ref: string): void {
  const bad =
    ref.length === 0 ||
    ref.length > 255 ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u0020\u007f~^:?*[\\]/.test(ref) ||
    ref.includes('..') ||
    ref.includes('//') ||
    ref.includes('@{') ||
    ref.startsWith('/') ||
    ref.startsWith('-') ||
    ref.endsWith('/') ||
    ref.endsWith('.') ||
    ref.endsWith('.lock') ||
    ref.split('/').some((segment) => segment.startsWith('.'));
  if (bad) {
    throw new InputError(`${JSON.stringify(ref)} is not a valid Git ref`, {
      hint: 'Give a branch (main, refs/heads/main), a tag (v1.2.0, refs/tags/v1.2.0) or a commit SHA (full or at least 4 hex digits).',
    });
  }
}

export async function checkoutRemote(
  source: { url: string; ref?: string },
  job: BuildJob,
  ctx: PhaseContext,
  options: GitSourceOptions,
): Promise<SourceCheckout> {
  // Everything that names a path is checked before any file is touched.
  const location = parseRemoteUrl(source.url);
  if (source.ref !== undefined) checkRefName(source.ref);
  const worktreeDir = join(options.workDir, 'worktrees', worktreeName(job.id));
  const gitdir = mirrorPath(options.workDir, location);
  const lockPath = mirrorLockPath(options.workDir, location);

  const credentials: RemoteCredentials | undefined =
    location.credentials ?? (options.git.token ? { username: 'x-access-token', password: options.git.token } : undefined);
  const mask = secretMasker([location.credentials?.password, location.credentials?.username, options.git.token]);
  const onAuth: AuthCallback | undefined = credentials ? () => ({ username: credentials.username, password: credentials.password }) : undefined;
  const logTo = (c: PhaseContext) => (line: string) => c.log.write(mask(line), 'system');
  const log = logTo(ctx);

  const mirror = new Mirror(location, gitdir, options.http, onAuth, options.clock);
  const url = location.cloneUrl;
  const policy = { ...options.git, ...(options.random ? { random: options.random } : {}) };

  /** One fetch with retries; returns the final failure when the remote stayed unreachable. */
  const fetchWithRetries = async (fetchOptions: { depth?: number; relative?: boolean }, what: string, c: PhaseContext = ctx): Promise<RemoteFailure | undefined> => {
    const log = logTo(c);
    try {
      await retryTransient(
        async (attempt) => {
          if (attempt === 0) log(`${what} ${url}`);
          const started = performance.now();
          const { pack } = await mirror.fetch({ ...fetchOptions, signal: c.signal });
          log(
            `fetched in ${Math.round(performance.now() - started)} ms` +
              (pack.objects > 0 ? ` (${(pack.bytes / 1024 / 1024).toFixed(1)} MB, ${pack.objects} objects, indexed in ${Math.round(pack.indexMs)} ms)` : ' (up to date)'),
          );
        },
        policy,
        {
          signal: c.signal,
          mask,
          onRetry: (failure, delayMs, attempt) => log(`fetching ${url} failed (${failure.message}); retry ${attempt} of ${policy.retries} in ${delayMs} ms`),
        },
      );
      return undefined;
    } catch (err) {
      if (!(err instanceof RemoteFetchFailure)) throw err;
      const { failure } = err;
      if (failure.kind === 'transient') return failure;
      throw finalError(failure, url, Boolean(credentials));
    }
  };

  /** Fetches more history until `wanted` is found or the mirror holds everything. */
  const deepenUntil = async (found: () => Promise<boolean>, c: PhaseContext = ctx): Promise<RemoteFailure | undefined> => {
    const steps = [{ depth: Math.max(options.git.depth * 10, 500), relative: true }, { depth: FULL_DEPTH }];
    for (const step of steps) {
      if ((await mirror.shallowCommits()).length === 0) return undefined;
      const failure = await fetchWithRetries(step, step.depth === FULL_DEPTH ? 'fetching the whole history of' : `deepening by ${step.depth} commits:`, c);
      if (failure) return failure;
      if (await found()) return undefined;
    }
    return undefined;
  };

  const resolved = await withLock(
    lockPath,
    async () => {
      const state = await mirror.state();
      if (!state) await mirror.create();
      let failure: RemoteFailure | undefined;
      try {
        // depth 0: the whole history (no shallow boundary at all).
        failure = await fetchWithRetries(options.git.depth > 0 ? { depth: options.git.depth } : {}, state ? 'fetching' : 'cloning');
      } catch (err) {
        // A first clone that failed for good leaves nothing behind.
        if (!state) await fs.promises.rm(gitdir, { recursive: true, force: true });
        throw err;
      }
      if (failure && !state) await fs.promises.rm(gitdir, { recursive: true, force: true });
      let wanted = await mirror.resolve(source.ref);
      const looksLikeCommit = source.ref !== undefined && /^[0-9a-f]{4,40}$/i.test(source.ref);
      if (!wanted && !failure && looksLikeCommit) {
        // An older commit than the shallow history holds: fetch more of it.
        failure = await deepenUntil(async () => (wanted = await mirror.resolve(source.ref)) !== undefined);
      }
      if (failure) {
        const current = await mirror.state();
        if (wanted && current) {
          return {
            wanted,
            warning: `remote ${url} unreachable (${failure.message}): built from the mirror as of ${current.lastSyncAt}`,
          };
        }
        throw new ServiceUnavailableError(`The Git remote ${url} is unreachable (${failure.message})${current ? ` and its mirror has no ${source.ref ? `ref ${source.ref}` : 'default branch'}` : ' and there is no mirror of it yet'}`, {
          hint: `Check that ${url} is reachable from this machine, then run the build again (retried ${policy.retries} time${policy.retries === 1 ? '' : 's'}; git.retries sets how often).`,
          details: { remote: url, error: failure.message },
        });
      }
      if (!wanted) {
        if (source.ref === undefined) throw await noDefaultBranch(mirror, url);
        throw new GitRefNotFoundError(`The Git remote ${url} has no branch, tag or commit ${JSON.stringify(source.ref)}`, {
          hint: 'Check --ref: a branch, a tag, or a commit SHA reachable from one of them.',
        });
      }
      return { wanted, warning: undefined };
    },
    { signal: ctx.signal, onWait: () => log(`waiting for another build to finish fetching ${url}`) },
  );

  const { wanted, warning } = resolved as { wanted: ResolvedRef; warning: string | undefined };
  const { commit: commitObject } = await git.readCommit({ fs, gitdir, oid: wanted.commit, cache: mirror.cache });

  await fs.promises.rm(worktreeDir, { recursive: true, force: true });
  await fs.promises.mkdir(join(worktreeDir, '..'), { recursive: true });
  const pool = new WorktreePool(options.workDir, gitdir);
  const previous = await pool.take(worktreeDir);
  if (!previous) await fs.promises.mkdir(worktreeDir, { recursive: true });
  let manifest: WorktreeManifest;
  try {
    const started = performance.now();
    const result = await checkoutTree({ gitdir, cache: mirror.cache }, wanted.commit, worktreeDir, { ...(previous ? { previous } : {}), signal: ctx.signal });
    manifest = result.manifest;
    log(
      `checked out ${wanted.commit}${wanted.branch ? ` (${wanted.branch})` : wanted.tag ? ` (tag ${wanted.tag})` : ''}: ${result.files} files` +
        (previous ? ` (reused the worktree of ${previous.commit.slice(0, 7)}: ${result.written} written, ${result.removed} removed)` : '') +
        ` in ${Math.round(performance.now() - started)} ms`,
    );
  } catch (err) {
    await fs.promises.rm(worktreeDir, { recursive: true, force: true });
    throw err;
  }

  const repository: RepositoryInfo = {
    fullName: location.fullName,
    cloneUrl: url,
    ref: wanted.ref,
    ...(wanted.branch ? { branch: wanted.branch } : {}),
    ...(wanted.tag ? { tag: wanted.tag } : {}),
    commit: wanted.commit,
    ...(job.repository?.before ? { before: job.repository.before } : {}),
  };

  return {
    dir: worktreeDir,
    repository,
    commitTime: commitObject.committer.timestamp,
    warnings: warning ? [warning] : [],
    async changedFilesSince(base, phaseCtx) {
      if (isNullCommit(base)) return undefined;
      if (!/^[0-9a-f]{4,40}$/i.test(base)) return undefined;
      if (!(await mirror.hasCommit(base))) {
        // The base is older than the shallow history: deepen (best effort — unknown means "build all").
        await withLock(
          lockPath,
          async () => {
            if (await mirror.hasCommit(base)) return;
            const failure = await deepenUntil(() => mirror.hasCommit(base), phaseCtx);
            if (failure) phaseCtx.log.write(mask(`could not deepen ${url} to find ${base} (${failure.message})`), 'system');
          },
          { signal: phaseCtx.signal },
        ).catch((err: unknown) => {
          if (err instanceof OciBuildError && !(err instanceof GitAuthError)) return;
          throw err;
        });
      }
      return changedFilesBetween({ fs, gitdir, cache: mirror.cache }, base, wanted.commit);
    },
    async dispose() {
      // The directory leaves the build's path either way; it may wait as the next build's start.
      await pool.give(worktreeDir, manifest);
    },
  };
}

/** How many branch or tag names an error lists before "and N more". */
const LISTED_REFS = 10;
/** Preferred as the `--ref` example, in this order, when the remote has one of them. */
const USUAL_DEFAULT_BRANCHES = ['main', 'master', 'trunk', 'develop'];

/**
 * The remote answered, but its HEAD gives nothing to build: it is empty, or HEAD names a branch
 * the remote does not have. Says which, and what the remote does have to give as --ref instead.
 */
async function noDefaultBranch(mirror: Mirror, url: string): Promise<GitRefNotFoundError> {
  const state = await mirror.state();
  // An empty remote leaves the mirror's branches as they were (nothing is pruned): don't list them.
  const branches = state?.empty ? [] : await mirror.branches();
  const tags = state?.empty ? [] : await mirror.tags();
  if (branches.length === 0 && tags.length === 0) {
    return new GitRefNotFoundError(`The Git remote ${url} is empty: it has no commits yet`, {
      hint: 'Push a commit to one of its branches (the one its HEAD names, usually main), then build again.',
      details: { remote: url },
    });
  }
  const why = state?.headMissing ? 'its HEAD names a branch that does not exist' : 'its HEAD does not point to any of its branches';
  const list = (names: string[]) =>
    names.slice(0, LISTED_REFS).join(', ') + (names.length > LISTED_REFS ? ` and ${names.length - LISTED_REFS} more` : '');
  const kind = branches.length > 0 ? 'BRANCH' : 'TAG';
  const example = USUAL_DEFAULT_BRANCHES.find((name) => branches.includes(name)) ?? branches[0] ?? tags[tags.length - 1]!;
  return new GitRefNotFoundError(
    `The Git remote ${url} has no default branch: ${why}. ` + (branches.length > 0 ? `Its branches: ${list(branches)}` : `It has no branches, only tags: ${list(tags)}`),
    {
      hint: `Give what to build with --ref ${kind} (for example --ref ${example}), or make an existing branch the repository's default branch on the Git server.`,
      details: { remote: url, ...(branches.length > 0 ? { branches } : { tags }) },
    },
  );
}

function finalError(failure: RemoteFailure, url: string, hadCredentials: boolean): OciBuildError {
  if (failure.kind === 'auth') {
    return new GitAuthError(`The Git remote ${url} refused ${hadCredentials ? 'the credentials' : 'access without credentials'} (${failure.message})`, {
      hint: hadCredentials
        ? 'Check that the token (git.token / OCI_BUILD_GIT_TOKEN, or the one in the URL) is valid and may read this repository.'
        : 'Set git.token (OCI_BUILD_GIT_TOKEN) to a token that may read this repository.',
    });
  }
  if (failure.kind === 'not-found') {
    return new GitRefNotFoundError(`The Git remote ${url} has no such repository (${failure.message})`, {
      hint: 'Check the URL; a private repository also answers 404 without credentials (set git.token).',
    });
  }
  return new InputError(`${url} did not answer as a Git smart-HTTP server (${failure.message})`, {
    hint: 'Give the https:// clone URL of the repository; oci-build does not speak SSH, git:// or dumb HTTP.',
  });
}
