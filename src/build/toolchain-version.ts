// The toolchain versions that go into a result key (core/result-key.ts): what `go version`,
// `mvn -v`, `dotnet --version` and `node -v` print, asked once per process run and per tool.
//
// Go and Node also across runs: what `go version` and `node -v` print is a property of the
// executable itself (one static binary each), so it is kept on disk under the executable's
// identity — its resolved path, size, inode, modification and change times (and GOTOOLCHAIN and
// GOROOT, which change what go says). A replaced or upgraded binary is another identity, asked
// again. Not Maven, npm or dotnet: scripts whose answer depends on a JDK, a package or a
// global.json elsewhere; they are asked every run. Saves a process (10-20 ms) a build.

import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type { Language } from '../core/types.js';
import type { CommandRunner } from '../exec/run-command.js';
import { writeFileAtomic } from '../fs/atomic-write.js';

/** Tools whose version is a property of their own executable, and the variables that change it. */
const BINARY_VERSIONED: Readonly<Record<string, readonly string[]>> = { go: ['GOTOOLCHAIN', 'GOROOT'], node: [] };
/** Entries kept in the cache file (one per executable seen: a few in practice). */
const MAX_CACHED = 32;

export interface ToolchainVersionOptions {
  /** The on-disk cache of binary-versioned tools (`<workDir>/cache/toolchain-versions.json`). */
  cacheFile?: string;
  /** Where PATH and the tools' variables come from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** The executable `tool` names on PATH, as the identity its version is cached under; undefined when not found. */
export function executableIdentity(tool: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    try {
      const real = realpathSync(join(dir, tool));
      const st = statSync(real, { bigint: true });
      if (!st.isFile() || (Number(st.mode) & 0o111) === 0) continue;
      const parts = [tool, real, st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs, ...(BINARY_VERSIONED[tool] ?? []).map((name) => `${name}=${env[name] ?? ''}`)];
      return createHash('sha256').update(parts.join('\0')).digest('hex');
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

const VERSION_COMMANDS: Readonly<Record<string, readonly string[]>> = {
  go: ['version'],
  mvn: ['-v', '-B'],
  dotnet: ['--version'],
  node: ['-v'],
  npm: ['-v'],
};

/** The tools whose versions decide a project's build output. */
export function toolsOf(language: Language | undefined, nx: boolean): string[] {
  const tools = new Set<string>();
  if (language === 'go') tools.add('go');
  if (language === 'java') tools.add('mvn');
  if (language === 'dotnet') tools.add('dotnet');
  if (language === 'node' || nx) {
    tools.add('node');
    tools.add('npm');
  }
  return [...tools].sort();
}

type VersionCache = Record<string, { version: string; at: string }>;

export class ToolchainVersions {
  private readonly versions = new Map<string, Promise<string>>();

  constructor(
    private readonly run: CommandRunner,
    private readonly options: ToolchainVersionOptions = {},
  ) {}

  /** A binary-versioned tool's version from the cache file, else asked (and kept when it answers). */
  private async ask(tool: string): Promise<string> {
    const env = this.options.env ?? process.env;
    const file = this.options.cacheFile;
    const identity = file && tool in BINARY_VERSIONED ? executableIdentity(tool, env) : undefined;
    const cache = identity ? readCache(file!) : {};
    const cached = identity ? cache[identity] : undefined;
    if (typeof cached?.version === 'string') return cached.version;
    const version = await this.askProcess(tool);
    if (identity) {
      const entries = Object.entries({ ...readCache(file!), [identity]: { version, at: new Date().toISOString() } })
        .sort(([, a], [, b]) => b.at.localeCompare(a.at))
        .slice(0, MAX_CACHED);
      // A cache: written atomically, not durably; a write that fails costs a process next time.
      await mkdir(dirname(file!), { recursive: true })
        .then(() => writeFileAtomic(file!, JSON.stringify(Object.fromEntries(entries), null, 2), { sync: false }))
        .catch(() => undefined);
    }
    return version;
  }

  private async askProcess(tool: string): Promise<string> {
    const r = await this.run(tool, VERSION_COMMANDS[tool] ?? ['--version'], { displayName: `${tool} version` });
    // Maven's lines hold Java's version too; its colour codes and the kernel's version ("OS
    // name") are left out, so workers on two kernels share results.
    return r.stdout
      .replace(/\u001b\[[0-9;]*m/g, '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0 && !l.startsWith('OS name:'))
      .join('\n');
  }

  /** The version text of each tool; throws when one cannot be asked (the build would fail too). */
  async of(tools: readonly string[]): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    for (const tool of tools) {
      let version = this.versions.get(tool);
      if (!version) {
        version = this.ask(tool);
        // A failure is not remembered: the next build asks again.
        version.catch(() => this.versions.delete(tool));
        this.versions.set(tool, version);
      }
      result[tool] = await version;
    }
    return result;
  }
}

function readCache(file: string): VersionCache {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as VersionCache) : {};
  } catch {
    return {};
  }
}
