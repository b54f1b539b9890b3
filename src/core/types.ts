// The vocabulary of the pipeline. Pure data: no I/O, no adapters.
// The BuildRecord shape is part of the external contract (DESIGN.md, "BuildRecord").

export type Language = 'go' | 'java' | 'dotnet' | 'node';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
/** Every status, in a record's order of life. */
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export const FINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

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
  error?: BuildError;
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

export function isFinalStatus(status: JobStatus): boolean {
  return FINAL_STATUSES.includes(status);
}
