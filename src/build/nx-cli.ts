// Running the Nx CLI of a workspace: its own copy from node_modules (installed with `npm ci` when
// missing), with the environment that makes it non-interactive, local-only and cached across builds.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE_KINDS, type CacheKind } from '../cache/cache-service.js';
import { BuildFailedError, CommandFailedError, InputError, ServiceUnavailableError } from '../core/errors.js';
import { sanitizePathComponent } from '../core/naming.js';
import type { PhaseContext } from '../core/ports.js';
import type { BuildRunner } from '../exec/sandbox.js';
import { cacheMounts } from './cache-mounts.js';

/** What the Nx detector and builder need of the cache service (CacheService satisfies it). */
export interface NxCacheAccess {
  path(kind: CacheKind): string;
  prepare(kinds?: readonly CacheKind[]): Promise<void>;
  toolEnv(): Record<string, string>;
  /** Shown to sandboxed commands when present (CacheService has them; see cache-mounts.ts). */
  dotnetHome?(): string;
  mavenHome?(): string;
}

export interface NxDeps {
  /** Runs npm and Nx (exec/sandbox.ts: sandboxed, with a clean environment). */
  run: BuildRunner;
  cache: NxCacheAccess;
  /** Between SIGTERM and SIGKILL of a cancelled command. */
  killGraceMs?: number;
}

/** The lockfiles `npm ci` accepts. */
const NPM_LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json'];
const OTHER_LOCKFILES: Record<string, string> = { 'yarn.lock': 'yarn', 'pnpm-lock.yaml': 'pnpm', 'bun.lockb': 'bun', 'bun.lock': 'bun' };

/** How npm reports a registry it cannot reach. */
const NETWORK_FAILURE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b|network request .* failed/i;

/**
 * The workspace's own Nx entry point, from the `bin` of node_modules/nx/package.json (Nx 22:
 * dist/bin/nx.js; older releases: bin/nx.js): never a global nx, never `npx` (which may download one).
 */
export function nxEntryPoint(dir: string): string | undefined {
  const packageDir = join(dir, 'node_modules', 'nx');
  try {
    const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { bin?: string | Record<string, string> };
    const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin?.nx;
    if (typeof bin !== 'string') return undefined;
    const entry = join(packageDir, bin);
    return existsSync(entry) ? entry : undefined;
  } catch {
    return undefined;
  }
}

export function nxInstalled(dir: string): boolean {
  return nxEntryPoint(dir) !== undefined;
}

/**
 * Where Nx keeps its workspace data (project graph cache, and the database of the task cache).
 * Nx 22 serves a cache hit only when its database, not just the cache directory, knows the task
 * hash; the database lives in the workspace data directory, which defaults to `.nx/` inside the
 * worktree. Every build runs in a fresh worktree, so it is kept in the cache service instead, one
 * per repository name (verified: same commit in two directories → `[local cache]` for every task).
 */
export function nxWorkspaceDataDir(cache: NxCacheAccess, workspaceName: string): string {
  return join(cache.path('nx'), 'workspace-data', sanitizePathComponent(workspaceName));
}

/** The environment of every Nx command. */
export function nxEnv(cache: NxCacheAccess, workspaceName: string): Record<string, string | undefined> {
  return {
    ...cache.toolEnv(),
    NX_DAEMON: 'false',
    NX_NO_CLOUD: 'true',
    NX_CACHE_DIRECTORY: cache.path('nx'),
    NX_WORKSPACE_DATA_DIRECTORY: nxWorkspaceDataDir(cache, workspaceName),
    // Plain, line-oriented output: no terminal UI, no prompts, no colour codes in the log.
    NX_TUI: 'false',
    NX_INTERACTIVE: 'false',
    // Nx 22 starts each plugin in a worker process by default: about 1.2 s more per command here
    // (measured with the fixture), for isolation a one-shot command does not need.
    NX_ISOLATE_PLUGINS: 'false',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    // Inherited settings that would bypass the cache, redirect Nx or change what is built.
    NX_SKIP_NX_CACHE: undefined,
    NX_DISABLE_NX_CACHE: undefined,
    NX_WORKSPACE_ROOT_PATH: undefined,
    NX_PROJECT_GRAPH_CACHE_DIRECTORY: undefined,
    NX_BASE: undefined,
    NX_HEAD: undefined,
    NX_PROFILE: undefined,
    NX_TASKS_RUNNER: undefined,
  };
}

