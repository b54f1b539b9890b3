// The vocabulary of the pipeline. Pure data: no I/O, no adapters.
// The BuildRecord shape is part of the external contract (DESIGN.md, "BuildRecord").

export type Language = 'go' | 'java' | 'dotnet' | 'node';

/** `skipped`: the repository's `.oci-build.yaml` says not to build it (BuildRecord.skipReason). */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';
/** Every status, in a record's order of life. */
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'];

export const FINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled', 'skipped'];

export type PhaseName = 'source' | 'detect' | 'build' | 'image' | 'push';

export type PhaseStatus = 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export type Trigger = 'cli' | 'webhook';

/** Where a job's code comes from. */
export type JobSource =
  | { kind: 'local'; path: string }
  | { kind: 'git'; url: string; ref?: string };

export interface RepositoryInfo {
  /** `owner/name` for a remote, the directory's name for a local source. */
  fullName: string;
  /** The remote URL, never with credentials. */
  cloneUrl?: string;
  /** `refs/heads/main`, `refs/tags/v1`, or the commit itself when built by SHA. */
  ref?: string;
  branch?: string;
  tag?: string;
  /** Full 40-hex commit SHA. */
  commit: string;
  /** The push's previous head (webhook jobs), or the `--base` of an affected build. */
  before?: string;
  /** The local worktree had uncommitted changes. */
  dirty?: boolean;
  /** The repository's default branch, when known (a webhook's repository.default_branch). */
  defaultBranch?: string;
}

export interface ImageOptions {
  /** Image name prefix, e.g. `127.0.0.1:5000/team`. */
  registry?: string;
  push: boolean;
  tlsVerify: boolean;
  buildArgs: Record<string, string>;
}

/** One unit of work: what `build` runs in-process and what a worker pulls from the queue. */
export interface BuildJob {
  id: string;
  trigger: Trigger;
  deliveryId?: string;
  source: JobSource;
  /** Repository metadata known before the source phase (webhook payloads). */
  repository?: Partial<RepositoryInfo> & { fullName?: string };
  /** Only these projects of a monorepo. */
  projects?: string[];
  /** Nx: build only the projects affected between this commit and the one built. */
  affectedBase?: string;
  /** Stop after the code build. */
  noImage?: boolean;
  image: ImageOptions;
  pusher?: string;
  headCommitMessage?: string;
  createdAt: string;
  /** The GitHub App installation that sent the webhook (`installation.id`): commit statuses are posted as it. */
  installationId?: number;
  /** A rebuild (POST /builds/:id/rebuild, `oci-build rebuild`): the id of the build it repeats. */
  rebuildOf?: string;
}

export interface PhaseMetric {
  name: PhaseName;
  status: PhaseStatus;
  project?: string;
  startedAt: string;
  durationMs: number;
  error?: string;
  /** Something the user should know although the phase succeeded (e.g. built from the mirror). */
  warning?: string;
  /** Nx: the build came from the Nx cache. */
  cached?: boolean;
}

export interface ImageResult {
  project: string;
  /** Full repository name, registry prefix included. */
  repository: string;
  tags: string[];
  digest?: string;
  imageId?: string;
  pushed: boolean;
  /** The image was not built again: the build with this id made it (same inputs, same digest). */
  reusedFrom?: string;
}

export interface BuildError {
  phase: PhaseName | 'queue';
  code: string;
  message: string;
}

export interface BuildRecord {
  id: string;
  status: JobStatus;
  trigger: Trigger;
  deliveryId?: string;
  repository: RepositoryInfo | (Partial<RepositoryInfo> & { fullName: string });
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  worker?: string;
  phases: PhaseMetric[];
  images: ImageResult[];
  projects?: ProjectSummary[];
  /** Path of the full log (local store) or where to read it. */
  logPath?: string;
  warnings?: string[];
  cancelledBy?: string;
  /** The commit statuses posted for this build (src/notify), each with its outcome. */
  notifications?: StatusNotification[];
  /** Why a person cancelled it, as they said (core/cancel-request.ts). */
  cancelReason?: string;
  /** The id of the build this one repeats (a rebuild). */
  rebuildOf?: string;
  /** What the repository's `.oci-build.yaml` changed in this build. */
  settings?: RepoSettingsRecord;
  /** Why a `skipped` build built nothing. */
  skipReason?: string;
  /**
   * While a running build waits for another build of the same inputs to make a project's image
   * (core/result-reuse.ts): which project, which build (on which worker), since when. Removed when
   * the wait ends.
   */
  waitingFor?: { project: string; buildId: string; worker?: string; since: string };
  error?: BuildError;
}

