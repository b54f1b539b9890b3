// Runs the built CLI (bin/oci-build.js → dist/) as a user would, in a child process.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export const CLI = join(REPO_ROOT, 'bin/oci-build.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolveRun) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      {
        cwd: options.cwd ?? REPO_ROOT,
        env: { ...process.env, CI: 'true', NO_COLOR: '1', ...options.env },
        timeout: options.timeoutMs ?? 170_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolveRun({ code, stdout, stderr });
      },
    );
  });
}

/** Environment for an isolated CLI run: its own work directory and buildah storage (vfs, chroot). */
export function isolatedEnv(root: string): Record<string, string> {
  return {
    OCI_BUILD_WORK_DIR: join(root, 'work'),
    OCI_BUILD_IMAGE_ROOT: join(root, 'storage'),
    OCI_BUILD_IMAGE_RUN_ROOT: join(root, 'run'),
    OCI_BUILD_IMAGE_STORAGE_DRIVER: 'vfs',
    OCI_BUILD_IMAGE_ISOLATION: 'chroot',
  };
}
