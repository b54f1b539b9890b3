// The persistent mirror of one remote: a bare repository under <workDir>/repos/<host>/<owner>/<name>,
// kept up to date with isomorphic-git's fetch (shallow, all branches and tags). Only the URL
// without credentials is ever written into it; credentials reach the server through onAuth.
// Callers hold the repository lock (lock.ts) around everything that writes.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { monotonicMs } from '../core/elapsed.js';
import type { AuthCallback, HttpClient } from 'isomorphic-git';
import git from './isomorphic-git.js';
import type { Clock } from '../core/ports.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import { recordingAdvertisement, replayingAdvertisement, upToDateHead, type EarlyAdvertisement, type RecordedResponse } from './advertisement.js';
import { supplyMissingHead } from './head-intercept.js';
import { indexAndStorePack } from './pack-indexer.js';
import { PackReader } from './pack-reader.js';
import { interceptPacks } from './pack-intercept.js';
import { findCommit, resolveRevision, type RevisionResult } from './tree-diff.js';
import { MIRROR_STATE_FILE, type RemoteLocation } from './url.js';

/** What we keep next to the Git data: when the mirror last matched the remote. */
export interface MirrorState {
  cloneUrl: string;
  /** ISO time of the last complete fetch. */
  lastSyncAt: string;
  /** The remote's HEAD at that fetch, e.g. `refs/heads/main`. */
  defaultBranch?: string;
  /** At that fetch the remote had no refs at all: an empty repository. */
  empty?: boolean;
  /** At that fetch the remote's HEAD named a branch it does not have (see head-intercept.ts). */
  headMissing?: boolean;
}

export interface ResolvedRef {
  commit: string;
  /** `refs/heads/x`, `refs/tags/x`, or the commit itself. */
  ref: string;
  branch?: string;
  tag?: string;
}

export interface FetchResult {
  defaultBranch?: string;
  /** The remote has no refs at all. */
  empty: boolean;
  /** What came over the wire: pack bytes, objects, and the time spent indexing them. */
  pack: { bytes: number; objects: number; indexMs: number };
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** Commits of history per ref; undefined for the whole history. */
  depth?: number;
  /** Deepen by `depth` from the current shallow boundary. */
  relative?: boolean;
  onMessage?: (line: string) => void;
}

const REMOTE = 'origin';
/** What `git fetch --unshallow` asks for. */
export const FULL_DEPTH = 2147483647;

/** The fetch ended without the objects its refs name: a cut connection (retried as such). */
export class IncompleteFetchError extends Error {}

/**
 * node:fs for isomorphic-git with atomic file writes (fs/atomic-write.ts): a build materialising
 * a worktree while another fetches into the mirror never reads a half-written pack index or ref,
 * and a fetch killed half-way (or a crash) leaves no torn file behind.
 */
const atomicFs = {
  promises: {
    ...fs.promises,
    async writeFile(path: string, data: string | Uint8Array, options?: fs.WriteFileOptions) {
      // A fetch that changed nothing rewrites every ref it was told about with the same content:
      // that write (and its two fsyncs) is skipped. What is there was itself written durably.
      if (await sameContent(path, data)) return;
      const mode = typeof options === 'object' && options !== null && typeof options.mode === 'number' ? options.mode : undefined;
      await writeFileAtomic(path, data, mode !== undefined ? { mode } : {});
    },
  },
};

/** Whether the file at `path` holds exactly `data` (small files only: refs, config, shallow). */
async function sameContent(path: string, data: string | Uint8Array): Promise<boolean> {
  const wanted = typeof data === 'string' ? Buffer.from(data) : data;
  if (wanted.byteLength > 4096) return false;
  try {
    return Buffer.from(wanted).equals(await fs.promises.readFile(path));
  } catch {
    return false;
  }
}

export class Mirror {
  /** Shared by every read of this mirror in this process: pack indexes are parsed once. */
  readonly cache: object = {};

  constructor(
    readonly location: RemoteLocation,
    readonly gitdir: string,
    private readonly http: HttpClient,
    private readonly onAuth: AuthCallback | undefined,
    private readonly clock: Clock,
  ) {}

  /** The mirror's state, or undefined when it has never completed a fetch. */
  async state(): Promise<MirrorState | undefined> {
    try {
      return JSON.parse(await fs.promises.readFile(join(this.gitdir, MIRROR_STATE_FILE), 'utf8')) as MirrorState;
    } catch {
      return undefined;
    }
  }

