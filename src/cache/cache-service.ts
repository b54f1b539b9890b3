// Per-language dependency caches that persist between builds, under <workDir>/cache/<kind>.
// Every tool reaches its cache through environment variables (toolEnv), so a tool started
// indirectly (an Nx target running `mvn`, a package script running `go`) uses the same caches.

import { existsSync, mkdirSync, writeFileSync, type Stats } from 'node:fs';
import { chmod, cp, lstat, readdir, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

export type CacheKind = 'go-mod' | 'go-build' | 'maven' | 'nuget' | 'npm' | 'nx';

export const CACHE_KINDS: readonly CacheKind[] = ['go-mod', 'go-build', 'maven', 'nuget', 'npm', 'nx'];

export const DEFAULT_MAVEN_SEED = '/usr/share/maven-repo';

export interface CacheServiceOptions {
  /** Run Maven offline (-o). Default: true when the seed directory exists. */
  mavenOffline?: boolean;
  /** A Maven repository copied into an empty cache (links followed). */
  mavenSeed?: string;
}

export interface CacheUsage {
  kind: CacheKind;
  bytes: number;
  files: number;
}

/**
 * Written in the Maven cache once it holds a full copy of the seed. `clean` removes it whenever it
 * removes anything from the Maven cache, so the next `prepare` copies back what was removed:
 * an offline Maven needs every plugin of the seed, used recently or not.
 */
const SEED_MARKER = '.oci-build-seeded';

/**
 * Tool homes (not caches, never cleaned): a Maven `user.home` holding the offline settings, the
 * .NET CLI home. They keep the tools from writing into the user's home directory.
 */
const TOOL_HOME = '.tool-home';

export class CacheService {
  readonly root: string;
  readonly mavenOffline: boolean;
  readonly mavenSeed: string;
  private readonly prepared = new Set<CacheKind>();
  private toolHomesReady = false;

  constructor(root: string, options: CacheServiceOptions = {}) {
    this.root = resolve(root);
    this.mavenSeed = options.mavenSeed ?? DEFAULT_MAVEN_SEED;
    this.mavenOffline = options.mavenOffline ?? existsSync(this.mavenSeed);
  }

  path(kind: CacheKind): string {
    return join(this.root, kind);
  }

  /** The `user.home` Maven runs with when offline: holds .m2/settings.xml. */
  mavenHome(): string {
    return join(this.root, TOOL_HOME, 'maven');
  }

  /** The Maven settings file used when offline (also passed with -s by the Maven builder). */
  mavenSettingsFile(): string {
    return join(this.mavenHome(), '.m2', 'settings.xml');
  }

  /** DOTNET_CLI_HOME: where the .NET CLI keeps its first-run sentinels and NuGet its user config. */
  dotnetHome(): string {
    return join(this.root, TOOL_HOME, 'dotnet');
  }

  /**
   * Creates the cache directories and the tool homes; seeds the Maven repository from the seed when
   * it has not been seeded yet. Idempotent and cheap once done (remembered per instance).
   */
  async prepare(kinds: readonly CacheKind[] = CACHE_KINDS): Promise<void> {
    // Made synchronously: each is microseconds of work where an asynchronous mkdir is a thread-pool
    // round trip, and a CLI build waits for them before its first command (bench/local-overhead).
    if (!this.toolHomesReady) {
      mkdirSync(this.dotnetHome(), { recursive: true });
      mkdirSync(dirname(this.mavenSettingsFile()), { recursive: true });
      writeFileSync(this.mavenSettingsFile(), mavenSettings(this.path('maven'), this.mavenOffline));
      this.toolHomesReady = true;
    }
    for (const kind of kinds) {
      if (this.prepared.has(kind)) continue;
      mkdirSync(this.path(kind), { recursive: true });
      if (kind === 'maven') await this.seedMaven();
      this.prepared.add(kind);
    }
  }

  private async seedMaven(): Promise<void> {
    const repo = this.path('maven');
    if (!existsSync(this.mavenSeed) || existsSync(join(repo, SEED_MARKER))) return;
    const entries = await readdir(repo);
    if (entries.length === 0) {
      // Copy aside, then rename onto the empty directory: a second worker preparing at the same
      // time never sees a half-copied repository (rename fails on a non-empty target instead).
      const staging = join(this.root, `.maven-seed-${process.pid}-${Date.now()}`);
      try {
        await cp(this.mavenSeed, staging, { recursive: true, dereference: true });
        await writeFile(join(staging, SEED_MARKER), `${this.mavenSeed}\n`);
        await rename(staging, repo);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        // Another process seeded it first, or a build wrote into it meanwhile: fill in below.
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
      if (existsSync(join(repo, SEED_MARKER))) return;
    }
    // A repository `clean` thinned out: copy back only what is missing.
    await cp(this.mavenSeed, repo, { recursive: true, dereference: true, force: false, errorOnExist: false });
    await writeFile(join(repo, SEED_MARKER), `${this.mavenSeed}\n`);
  }

  /**
   * Environment wiring every language's cache into any tool started with it, directly or through
   * another tool. Call `prepare()` first so the directories exist.
   */
  toolEnv(): Record<string, string> {
    const mavenOpts = [`-Dmaven.repo.local=${this.path('maven')}`];
    // Maven 3.8 reads no MAVEN_ARGS, and offline mode has no system property: a `user.home` whose
    // .m2/settings.xml says <offline>true</offline> is the only way to make it offline through the
    // environment alone (verified with mvn 3.8.7: "Cannot access central in offline mode").
    if (this.mavenOffline) mavenOpts.push(`-Duser.home=${this.mavenHome()}`);
    const env: Record<string, string> = {
      GOMODCACHE: this.path('go-mod'),
      GOCACHE: this.path('go-build'),
      // Module cache files are read-only by default, which would make `cache clean` fail for a
      // non-root user. -mod is left alone: the go command's default (readonly, or vendor when a
      // vendor directory exists) is what a repository expects. GOPROXY is left to the user: with no
      // network a module download fails at once with an unknown-host error, which says enough.
      // -buildvcs=false: VCS stamping records whether the worktree has untracked files — such as
      // the dist/ of the previous build — so the same commit would give a different binary, hence a
      // different image digest. The image's revision label carries the commit instead.
      GOFLAGS: '-modcacherw -buildvcs=false',
      NUGET_PACKAGES: this.path('nuget'),
      NUGET_HTTP_CACHE_PATH: join(this.path('nuget'), '.http-cache'),
      NUGET_PLUGINS_CACHE_PATH: join(this.path('nuget'), '.plugins-cache'),
      DOTNET_CLI_HOME: this.dotnetHome(),
      DOTNET_CLI_TELEMETRY_OPTOUT: '1',
      DOTNET_NOLOGO: '1',
      DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
      // No MSBuild node, build server or compiler server outliving the build: they would survive
      // in the process group after the build ends and hold files of the worktree.
      MSBUILDDISABLENODEREUSE: '1',
      DOTNET_CLI_USE_MSBUILD_SERVER: '0',
      UseSharedCompilation: 'false',
      npm_config_cache: this.path('npm'),
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      NX_CACHE_DIRECTORY: this.path('nx'),
      NX_DAEMON: 'false',
      NX_NO_CLOUD: 'true',
    };
    // The mvn script splits MAVEN_OPTS on whitespace; a path with a space cannot go through it.
    // The Maven builder passes the same settings as arguments, so only indirect runs lose them.
    if (!/\s/.test(this.root)) env.MAVEN_OPTS = mavenOpts.join(' ');
    return env;
  }

  async size(): Promise<CacheUsage[]> {
    const usage: CacheUsage[] = [];
    for (const kind of CACHE_KINDS) {
      const total = { kind, bytes: 0, files: 0 };
      await walkFiles(this.path(kind), (_path, st) => {
        total.bytes += st.size;
        total.files += 1;
      });
      usage.push(total);
    }
    return usage;
  }

  /**
   * Removes files (and the directories they leave empty) not used for `olderThanMs`: neither
   * modified nor, where the filesystem records it, read (atime), so a plugin jar read by every
   * build stays. Symbolic links are removed like files, never followed; nothing outside the
   * cache directories is touched, the tool homes included.
   */
  async clean(options: { olderThanMs: number; now?: Date }): Promise<{ removedFiles: number; removedBytes: number }> {
    const cutoff = (options.now ?? new Date()).getTime() - options.olderThanMs;
    const result = { removedFiles: 0, removedBytes: 0 };
    for (const kind of CACHE_KINDS) {
      const dir = this.path(kind);
      const st = await lstat(dir).catch(() => undefined);
      // A cache directory replaced by a link is not walked: it would lead out of the root.
      if (!st?.isDirectory()) continue;
      const before = result.removedFiles;
      await cleanDir(dir, cutoff, result, true);
      if (kind === 'maven' && result.removedFiles > before) {
        await rm(join(dir, SEED_MARKER), { force: true });
        this.prepared.delete('maven');
      }
      // Nx's task database (workspace-data) would still claim hits whose outputs were just removed,
      // and restore nothing: forget it, at the cost of one cache miss per repository.
      if (kind === 'nx' && result.removedFiles > before) {
        await rm(join(dir, 'workspace-data'), { recursive: true, force: true });
      }
    }
    return result;
  }
}

/** Visits every file under `dir` with its lstat: links below `dir` are visited as files, never followed. */
export async function walkFiles(dir: string, visit: (path: string, st: Stats) => void): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await walkFiles(path, visit);
    else {
      const st = await lstat(path).catch(() => undefined);
      if (st) visit(path, st);
    }
  }
}

