// The interfaces the pipeline depends on. Adapters in src/<area>/ implement them; tests hand in fakes.
// Nothing here knows about NATS, isomorphic-git, execa, buildah or the work directory layout.

import type {
  BuildJob,
  BuildRecord,
  JobSource,
  JobStatus,
  PhaseMetric,
  PhaseName,
  Project,
  ProjectBuildOutcome,
  RepoSettings,
  RepositoryInfo,
  Workspace,
} from './types.js';

/** Where a build's output goes: the log file, a JetStream stream, the terminal. Line oriented. */
export interface LogSink {
  /** One line (no trailing newline). `stream` tells where it came from. */
  write(line: string, stream?: LogStream): void;
}

export type LogStream = 'stdout' | 'stderr' | 'system';

/** Passed to every adapter call the pipeline makes. */
export interface PhaseContext {
  signal: AbortSignal;
  log: LogSink;
}

// ---- source ----

export interface SourceCheckout {
  /** Absolute path of a directory holding the commit's files. */
  dir: string;
  repository: RepositoryInfo;
  /** The image's base name when it is not the repository's name (a subdirectory was built). */
  imageName?: string;
  /** The commit's committer time, seconds since the epoch (image timestamps). */
  commitTime: number;
  /** Things the user should know (e.g. "remote unreachable: built from the mirror"). */
  warnings: string[];
  /**
   * The job names the branch it was pushed to (a webhook), and the remote's branch no longer
   * points at the commit built: a later push moved it on, or it was deleted. The image then gets no
   * branch tag, so a branch tag never moves back to an older push's commit.
   */
  branchMovedOn?: boolean;
  /**
   * Files changed between `base` and the checked-out commit, relative to `dir`;
   * `undefined` when `base` is unknown (all zeros, or not in the history) so every project builds.
   */
  changedFilesSince(base: string, ctx: PhaseContext): Promise<string[] | undefined>;
  /**
   * The Git object id (tree or blob) of `path` (relative to `dir`, '' or '.' for `dir` itself) in
   * the commit checked out; undefined when the commit has nothing there. Result keys use it.
   */
  objectIdOf?(path: string): Promise<string | undefined>;
  /** Remove the worktree (no-op for a local directory). */
  dispose(): Promise<void>;
}

/** A remote's commit, made available in the persistent mirror by `GitService.syncRepository`. */
export interface SyncedRepository {
  /** The mirror (a bare repository) the commit is in: `GitService.localPath(url)`. */
  path: string;
  /** `owner/name` of the remote. */
  fullName: string;
  /** The remote URL without credentials. */
  cloneUrl: string;
  /** Full 40-hex commit SHA. */
  commit: string;
  /** `refs/heads/x`, `refs/tags/x`, or the commit itself when asked for by SHA. */
  ref: string;
  branch?: string;
  tag?: string;
  /** Set when the remote was unreachable and the mirror answered from an earlier sync. */
  warning?: string;
}

/**
 * The persistent mirrors of Git remotes (the seed's Git Service). Every method takes the remote's
 * URL, which may carry credentials: they reach the server and nothing else.
 */
export interface GitService {
  /**
   * Clones the mirror when it is absent and fetches when it exists (one sync at a time per
   * repository, transient failures retried), then resolves `ref`: a branch, a tag, a full or short
   * commit SHA, or the remote's HEAD when undefined. A commit older than the mirror's shallow
   * history is fetched on demand. When the remote stays unreachable, answers from the mirror with
   * a warning if it holds the ref.
   */
  syncRepository(url: string, ref: string | undefined, ctx: PhaseContext): Promise<SyncedRepository>;
  /** A completed mirror of the remote is on disk. */
  repositoryExists(url: string): Promise<boolean>;
  /** Where the remote's mirror lives (`<workDir>/repos/<host>/<owner>/<name>`); refuses hostile URLs. */
  localPath(url: string): string;
  /**
   * The full SHA of `revision` (a SHA, a branch, a tag, HEAD, with `~N` / `^N` steps) in the
   * mirror, deepening a shallow history as far as needed. Best effort: undefined when the remote
   * does not have it or cannot be reached.
   */
  resolveCommit(url: string, revision: string, ctx: PhaseContext): Promise<string | undefined>;
}

export interface SourceProvider {
  checkout(source: JobSource, job: BuildJob, ctx: PhaseContext): Promise<SourceCheckout>;
  /**
   * Starts what the checkout of `source` will first wait for on the network (a Git URL's ref
   * advertisement), so that it overlaps the rest of a command's start. Never fails; optional.
   */
  warm?(source: JobSource): void;
}

// ---- detect ----

