// The single executable (dist/oci-build) for the tests that run it: built by scripts/sea.mjs from
// the dist/ that test/global-setup.ts compiled, and only when its inputs changed (--if-stale), so
// several test files share one build. Also: a PATH with every tool of this machine but Node, to
// show that the executable needs no Node install.

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CliResult } from './cli.js';
import { REPO_ROOT } from './fixtures.js';

export const SEA_EXECUTABLE = join(REPO_ROOT, 'dist/oci-build');

/** Builds dist/oci-build unless it is up to date with dist/ and its other inputs; returns its path. */
export function ensureSeaExecutable(): string {
  execFileSync(process.execPath, [join(REPO_ROOT, 'scripts/sea.mjs'), '--if-stale'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  return SEA_EXECUTABLE;
}

const NODE_TOOLS = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);

export interface NodelessPath {
  /** A PATH value: one directory of links to /usr/bin and /usr/sbin, without node, npm, npx. */
  path: string;
  cleanup(): void;
}

/**
 * The links live under /var/tmp, not /tmp: build commands run in a bubblewrap sandbox that mounts
 * an empty /tmp, and they must still find their tools (go, git) on this PATH.
 */
export function nodelessPath(): NodelessPath {
  const dir = mkdtempSync('/var/tmp/oci-build-nodeless-');
  for (const parent of ['/usr/bin', '/usr/sbin']) {
    for (const name of readdirSync(parent)) {
      if (NODE_TOOLS.has(name) || existsSync(join(dir, name))) continue;
      symlinkSync(join(parent, name), join(dir, name));
    }
  }
  const probe = spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: dir } });
  if (probe.status === 0) throw new Error(`${dir} still resolves node`);
  return { path: dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs an executable (dist/oci-build, buildah) with exactly `env`; never rejects. */
export function runExecutable(file: string, args: string[], options: { env: Record<string, string | undefined>; cwd?: string; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolveRun) => {
    execFile(file, args, { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 170_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolveRun({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}