  /** Creates the bare repository (after removing any half-made one from an interrupted first clone). */
  async create(): Promise<void> {
    await fs.promises.rm(this.gitdir, { recursive: true, force: true });
    await fs.promises.mkdir(this.gitdir, { recursive: true });
    await git.init({ fs, gitdir: this.gitdir, bare: true, defaultBranch: 'main' });
    await git.setConfig({ fs, gitdir: this.gitdir, path: `remote.${REMOTE}.url`, value: this.location.cloneUrl });
    await git.setConfig({ fs, gitdir: this.gitdir, path: `remote.${REMOTE}.fetch`, value: `+refs/heads/*:refs/remotes/${REMOTE}/*` });
  }

  private early: EarlyAdvertisement | undefined;

  /** An advertisement asked for before this sync (GitService.syncRepository): the next fetch starts from it. */
  useEarlyAdvertisement(early: EarlyAdvertisement): void {
    this.early = early;
  }

  /** The early advertisement's response, once. */
  private async takeEarlyAdvertisement(): Promise<RecordedResponse | undefined> {
    const early = this.early;
    this.early = undefined;
    return early?.response;
  }

  /** One fetch of every branch and tag; no retry, no lock (the caller's business). */
  async fetch(options: FetchOptions = {}): Promise<FetchResult> {
    const received = { bytes: 0, objects: 0, indexMs: 0 };
    let headMissing = false;
    const raw = options.signal ? withSignal(this.http, options.signal) : this.http;
    // The advertisement first: a mirror that has all of it is up to date without a fetch
    // (advertisement.ts). A deepening fetch (relative) always runs.
    let recorded: RecordedResponse | undefined;
    if (!options.relative) {
      const early = await this.takeEarlyAdvertisement();
      const recording = recordingAdvertisement(early ? replayingAdvertisement(raw, early) : raw);
      const info = await git.getRemoteInfo2({ http: recording.http, url: this.location.cloneUrl, protocolVersion: 1, ...(this.onAuth ? { onAuth: this.onAuth } : {}) });
      recorded = recording.recorded();
      const [snapshot, state] = info.refs ? await Promise.all([this.snapshotRefs(), this.state()]) : [];
      const head = info.refs && snapshot ? upToDateHead(info.refs, { refs: snapshot.refs, defaultBranch: state?.defaultBranch }, REMOTE) : undefined;
      const headOid = info.refs?.find((r) => r.ref === 'HEAD')?.oid;
      if (head && headOid) return this.recordSync({ defaultBranch: head, fetchHead: headOid }, received, false);
    }
    const network: HttpClient = supplyMissingHead(replayingAdvertisement(raw, recorded), () => {
      headMissing = true;
    });
    const http = interceptPacks(network, async (pack) => {
      const started = monotonicMs();
      received.bytes += pack.length;
      const stored = await indexAndStorePack(pack, this.gitdir, async (oid) => {
        try {
          const { type, object } = await git.readObject({ fs, gitdir: this.gitdir, oid, format: 'content', cache: this.cache });
          return { type, data: Buffer.from(object as Uint8Array) };
        } catch {
          return undefined;
        }
      });
      received.objects += stored?.objects ?? 0;
      received.indexMs += monotonicMs() - started;
    });
    // isomorphic-git moves the refs before it has the pack: a connection lost in the middle of
    // the transfer would leave refs naming objects the mirror never got. Snapshot, verify, roll back.
    const before = await this.snapshotRefs();
    let result: Awaited<ReturnType<typeof git.fetch>>;
    try {
      result = await this.fetchOnce(http, options);
      await this.assertRefsComplete();
    } catch (err) {
      await this.restoreRefs(before);
      throw err;
    }
    return this.recordSync(result, received, headMissing);
  }

  private fetchOnce(http: HttpClient, options: FetchOptions) {
    return git.fetch({
      fs: atomicFs,
      http,
      gitdir: this.gitdir,
      cache: this.cache,
      url: this.location.cloneUrl,
      remote: REMOTE,
      ref: 'HEAD',
      remoteRef: 'HEAD',
      singleBranch: false,
      tags: true,
      prune: true,
      // Tags move too (force-pushed releases): take the remote's set as it is.
      pruneTags: true,
      ...(options.depth !== undefined ? { depth: options.depth } : {}),
      ...(options.relative ? { relative: true } : {}),
      ...(this.onAuth ? { onAuth: this.onAuth } : {}),
      ...(options.onMessage ? { onMessage: options.onMessage } : {}),
    });
  }