export interface DetectOptions {
  /** Fallback name for the workspace (the repository's name). */
  name: string;
  /** `--project` names. */
  projects?: string[];
  /**
   * An affected build (Nx): the base commit and a lazy list of changed files, which is
   * `undefined` when the base cannot be found (then every project builds).
   */
  affected?: { base: string; changedFiles: () => Promise<string[] | undefined> };
}

export interface ProjectDetector {
  detect(dir: string, options: DetectOptions, ctx: PhaseContext): Promise<Workspace>;
}

// ---- build ----

export interface CodeBuilder {
  /**
   * Builds the selected projects of a workspace. Returns one outcome per selected project;
   * a failed project does not throw (the others' results stay in the record).
   * Throws only for failures outside the projects (a tool missing, cancellation).
   */
  build(workspace: Workspace, ctx: PhaseContext): Promise<ProjectBuildOutcome[]>;
}

// ---- image ----

export interface ImageSpec {
  project: string;
  contextDir: string;
  dockerfile: string;
  /** Full repository name, registry prefix included. */
  repository: string;
  tags: string[];
  labels: Record<string, string>;
  buildArgs: Record<string, string>;
  /** Seconds since the epoch: the image's `created` and every file's time. */
  timestamp: number;
  /** Verify TLS when pulling base images (`--no-tls-verify` turns it off). */
  tlsVerify?: boolean;
}

export interface BuiltImage {
  imageId: string;
  /** Manifest digest of the local image (sha256:…). */
  digest?: string;
}

export interface PushSpec {
  repository: string;
  tags: string[];
  imageId: string;
  tlsVerify: boolean;
}

export interface ImageBuilder {
  build(spec: ImageSpec, ctx: PhaseContext): Promise<BuiltImage>;
  /** Pushes every tag; returns the registry's manifest digest. */
  push(spec: PushSpec, ctx: PhaseContext): Promise<{ digest: string }>;
}

// ---- reuse of build results (core/result-key.ts, core/result-reuse.ts) ----

/** What the result index holds for one key: the image that those inputs made. */
export interface ResultEntry {
  key: string;
  project: string;
  /** Full repository name, registry prefix included. */
  repository: string;
  /** The digest the record gave (the registry's when pushed). */
  digest: string;
  /** The image's ID in the local store of the machine that built it (content-addressed: its config's digest). */
  imageId?: string;
  pushed: boolean;
  /** The build that made it. */
  buildId: string;
  createdAt: string;
  /** For debugging a miss (core/result-key.ts resultKeySummary): no secret. */
  inputs?: Record<string, unknown>;
}

/** Key → entry: a file under workDir for `build`, a JetStream KV bucket every worker shares. */
export interface ResultIndex {
  get(key: string): Promise<ResultEntry | undefined>;
  put(entry: ResultEntry): Promise<void>;
  /**
   * Claims `key` for the build about to make its image, so that builds of the same inputs at the
   * same time wait for that image instead of making it too (core/result-reuse.ts): `claimed` (the
   * index refreshes the claim until it is released), or the live claim another build holds, with
   * its revision. `replacing`: the revision of a claim judged abandoned (not refreshed), taken over
   * only while it is still that one. Optional: the local file index has none.
   */
  claim?(key: string, holder: ClaimHolder, replacing?: number): Promise<ClaimAnswer>;
}

/** The build a result key is claimed by. */
export interface ClaimHolder {
  buildId: string;
  worker?: string;
}

/** `refreshedAt`: when the holder last refreshed its claim (ms since the epoch, the index's clock). */
export type ClaimAnswer = { claimed: ResultClaim } | { heldBy: ClaimHolder; revision: number; refreshedAt: number };

/** A held claim: refreshed by the index until released (after the result is recorded, or the build failed). */
export interface ResultClaim {
  release(): Promise<void>;
}

/** Where a reused image must end up. */
export interface ReuseTarget {
  repository: string;
  tags: string[];
  push: boolean;
  tlsVerify: boolean;
}

/** How an index entry's image is still at hand: in the registry (tag there) or in the local store. */
export type ReuseSource = { kind: 'registry'; digest: string } | { kind: 'local'; imageId: string; digest?: string };

export interface ResultKeyRequest {
  workspace: Workspace;
  project: Project;
  checkout: SourceCheckout;
  repository: RepositoryInfo;
  labels: Record<string, string>;
  imageRepository: string;
  buildArgs: Record<string, string>;
  tlsVerify: boolean;
}

export interface BuildResults {
  index: ResultIndex;
  /** The project's result key, or why it has none (a dirty worktree, an unresolvable base image). */
  keyOf(request: ResultKeyRequest, ctx: PhaseContext): Promise<{ key: string; summary: Record<string, unknown> } | { reason: string }>;
  /** Where `entry`'s image can be had for `target`, checked by digest; undefined when it is gone. */
  locate(entry: ResultEntry, target: ReuseTarget, ctx: PhaseContext): Promise<ReuseSource | undefined>;
  /** Gives the located image the target's tags: locally, or in the registry without uploading a layer. */
  retag(source: ReuseSource, target: ReuseTarget, ctx: PhaseContext): Promise<{ digest?: string; imageId?: string; pushed: boolean }>;
}

