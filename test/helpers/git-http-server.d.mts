// Types of git-http-server.mjs (plain JavaScript so the benchmark can import it too).

export interface GitServerRequest {
  method: string;
  path: string;
  status: number;
  authorization?: string;
}

export interface GitServer {
  /** Directory holding the bare repositories (`<name>.git`). */
  readonly root: string;
  readonly port: number;
  /** Every request received, in order. */
  readonly requests: GitServerRequest[];
  /** `http://[auth@]127.0.0.1:<port>/<name>.git`. */
  url(name: string, options?: { auth?: string }): string;
  /** Path of the bare repository `<root>/<name>.git`. */
  repoPath(name: string): string;
  /** Serves a bare clone of `fromDir` as `<name>`; returns its path. */
  addRepo(name: string, fromDir: string): Promise<string>;
  /** Stops listening and drops open connections (the repositories stay). */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  /** Stops and removes the root directory (when the server created it). */
  dispose(): Promise<void>;
}

export function startGitServer(options?: { token?: string; root?: string }): Promise<GitServer>;
