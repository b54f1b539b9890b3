// The GitService port on isomorphic-git: one persistent mirror per remote, synced under the
// repository's lock with retries, answering from what it holds when the remote is down, and
// fetching older history only when a build asks for it. Credentials go to the server through
// onAuth, only where credential-policy.ts allows, and are registered as the process's secrets so
// that nothing written anywhere carries them.

import { monotonicMs } from '../core/elapsed.js';
import * as fs from 'node:fs';
import type { AuthCallback, HttpClient } from 'isomorphic-git';
import {
  GitAuthError,
  GitRefNotFoundError,
  InputError,
  OciBuildError,
  ServiceUnavailableError,
} from '../core/errors.js';
import type { Clock, GitService, PhaseContext, SyncedRepository } from '../core/ports.js';
import { maskSecrets, registerSecrets, urlSecrets } from '../core/secrets.js';
import type { Config } from '../config/config.js';
import type { EarlyAdvertisement } from './advertisement.js';
import { withLock } from './lock.js';
import { FULL_DEPTH, Mirror } from './mirror.js';
import { decideCredentials, type CredentialDecision } from './credential-policy.js';
import { RemoteFetchFailure, retryTransient, type RemoteFailure } from './remote-errors.js';
import { looksLikeSha } from './tree-diff.js';
import { checkRefName, mirrorLockPath, mirrorPath, parseRemoteUrl, type RemoteLocation } from './url.js';

export interface GitServiceOptions {
  workDir: string;
  git: Config['git'];
  clock: Clock;
  http: HttpClient;
  /** For tests: randomness of the retry jitter. */
  random?: () => number;
  /** Advertisements asked for ahead of the sync, by clone URL (source-provider.ts `warm`); each is used once. */
  early?: Map<string, EarlyAdvertisement>;
}

/** What `syncRepository` gives inside src/git/: the mirror itself, for reading the commit out. */
export interface MirrorSync extends SyncedRepository {
  mirror: Mirror;
}

/** One remote as the service handles it: where its mirror is, and how to speak to it. */
interface Remote {
  location: RemoteLocation;
  url: string;
  gitdir: string;
  lockPath: string;
  /** Whether onAuth answers the remote's 401, and if not, why. */
  credentials: CredentialDecision;
  mask: (text: string) => string;
  mirror: Mirror;
}

export class MirrorGitService implements GitService {
  constructor(private readonly options: GitServiceOptions) {}

  localPath(url: string): string {
    return mirrorPath(this.options.workDir, parseRemoteUrl(url));
  }

  async repositoryExists(url: string): Promise<boolean> {
    return (await this.open(url).mirror.state()) !== undefined;
  }