/** One commit status posted (or given up on) for a build: GitHub's context and state, when, and why it failed. */
export interface StatusNotification {
  context: string;
  state: 'pending' | 'success' | 'failure' | 'error';
  /** When it was posted, or given up on. */
  at: string;
  /** Set when it could not be posted (masked). */
  error?: string;
}

export interface ProjectSummary {
  name: string;
  language?: Language;
  root: string;
  built: boolean;
  cached?: boolean;
  image?: string;
  /** Why no image was built for it, when none was. */
  noImageReason?: string;
  /** Not built: the image of the build with this id was reused (core/result-key.ts). */
  reusedFrom?: string;
}

/** A buildable unit found in a source tree. */
export interface Project {
  name: string;
  /** Path relative to the workspace root ('.' for a single-project repository). */
  root: string;
  language?: Language;
  /** Absolute path of the Dockerfile/Containerfile, when one exists. */
  dockerfile?: string;
  /** Absolute paths looked at for a Dockerfile, for error messages. */
  dockerfileCandidates: string[];
  /** Build command override from the config (argument array). */
  buildCommand?: string[];
  /** From `.oci-build.yaml`: the build context relative to the workspace root (default: `root`). */
  context?: string;
  /** From `.oci-build.yaml`: the image repository's name, under the operator's registry prefix. */
  image?: string;
  /** From `.oci-build.yaml`: the build command's own variables, under the operator's `build.env`. */
  env?: Record<string, string>;
  /** From `.oci-build.yaml`: build arguments, under the job's (`--build-arg`). */
  buildArgs?: Record<string, string>;
  /** Nx: the projects this one depends on in Nx's graph (their roots are inputs of its result). */
  dependsOn?: string[];
}

export interface Workspace {
  kind: 'single' | 'nx';
  /** Absolute path of the checked-out source. */
  dir: string;
  /** Image repository base name (the Git repository's name). */
  name: string;
  projects: Project[];
  /** Names of the projects this build acts on (a subset of `projects`). */
  selected: string[];
  /** Why `selected` is what it is (e.g. "affected since abc1234: 1 of 4 projects"). */
  selectionNote?: string;
}

export interface ProjectBuildOutcome {
  project: string;
  status: 'succeeded' | 'failed' | 'skipped';
  startedAt: string;
  durationMs: number;
  cached?: boolean;
  error?: string;
}

/** What `.oci-build.yaml` set for one project (only the keys it set). */
export interface ProjectRepoSettings {
  command?: string[];
  dockerfile?: string;
  context?: string;
  image?: string;
  env?: Record<string, string>;
  buildArgs?: Record<string, string>;
  enabled?: boolean;
}

/** BuildRecord.settings: the repository's file as this build applied it. */
export interface RepoSettingsRecord {
  /** The file, relative to the repository root (`.oci-build.yaml`). */
  file: string;
  /** Its Git blob id (SHA-1 of `blob <size>\0<bytes>`, as `git hash-object` prints). */
  blob: string;
  /** Per project name: what the file changed in it. */
  projects: Record<string, ProjectRepoSettings>;
  /** The extra image tags it added. */
  tags: string[];
  branches?: { include: string[]; exclude: string[] };
}

/** One entry of `.oci-build.yaml` `image.tags`: a template, added only on `branches` / the default branch when given. */
export interface TagEntry {
  tag: string;
  branches?: string[];
  defaultBranch?: boolean;
}

/** A valid `.oci-build.yaml`, as config/repo-settings.ts parsed it (core/repo-settings-apply.ts applies it). */
export interface RepoSettings {
  /** The file, relative to the repository root. */
  file: string;
  /** Its Git blob id. */
  blob: string;
  projects: Record<string, ProjectRepoSettings>;
  tags: TagEntry[];
  branches?: { include: string[]; exclude: string[] };
}

export function isFinalStatus(status: JobStatus): boolean {
  return FINAL_STATUSES.includes(status);
}