/** Returns true when `dir` is empty afterwards. */
async function cleanDir(
  dir: string,
  cutoff: number,
  result: { removedFiles: number; removedBytes: number },
  isKindRoot: boolean,
): Promise<boolean> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  let remaining = entries.length;
  let removedHere = false;
  for (const entry of entries) {
    const path = join(dir, entry.name);
    // Dirent types come from lstat semantics: a link to a directory is a link, not a directory.
    if (entry.isDirectory()) {
      const empty = await cleanDir(path, cutoff, result, false);
      if (empty && (await removeEmptyDir(path, dir))) {
        remaining -= 1;
        removedHere = true;
      }
      continue;
    }
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    if (Math.max(st.mtimeMs, st.atimeMs) >= cutoff) continue;
    if (await removeFile(path, dir)) {
      result.removedFiles += 1;
      result.removedBytes += st.size;
      remaining -= 1;
      removedHere = true;
    }
  }
  if (isKindRoot) return false;
  if (remaining > 0) return false;
  if (removedHere) return true;
  // An empty directory nothing was removed from: only when it has not been touched either.
  const st = await stat(dir).catch(() => undefined);
  return st !== undefined && st.mtimeMs < cutoff;
}

async function removeFile(path: string, parent: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    // Read-only directories (a Go module cache written without -modcacherw).
    await chmod(parent, 0o755);
    await unlink(path);
    return true;
  }
}

async function removeEmptyDir(path: string, parent: string): Promise<boolean> {
  try {
    await rmdir(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    await chmod(parent, 0o755);
    await rmdir(path);
    return true;
  }
}

function mavenSettings(localRepository: string, offline: boolean): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!-- Written by oci-build: its Maven cache, offline when the machine has no Maven Central. -->',
    '<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">',
    `  <localRepository>${escapeXml(localRepository)}</localRepository>`,
    `  <offline>${offline}</offline>`,
    '</settings>',
    '',
  ].join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