  private async recordSync(
    result: { defaultBranch: string | null; fetchHead: string | null },
    received: FetchResult['pack'],
    headMissing: boolean,
  ): Promise<FetchResult> {
    const previous = await this.state();
    const empty = result.fetchHead === null;
    if (empty) {
      // isomorphic-git prunes nothing when the remote advertises no refs at all: a remote whose
      // branches and tags were all deleted is empty now, as a fresh clone of it would be.
      const { refs } = await this.snapshotRefs();
      for (const name of refs.keys()) await git.deleteRef({ fs, gitdir: this.gitdir, ref: name }).catch(() => undefined);
    }
    if (headMissing) {
      // isomorphic-git pointed origin/HEAD at the stand-in's commit: the remote has no such thing.
      await git.deleteRef({ fs, gitdir: this.gitdir, ref: `refs/remotes/${REMOTE}/HEAD` }).catch(() => undefined);
    }
    // An empty remote, or one whose HEAD names no branch, has no default branch now, whatever it
    // had at the previous fetch (the branch isomorphic-git names after the stand-in is none either).
    const defaultBranch = empty || headMissing ? undefined : (result.defaultBranch ?? previous?.defaultBranch);
    const state: MirrorState = {
      cloneUrl: this.location.cloneUrl,
      lastSyncAt: this.clock.now().toISOString(),
      ...(defaultBranch ? { defaultBranch } : {}),
      ...(empty ? { empty: true } : {}),
      ...(headMissing ? { headMissing: true } : {}),
    };
    // Written last, atomically and durably: its presence means "a fetch completed". A state that
    // differs from the previous one only in lastSyncAt is not fsynced: a crash can lose that time
    // (at worst the state, and the next sync fetches as into a new mirror), never a fetch.
    const durable = !previous || JSON.stringify({ ...previous, lastSyncAt: state.lastSyncAt }) !== JSON.stringify(state);
    await writeFileAtomic(join(this.gitdir, MIRROR_STATE_FILE), JSON.stringify(state, null, 2), durable ? { syncDir: true } : { sync: false });
    return { ...(defaultBranch ? { defaultBranch } : {}), empty, pack: received };
  }

  private async snapshotRefs(): Promise<{ refs: Map<string, string>; shallow: string | undefined }> {
    // Every read at once (each is a thread-pool round trip); the map is filled in name order.
    const [lists, shallow] = await Promise.all([
      Promise.all(
        [`refs/remotes/${REMOTE}`, 'refs/tags'].map(async (prefix) => {
          const names = await git.listRefs({ fs, gitdir: this.gitdir, filepath: prefix }).catch(() => [] as string[]);
          const full = names.map((name) => `${prefix}/${name}`).filter((ref) => ref !== `refs/remotes/${REMOTE}/HEAD`);
          const oids = await Promise.all(full.map((ref) => git.resolveRef({ fs, gitdir: this.gitdir, ref, depth: 1 }).catch(() => undefined)));
          return full.map((ref, i) => [ref, oids[i]] as const);
        }),
      ),
      fs.promises.readFile(join(this.gitdir, 'shallow'), 'utf8').catch(() => undefined),
    ]);
    const refs = new Map<string, string>();
    for (const [ref, oid] of lists.flat()) if (oid) refs.set(ref, oid);
    return { refs, shallow };
  }

  private async restoreRefs(snapshot: { refs: Map<string, string>; shallow: string | undefined }): Promise<void> {
    const now = await this.snapshotRefs();
    for (const name of now.refs.keys()) {
      if (!snapshot.refs.has(name)) await git.deleteRef({ fs, gitdir: this.gitdir, ref: name }).catch(() => undefined);
    }
    for (const [name, oid] of snapshot.refs) {
      if (now.refs.get(name) !== oid) await git.writeRef({ fs: atomicFs, gitdir: this.gitdir, ref: name, value: oid, force: true }).catch(() => undefined);
    }
    const shallowPath = join(this.gitdir, 'shallow');
    if (snapshot.shallow === undefined) await fs.promises.rm(shallowPath, { force: true });
    else await atomicFs.promises.writeFile(shallowPath, snapshot.shallow);
  }