// ---- per-repository settings ----

/** Reads a checkout's `.oci-build.yaml` (config/repo-settings.ts; core/repo-settings-apply.ts applies it). */
export interface RepoSettingsReader {
  /** The file at the root of `dir`, validated; undefined when there is none. Throws RepoSettingsError listing every problem. */
  read(dir: string, ctx: PhaseContext): Promise<RepoSettings | undefined>;
  /** What is wrong with `path` (absolute, inside `tree`) as a Dockerfile or a context directory; undefined when nothing. */
  checkPath(tree: string, path: string, kind: 'dockerfile' | 'directory'): Promise<string | undefined>;
}

// ---- record ----

/** What a listing selects (core/build-list.ts holds the one rule every store applies). */
export interface BuildListFilter {
  /**
   * At most this many records (the newest). Undefined: every match. A positive whole number only:
   * 0, a negative number or a fraction is refused with an InputError (callers that take a count
   * from a user, `status --limit` and `GET /builds?limit`, check it and default it themselves).
   */
  limit?: number;
  /** Repository full name (`owner/name`), compared case-insensitively as GitHub does. */
  repo?: string;
  /** Branch name, exactly. */
  branch?: string;
  status?: JobStatus;
}

/**
 * Where BuildRecords live: the file store (`build`, `status`), the KV bucket (the daemons), the
 * memory fake; test/integration/build-store-contract.test.ts runs one suite against all three.
 */
export interface BuildStore {
  /** Writes the record whole, replacing any record with its id; a reader never sees part of it. */
  put(record: BuildRecord): Promise<void>;
  /** The record with this id, or undefined when there is none. */
  get(id: string): Promise<BuildRecord | undefined>;
  /** The records matching `filter`, newest `createdAt` first (ties: the greater id first). */
  list(filter?: BuildListFilter): Promise<BuildRecord[]>;
}

/** A build's log, written as it runs. */
export interface BuildLog extends LogSink {
  /** Where the full log can be read (a file path, or a description). */
  readonly location?: string;
  close(): Promise<void>;
}

export interface LogStore {
  open(buildId: string): Promise<BuildLog>;
}

// ---- progress ----

/** Live progress for a human (spinner, plain lines) or a machine (JetStream status updates). */
export interface Reporter {
  phaseStarted(phase: PhaseName, project?: string): void;
  phaseEnded(metric: PhaseMetric): void;
  warn(message: string): void;
  /** The record changed (status, phases). Used by the worker to publish status. */
  recordUpdated?(record: BuildRecord): void | Promise<void>;
}

/**
 * Commit statuses on GitHub for webhook builds (src/notify). Each call returns at once: posting
 * happens in the background, and a status that cannot be posted never fails or delays the build.
 */
export interface CommitStatusNotifier {
  /** serve, after answering 202: `pending`, queued. `stillQueued` is asked before each attempt (a stale post must not land late). */
  queued(job: BuildJob, options?: { stillQueued?: () => Promise<boolean> }): void;
  /** A worker starts building the job: `pending`, building. */
  building(job: BuildJob): void;
  /** The final record is stored: the final state of every context; the outcomes go to the record's `notifications`. */
  finished(record: BuildRecord, job?: Pick<BuildJob, 'installationId'>): void;
  /** Waits up to `timeoutMs` for the posts in flight, then gives the rest up. */
  close(timeoutMs?: number): Promise<void>;
}

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface PipelineDeps {
  source: SourceProvider;
  detector: ProjectDetector;
  builder: CodeBuilder;
  images: ImageBuilder;
  store: BuildStore;
  logs: LogStore;
  reporter: Reporter;
  clock?: Clock;
  /** Name of the worker (hostname:pid) running the pipeline. */
  workerName?: string;
  /** The repository's `.oci-build.yaml`; undefined: never read. */
  repoSettings?: RepoSettingsReader;
  /** Reuse of earlier builds' images; undefined: every project builds (`--no-reuse`, `build.reuse: false`). */
  results?: BuildResults;
}

export type { Project };

// ---- the job queue, as the worker sees it (core/queue-ports.ts) ----

export * from './queue-ports.js';

/** The build log as the worker writes it: one log across the deliveries of a job, ended once. */
export interface JobLogStore extends LogStore {
  /** With `endOnClose: false` close() leaves the log open for a later attempt. */
  openLog(buildId: string, options?: { endOnClose?: boolean }): Promise<BuildLog>;
  /** Ends the log: followers stop here. */
  end(buildId: string): Promise<void>;
}