  async syncRepository(url: string, ref: string | undefined, ctx: PhaseContext): Promise<MirrorSync> {
    // Everything that names a path is checked before any file is touched.
    const remote = this.open(url);
    if (ref !== undefined) checkRefName(ref);
    const { mirror } = remote;
    const early = this.options.early?.get(remote.url);
    if (early) this.options.early!.delete(remote.url);
    const log = (line: string) => ctx.log.write(remote.mask(line), 'system');
    const { depth, retries } = this.options.git;

    return withLock(
      remote.lockPath,
      async () => {
        const state = await mirror.state();
        // An advertisement asked for before this sync starts the fetch, unless the mirror was
        // synced after it was asked for (another build fetched meanwhile: the mirror's refs may be
        // newer than it, and a fetch from it would move them back).
        if (early && !(Date.parse(state?.lastSyncAt ?? '') >= early.startedAt)) mirror.useEarlyAdvertisement(early);
        if (!state) await mirror.create();
        let failure: RemoteFailure | undefined;
        try {
          // depth 0: the whole history (no shallow boundary at all).
          failure = await this.fetchWithRetries(remote, depth > 0 ? { depth } : {}, state ? 'fetching' : 'cloning', ctx);
        } catch (err) {
          // A first clone that failed for good leaves nothing behind.
          if (!state) await fs.promises.rm(remote.gitdir, { recursive: true, force: true });
          throw err;
        }
        if (failure && !state) await fs.promises.rm(remote.gitdir, { recursive: true, force: true });
        let wanted = await mirror.resolve(ref);
        if (!wanted && !failure && ref !== undefined && looksLikeSha(ref)) {
          // An older commit than the shallow history holds: fetch more of it.
          failure = await this.deepenUntil(remote, async () => (wanted = await mirror.resolve(ref)) !== undefined, ctx);
        }
        const synced = (warning?: string): MirrorSync => ({
          path: remote.gitdir,
          fullName: remote.location.fullName,
          cloneUrl: remote.url,
          ...wanted!,
          ...(warning ? { warning } : {}),
          mirror,
        });
        if (failure) {
          const current = await mirror.state();
          if (wanted && current) {
            const warning = `remote ${remote.url} unreachable (${failure.message}): built from the mirror as of ${current.lastSyncAt}`;
            return synced(warning);
          }
          throw new ServiceUnavailableError(
            `The Git remote ${remote.url} is unreachable (${failure.message})${current ? ` and its mirror has no ${ref ? `ref ${ref}` : 'default branch'}` : ' and there is no mirror of it yet'}`,
            {
              hint: `Check that ${remote.url} is reachable from this machine, then run the build again (retried ${retries} time${retries === 1 ? '' : 's'}; git.retries sets how often).`,
              details: { remote: remote.url, error: failure.message },
            },
          );
        }
        if (!wanted) {
          if (ref === undefined) throw await noDefaultBranch(mirror, remote.url);
          throw new GitRefNotFoundError(`The Git remote ${remote.url} has no branch, tag or commit ${JSON.stringify(ref)}`, {
            hint: 'Check --ref: a branch, a tag, or a commit SHA reachable from one of them.',
          });
        }
        return synced();
      },
      { signal: ctx.signal, onWait: () => log(`waiting for another build to finish fetching ${remote.url}`) },
    );
  }

  async resolveCommit(url: string, revision: string, ctx: PhaseContext): Promise<string | undefined> {
    const remote = this.open(url);
    const { mirror } = remote;
    let result = await mirror.resolveRevision(revision);
    // A name the mirror does not know stays unknown: only a SHA or a walk past the shallow
    // boundary can be found by fetching more history.
    if (!('commit' in result) && result.missing === 'history') {
      try {
        await withLock(
          remote.lockPath,
          async () => {
            // Another build may have deepened the mirror while this one waited for the lock.
            const found = async () => 'commit' in (result = await mirror.resolveRevision(revision));
            if (await found()) return;
            const failure = await this.deepenUntil(remote, found, ctx);
            if (failure) ctx.log.write(remote.mask(`could not deepen ${remote.url} to find ${revision} (${failure.message})`), 'system');
          },
          { signal: ctx.signal },
        );
      } catch (err) {
        // Best effort: a remote that refuses or fails only means the commit stays unknown.
        if (!(err instanceof OciBuildError) || err instanceof GitAuthError) throw err;
      }
    }
    return 'commit' in result ? result.commit : undefined;
  }

  private open(url: string): Remote {
    const { workDir, git: gitConfig, http, clock } = this.options;
    const location = parseRemoteUrl(url);
    // Registered before anything can fail or be logged.
    registerSecrets([gitConfig.token, ...urlSecrets(url)]);
    const credentials = decideCredentials(url, gitConfig);
    const onAuth: AuthCallback | undefined = credentials.send
      ? () => ({ username: credentials.credentials.username, password: credentials.credentials.password })
      : undefined;
    const gitdir = mirrorPath(workDir, location);
    return {
      location,
      url: location.cloneUrl,
      gitdir,
      lockPath: mirrorLockPath(workDir, location),
      credentials,
      mask: maskSecrets,
      mirror: new Mirror(location, gitdir, http, onAuth, clock),
    };
  }