  /** Every branch and tag names an object the mirror has (else the transfer was cut short). */
  private async assertRefsComplete(): Promise<void> {
    const { refs } = await this.snapshotRefs();
    // Index lookups only: asking isomorphic-git would load and checksum every pack whole.
    const packs = PackReader.open(this.gitdir);
    try {
      for (const [name, oid] of refs) {
        const present = packs.has(oid) || fs.existsSync(join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
        if (!present) throw new IncompleteFetchError(`unexpected end of the fetch: ${name} names ${oid}, which did not arrive`);
      }
    } finally {
      packs.close();
    }
  }

  /** Commits at the shallow boundary; empty when the mirror has the whole history. */
  async shallowCommits(): Promise<string[]> {
    try {
      const text = await fs.promises.readFile(join(this.gitdir, 'shallow'), 'utf8');
      return text.split('\n').filter((line) => /^[0-9a-f]{40}$/.test(line));
    } catch {
      return [];
    }
  }

  /**
   * Resolves a ref against what the mirror holds: a branch, a tag (`v1` or `refs/tags/v1`),
   * `refs/heads/x`, or a full or abbreviated commit; undefined for the remote's HEAD.
   */
  async resolve(ref: string | undefined): Promise<ResolvedRef | undefined> {
    const base = { fs, gitdir: this.gitdir, cache: this.cache };
    const tryRef = async (name: string) => {
      try {
        return await git.resolveRef({ ...base, ref: name });
      } catch {
        return undefined;
      }
    };
    // The commit a ref names (annotated tags peeled), or undefined when the mirror lacks it
    // (a process killed between isomorphic-git's ref update and the pack's arrival).
    const peel = async (oid: string) => (await git.readCommit({ ...base, oid }).catch(() => undefined))?.oid;
    const branchRef = async (branch: string): Promise<ResolvedRef | undefined> => {
      const oid = await tryRef(`refs/remotes/${REMOTE}/${branch}`);
      const commit = oid ? await peel(oid) : undefined;
      return commit ? { commit, ref: `refs/heads/${branch}`, branch } : undefined;
    };
    const tagRef = async (tag: string): Promise<ResolvedRef | undefined> => {
      const oid = await tryRef(`refs/tags/${tag}`);
      const commit = oid ? await peel(oid) : undefined;
      return commit ? { commit, ref: `refs/tags/${tag}`, tag } : undefined;
    };

    if (ref === undefined || ref === 'HEAD') {
      const state = await this.state();
      const head = state?.defaultBranch;
      if (head?.startsWith('refs/heads/')) return branchRef(head.slice('refs/heads/'.length));
      return undefined;
    }
    if (ref.startsWith('refs/heads/')) return branchRef(ref.slice('refs/heads/'.length));
    if (ref.startsWith('refs/tags/')) return tagRef(ref.slice('refs/tags/'.length));
    const byName = (await branchRef(ref)) ?? (await tagRef(ref));
    if (byName) return byName;
    const commit = await findCommit({ fs, gitdir: this.gitdir, cache: this.cache }, ref);
    return commit ? { commit, ref: commit } : undefined;
  }

  /** The names of the remote's branches (`main`, `feature/x`) as of the last fetch, sorted. */
  async branches(): Promise<string[]> {
    const names = await git.listRefs({ fs, gitdir: this.gitdir, filepath: `refs/remotes/${REMOTE}` }).catch(() => [] as string[]);
    return names.filter((name) => name !== 'HEAD').sort();
  }

  /** The names of the remote's tags as of the last fetch, sorted. */
  async tags(): Promise<string[]> {
    return (await git.listRefs({ fs, gitdir: this.gitdir, filepath: 'refs/tags' }).catch(() => [] as string[])).sort();
  }

  /**
   * A revision (`main`, `origin/main`, `refs/heads/main`, `v1`, `HEAD`, a SHA, with `~N` / `^N`)
   * against the mirror, where the remote's branches are kept as `refs/remotes/origin/*`.
   */
  resolveRevision(revision: string): Promise<RevisionResult> {
    return resolveRevision({ fs, gitdir: this.gitdir, cache: this.cache }, revision, (name) => {
      if (name === 'HEAD') return [`refs/remotes/${REMOTE}/HEAD`];
      if (name.startsWith('refs/heads/')) return [`refs/remotes/${REMOTE}/${name.slice('refs/heads/'.length)}`];
      if (name.startsWith('refs/')) return [name];
      if (name.startsWith(`${REMOTE}/`)) return [`refs/remotes/${name}`, `refs/remotes/${REMOTE}/${name}`, `refs/tags/${name}`];
      return [`refs/remotes/${REMOTE}/${name}`, `refs/tags/${name}`];
    });
  }
}

/** Passes the build's AbortSignal to every request isomorphic-git makes. */
function withSignal(http: HttpClient, signal: AbortSignal): HttpClient {
  return { request: (request) => http.request({ ...request, signal }) };
}