/** Runs `nx ARGS` in the workspace with the workspace's Nx and the Nx environment. */
export function runNx(
  deps: NxDeps,
  dir: string,
  workspaceName: string,
  args: readonly string[],
  ctx: PhaseContext,
  options: {
    env?: Record<string, string | undefined>;
    input?: string;
    log?: boolean;
    okExitCodes?: number[];
    capture?: boolean;
    /** Directories Nx writes besides the workspace and the caches (a file it is asked to write). */
    writable?: readonly string[];
  } = {},
) {
  const entry = nxEntryPoint(dir);
  if (!entry) {
    return Promise.reject(
      new InputError(`Nx is not installed in ${dir}: no node_modules/nx with an nx executable`, {
        hint: 'Add nx to the devDependencies of the root package.json (npm install -D nx) and commit package-lock.json.',
      }),
    );
  }
  // Any language cache: the targets may call go, mvn, dotnet or npm.
  const mounts = cacheMounts(deps.cache, CACHE_KINDS);
  return deps.run(process.execPath, [entry, ...args], {
    cwd: dir,
    tree: dir,
    writable: [...mounts.writable, ...(options.writable ?? [])],
    readable: mounts.readable,
    env: { ...nxEnv(deps.cache, workspaceName), ...options.env },
    signal: ctx.signal,
    ...(options.log === false ? {} : { log: ctx.log }),
    ...(deps.killGraceMs !== undefined ? { killGraceMs: deps.killGraceMs } : {}),
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.okExitCodes ? { okExitCodes: options.okExitCodes } : {}),
    ...(options.capture !== undefined ? { capture: options.capture } : {}),
    displayName: `nx ${args[0] ?? ''}`.trim(),
  });
}

/**
 * Installs the workspace's dependencies with `npm ci` when Nx is not in node_modules, with the npm
 * cache of the cache service. Only npm lockfiles are supported: `npm ci` is reproducible and needs
 * nothing but Node.
 */
export async function ensureNxInstalled(deps: NxDeps, dir: string, ctx: PhaseContext): Promise<void> {
  if (nxInstalled(dir)) return;
  const lockfile = NPM_LOCKFILES.find((name) => existsSync(join(dir, name)));
  if (!lockfile) {
    const other = Object.keys(OTHER_LOCKFILES).find((name) => existsSync(join(dir, name)));
    throw new InputError(
      other
        ? `The Nx workspace ${dir} has a ${other} (${OTHER_LOCKFILES[other]}) but no package-lock.json: oci-build installs Nx with npm ci`
        : `The Nx workspace ${dir} has no package-lock.json, so its dependencies (Nx included) cannot be installed`,
      {
        hint: 'Run `npm install` in the workspace and commit package-lock.json (with nx in devDependencies).',
        details: { dir, looked: NPM_LOCKFILES.map((name) => join(dir, name)) },
      },
    );
  }
  await deps.cache.prepare(['npm', 'nx']);
  ctx.log.write(`node_modules is missing: npm ci (from ${lockfile})`, 'system');
  try {
    await deps.run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      tree: dir,
      ...cacheMounts(deps.cache, ['npm', 'nx']),
      env: { ...deps.cache.toolEnv(), npm_config_cache: deps.cache.path('npm') },
      signal: ctx.signal,
      log: ctx.log,
      capture: false,
      displayName: 'npm ci',
      ...(deps.killGraceMs !== undefined ? { killGraceMs: deps.killGraceMs } : {}),
    });
  } catch (err) {
    if (!(err instanceof CommandFailedError)) throw err;
    // An unreachable registry is worth a retry (transient); anything else is the repository's.
    if (NETWORK_FAILURE.test(err.message)) {
      throw new ServiceUnavailableError(`npm ci in ${dir} could not reach the npm registry: ${err.message}`, {
        cause: err,
        hint: 'Check the network and the npm registry settings (npm config get registry); the build can be retried.',
      });
    }
    throw new BuildFailedError(`npm ci in ${dir} failed: ${err.message}`, {
      cause: err,
      hint: 'Check that package-lock.json matches package.json (run `npm install` and commit package-lock.json).',
    });
  }
  if (!nxInstalled(dir)) {
    throw new InputError(`npm ci in ${dir} did not install nx`, {
      hint: 'Add nx to the devDependencies of the root package.json (npm install -D nx) and commit package-lock.json.',
    });
  }
}