  /** One fetch with retries; returns the final failure when the remote stayed unreachable. */
  private async fetchWithRetries(
    remote: Remote,
    fetchOptions: { depth?: number; relative?: boolean },
    what: string,
    ctx: PhaseContext,
  ): Promise<RemoteFailure | undefined> {
    const log = (line: string) => ctx.log.write(remote.mask(line), 'system');
    const policy = { ...this.options.git, ...(this.options.random ? { random: this.options.random } : {}) };
    try {
      await retryTransient(
        async (attempt) => {
          if (attempt === 0) log(`${what} ${remote.url}`);
          const started = monotonicMs();
          const { pack } = await remote.mirror.fetch({ ...fetchOptions, signal: ctx.signal });
          log(
            `fetched in ${Math.round(monotonicMs() - started)} ms` +
              (pack.objects > 0 ? ` (${(pack.bytes / 1024 / 1024).toFixed(1)} MB, ${pack.objects} objects, indexed in ${Math.round(pack.indexMs)} ms)` : ' (up to date)'),
          );
        },
        policy,
        {
          signal: ctx.signal,
          mask: remote.mask,
          onRetry: (failure, delayMs, attempt) => log(`fetching ${remote.url} failed (${failure.message}); retry ${attempt} of ${policy.retries} in ${delayMs} ms`),
        },
      );
      return undefined;
    } catch (err) {
      if (!(err instanceof RemoteFetchFailure)) throw err;
      const { failure } = err;
      if (failure.kind === 'transient') return failure;
      throw finalError(failure, remote.url, remote.credentials);
    }
  }

  /** Fetches more history until `found` says so or the mirror holds everything. */
  private async deepenUntil(remote: Remote, found: () => Promise<boolean>, ctx: PhaseContext): Promise<RemoteFailure | undefined> {
    const steps = [{ depth: Math.max(this.options.git.depth * 10, 500), relative: true }, { depth: FULL_DEPTH }];
    for (const step of steps) {
      if ((await remote.mirror.shallowCommits()).length === 0) return undefined;
      const what = step.depth === FULL_DEPTH ? 'fetching the whole history of' : `deepening by ${step.depth} commits:`;
      const failure = await this.fetchWithRetries(remote, step, what, ctx);
      if (failure) return failure;
      if (await found()) return undefined;
    }
    return undefined;
  }
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
  const branches = await mirror.branches();
  const tags = await mirror.tags();
  if (state?.empty || (branches.length === 0 && tags.length === 0)) {
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

function finalError(failure: RemoteFailure, url: string, credentials: CredentialDecision): OciBuildError {
  if (failure.kind === 'auth') {
    if (credentials.send) {
      return new GitAuthError(`The Git remote ${url} refused the credentials (${failure.message})`, {
        hint: 'Check that the token (git.token / OCI_BUILD_GIT_TOKEN, or the one in the URL) is valid and may read this repository.',
      });
    }
    if (credentials.source !== 'none') {
      return new GitAuthError(`The Git remote ${url} asks for credentials (${failure.message}), and ${credentials.reason}`, {
        hint: credentials.hint,
        details: { remote: url, withheld: credentials.source, failed: credentials.failed },
      });
    }
    return new GitAuthError(`The Git remote ${url} refused access without credentials (${failure.message})`, {
      hint: 'Set git.token (OCI_BUILD_GIT_TOKEN) to a token that may read this repository.',
    });
  }
  if (failure.kind === 'not-found') {
    return new GitRefNotFoundError(`The Git remote ${url} has no such repository (${failure.message})`, {
      hint:
        !credentials.send && credentials.source !== 'none'
          ? `Check the URL; a private repository also answers 404 without credentials, and ${credentials.reason}. ${credentials.hint}`
          : 'Check the URL; a private repository also answers 404 without credentials (set git.token).',
    });
  }
  return new InputError(`${url} did not answer as a Git smart-HTTP server (${failure.message})`, {
    hint: 'Give the https:// clone URL of the repository; oci-build does not speak SSH, git:// or dumb HTTP.',
  });
}
