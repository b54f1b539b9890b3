// `oci-build cache size` and `oci-build cache clean --older-than 7d`: the dependency caches under
// <workDir>/cache, and the Git mirrors (with their spare worktrees) of remote sources.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { parseDuration } from '../../config/duration.js';
import { createCacheService, createMirrorCache, workPaths } from '../../compose.js';
import { MIRROR_MIN_IDLE_MS, type MirrorCleanResult, type MirrorUsage } from '../../cache/mirror-cache.js';
import { formatBytes, formatDuration } from '../render/format.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

interface CacheOptions {
  config?: string;
  json?: boolean;
  workDir?: string;
  olderThan?: string;
}

/** The table's label of the mirrors' row (the JSON's kind is `git-mirrors`). */
const MIRRORS_LABEL = 'git mirrors';

export async function cacheSizeCommand(options: CacheOptions, io: CliIO): Promise<ExitCodeValue> {
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const cache = createCacheService(config);
  const sizes = await cache.size();
  const mirrors = await createMirrorCache(config).size();
  const total = sizes.reduce((sum, s) => sum + s.bytes, 0) + mirrors.bytes;
  if (options.json) {
    const caches: Array<(typeof sizes)[number] | MirrorUsage> = [...sizes, mirrors];
    io.stdout.write(`${JSON.stringify({ root: workPaths(config.workDir).cache, caches, totalBytes: total }, null, 2)}\n`);
    return ExitCode.Success;
  }
  const width = Math.max(...sizes.map((s) => s.kind.length), MIRRORS_LABEL.length, 'total'.length);
  for (const s of sizes) io.stdout.write(`${s.kind.padEnd(width)}  ${formatBytes(s.bytes).padStart(10)}  ${s.files} files\n`);
  io.stdout.write(
    `${MIRRORS_LABEL.padEnd(width)}  ${formatBytes(mirrors.bytes).padStart(10)}  ${mirrors.files} files, ${mirrors.repositories} ${mirrors.repositories === 1 ? 'repository' : 'repositories'}\n`,
  );
  io.stdout.write(`${'total'.padEnd(width)}  ${formatBytes(total).padStart(10)}\n`);
  for (const note of mirrors.notes) io.stdout.write(`note: ${note}\n`);
  return ExitCode.Success;
}

export async function cacheCleanCommand(options: CacheOptions, io: CliIO): Promise<ExitCodeValue> {
  const olderThan = options.olderThan ?? '7d';
  const olderThanMs = parseDuration(olderThan);
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const cache = createCacheService(config);
  const result = await cache.clean({ olderThanMs });
  const mirrors = await createMirrorCache(config).clean({ olderThanMs });
  if (olderThanMs < MIRROR_MIN_IDLE_MS) {
    mirrors.notes.push(`Git mirrors used in the last ${formatDuration(MIRROR_MIN_IDLE_MS)} are kept whatever --older-than says: a build still reads its mirror for a while after fetching it`);
  }
  if (options.json) {
    io.stdout.write(`${JSON.stringify({ ...result, gitMirrors: mirrors }, null, 2)}\n`);
    return ExitCode.Success;
  }
  io.stdout.write(`Removed ${result.removedFiles} files (${formatBytes(result.removedBytes)}) not used for ${olderThan}\n`);
  writeMirrorClean(mirrors, olderThan, io);
  return ExitCode.Success;
}

function writeMirrorClean(mirrors: MirrorCleanResult, olderThan: string, io: CliIO): void {
  const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  const names = mirrors.removed.map((m) => m.repository).join(', ');
  const mirrorBytes = mirrors.removed.reduce((sum, m) => sum + m.bytes, 0);
  io.stdout.write(
    `Removed ${count(mirrors.removed.length, 'Git mirror', 'Git mirrors')} (${formatBytes(mirrorBytes)}, spare worktrees included) not used for ${olderThan}${names ? `: ${names}` : ''}\n`,
  );
  if (mirrors.kept > 0) io.stdout.write(`Kept ${count(mirrors.kept, 'Git mirror', 'Git mirrors')} used in the last ${olderThan}\n`);
  if (mirrors.removedOrphans > 0) {
    io.stdout.write(
      `Removed ${count(mirrors.removedOrphans, 'orphan', 'orphans')} (${formatBytes(mirrors.removedBytes - mirrorBytes)}): spare worktrees of mirrors that no longer exist, or what an interrupted clean left\n`,
    );
  }
  for (const s of mirrors.skipped) io.stdout.write(`Skipped the Git mirror ${s.repository}: ${s.reason}\n`);
  for (const note of mirrors.notes) io.stdout.write(`note: ${note}\n`);
}
