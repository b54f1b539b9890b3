// Typed errors. Only bin/oci-build.js turns them into exit codes; everything else throws.
// Exit codes (DESIGN.md): 0 success, 1 a build phase failed, 2 bad usage/config/input,
// 3 a required tool or service is unavailable.

import { maskSecrets } from './secrets.js';

export const ExitCode = {
  Success: 0,
  BuildFailed: 1,
  Usage: 2,
  Unavailable: 3,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface OciBuildErrorOptions {
  cause?: unknown;
  /** What the user can do about it. Printed under the message. */
  hint?: string;
  /** Extra machine-readable details (config issues, paths looked at). */
  details?: Record<string, unknown>;
}

export class OciBuildError extends Error {
  readonly code: string = 'E_INTERNAL';
  readonly exitCode: ExitCodeValue = ExitCode.BuildFailed;
  /** Retrying the same job may succeed (network, registry, NATS). */
  readonly transient: boolean = false;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;

  constructor(message: string, options: OciBuildErrorOptions = {}) {
    // Masked here, once: an error's message and hint end up in records, logs, API answers and on
    // the terminal, and may quote foreign text (a tool's output, a server's answer).
    super(maskSecrets(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint === undefined ? undefined : maskSecrets(options.hint);
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** Bad flags or arguments. */
export class UsageError extends OciBuildError {
  override readonly code: string = 'E_USAGE';
  override readonly exitCode = ExitCode.Usage;
}

export interface ConfigIssue {
  /** Dotted key path, e.g. `server.port`, or the environment variable / flag it came from. */
  path: string;
  message: string;
  source?: string;
}

/** The configuration is invalid; every problem is listed at once. */
export class ConfigError extends OciBuildError {
  override readonly code = 'E_CONFIG';
  override readonly exitCode = ExitCode.Usage;
  readonly issues: ConfigIssue[];

  constructor(message: string, issues: ConfigIssue[], options: OciBuildErrorOptions = {}) {
    super(
      `${message}\n${issues.map((i) => `  - ${i.path}: ${i.message}${i.source ? ` (from ${i.source})` : ''}`).join('\n')}`,
      { ...options, details: { ...options.details, issues } },
    );
    this.issues = issues;
  }
}

/**
 * A repository's `.oci-build.yaml` is invalid: every problem at once, each line
 * `.oci-build.yaml: <key path>: <problem>`. The repository is what is wrong: exit 2, never retried.
 */
export class RepoSettingsError extends OciBuildError {
  override readonly code = 'E_REPO_SETTINGS';
  override readonly exitCode = ExitCode.Usage;
  readonly issues: ConfigIssue[];

  constructor(file: string, issues: ConfigIssue[], options: OciBuildErrorOptions = {}) {
    super(
      `Invalid ${file} (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${issues.map((i) => `  - ${file}: ${i.path}: ${i.message}`).join('\n')}`,
      { hint: `Fix ${file} in the repository and push again; its keys are in oci-build's schema/oci-build.repo.schema.json.`, ...options, details: { ...options.details, file, issues } },
    );
    this.issues = issues;
  }
}

/** The input (source directory, repository name, ref, payload) cannot be used as given. */
export class InputError extends OciBuildError {
  override readonly code: string = 'E_INPUT';
  override readonly exitCode = ExitCode.Usage;
}

/** A tool (buildah, go, mvn…) is not installed or does not work here. */
export class ToolUnavailableError extends OciBuildError {
  override readonly code: string = 'E_TOOL_UNAVAILABLE';
  override readonly exitCode = ExitCode.Unavailable;
}

/** A service (Git remote, registry, NATS) cannot be reached. Retrying may help. */
export class ServiceUnavailableError extends OciBuildError {
  override readonly code: string = 'E_SERVICE_UNAVAILABLE';
  override readonly exitCode = ExitCode.Unavailable;
  override readonly transient = true;
}

/** A phase of the build failed for a reason in the repository itself (compile error, bad Dockerfile). */
export class BuildFailedError extends OciBuildError {
  override readonly code: string = 'E_BUILD_FAILED';
  override readonly exitCode = ExitCode.BuildFailed;
}

/** A command exited non-zero. */
export class CommandFailedError extends BuildFailedError {
  override readonly code = 'E_COMMAND_FAILED';
  readonly command: string;
  readonly exitStatus?: number;

  constructor(message: string, command: string, exitStatus: number | undefined, options: OciBuildErrorOptions = {}) {
    super(message, options);
    this.command = command;
    this.exitStatus = exitStatus;
  }
}

/** The project has no Dockerfile where one is needed. */
export class DockerfileMissingError extends BuildFailedError {
  override readonly code = 'E_DOCKERFILE_MISSING';
}

/** The build ran past `build.timeout`. */
export class BuildTimeoutError extends BuildFailedError {
  override readonly code = 'E_TIMEOUT';
}

/** The build was cancelled (signal, or superseded by a newer push). */
export class CancelledError extends OciBuildError {
  override readonly code = 'E_CANCELLED';
  override readonly exitCode = ExitCode.BuildFailed;
}

/**
 * A Git remote that answered does not have what was asked (a ref, a default branch, the
 * repository itself). The input is what is wrong, so exit 2; never retried.
 */
export class GitRefNotFoundError extends OciBuildError {
  override readonly code = 'E_REF_NOT_FOUND';
  override readonly exitCode = ExitCode.Usage;
}

/** A Git remote refused the credentials. Never retried. */
export class GitAuthError extends OciBuildError {
  override readonly code = 'E_GIT_AUTH';
  override readonly exitCode = ExitCode.Unavailable;
}

export function isOciBuildError(err: unknown): err is OciBuildError {
  return err instanceof OciBuildError;
}

/** Retrying may succeed: the network, a registry or NATS was briefly unavailable. */
export function isTransient(err: unknown): boolean {
  return isOciBuildError(err) && err.transient;
}

/** A short, single-line description of any thrown value, without any secret of the process. */
export function describeError(err: unknown): string {
  return maskSecrets(err instanceof Error ? err.message : String(err));
}

/**
 * A symbolic link in the tree being built leads outside it (a committed `dist -> /some/dir` would
 * make the build write there). The repository is what is wrong: the job ends without a retry.
 */
export class UnsafeSymlinkError extends BuildFailedError {
  override readonly code = 'E_UNSAFE_SYMLINK';
}
