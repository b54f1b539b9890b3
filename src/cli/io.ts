import type { Writable } from 'node:stream';

/** What a command may touch of the outside world; tests hand in their own. */
export interface CliIO {
  stdout: Writable & { isTTY?: boolean; columns?: number };
  stderr: Writable & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  cwd: string;
  /** Cancels long-running commands (SIGINT in bin/oci-build.js). */
  signal?: AbortSignal;
}
