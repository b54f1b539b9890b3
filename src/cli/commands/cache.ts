// `oci-build cache size` and `oci-build cache clean --older-than 7d`.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { parseDuration } from '../../config/duration.js';
import { createCacheService, workPaths } from '../../compose.js';
import { formatBytes } from '../render/format.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

interface CacheOptions {
  config?: string;
  json?: boolean;
  workDir?: string;
  olderThan?: string;
}

export async function cacheSizeCommand(options: CacheOptions, io: CliIO): Promise<ExitCodeValue> {
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const cache = createCacheService(config);
  const sizes = await cache.size();
  const total = sizes.reduce((sum, s) => sum + s.bytes, 0);
  if (options.json) {
    io.stdout.write(`${JSON.stringify({ root: workPaths(config.workDir).cache, caches: sizes, totalBytes: total }, null, 2)}\n`);
    return ExitCode.Success;
  }
  const width = Math.max(...sizes.map((s) => s.kind.length), 'total'.length);
  for (const s of sizes) io.stdout.write(`${s.kind.padEnd(width)}  ${formatBytes(s.bytes).padStart(10)}  ${s.files} files\n`);
  io.stdout.write(`${'total'.padEnd(width)}  ${formatBytes(total).padStart(10)}\n`);
  return ExitCode.Success;
}

export async function cacheCleanCommand(options: CacheOptions, io: CliIO): Promise<ExitCodeValue> {
  const olderThanMs = parseDuration(options.olderThan ?? '7d');
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const cache = createCacheService(config);
  const result = await cache.clean({ olderThanMs });
  if (options.json) io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else io.stdout.write(`Removed ${result.removedFiles} files (${formatBytes(result.removedBytes)}) not used for ${options.olderThan ?? '7d'}\n`);
  return ExitCode.Success;
}
