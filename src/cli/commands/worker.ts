// `oci-build worker`: pulls jobs from JetStream and runs the pipeline until SIGTERM (drain) or a
// second signal (cancel). The same adapters as `oci-build build`; the worker brings the store
// (JetStream KV), the logs (a JetStream stream) and the reporter.

import { settingsForLog, type Config, type ConfigEntry } from '../../config/config.js';
import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { createPipelineAdapters, runWorkerDaemon } from '../../compose.js';
import type { ImageOverrides } from '../../worker/worker-options.js';
import type { CliIO } from '../io.js';
import { loadCliConfigWithSources } from '../load-config.js';

export async function workerCommand(options: { config?: string; concurrency?: number; workDir?: string }, io: CliIO): Promise<ExitCodeValue> {
  const { config, entries } = await loadCliConfigWithSources(options.config, io, {
    ...(options.workDir ? { workDir: options.workDir } : {}),
    ...(options.concurrency !== undefined ? { worker: { concurrency: options.concurrency } } : {}),
  });
  const { createWorkerLogger } = await import('../../worker/worker-options.js');
  const logger = createWorkerLogger({ name: 'oci-build-worker' });
  logger.info({ settings: settingsForLog(entries) }, 'effective settings');
  const imageOverrides = imageOverridesOf(config, entries);
  if (Object.keys(imageOverrides).length > 0) {
    logger.info({ imageOverrides }, "this worker's image settings override what jobs carry from serve");
  }
  // One set of adapters for every job: they share the cache service and the mirrors' locks.
  const { cache: _cache, ...adapters } = createPipelineAdapters(config);
  await runWorkerDaemon(config, {
    logger,
    overrides: { imageOverrides },
    pipelineDeps: () => adapters,
    ...(io.signal ? { signal: io.signal } : {}),
    onStarted: (worker) => logger.info({ name: worker.options.name, concurrency: worker.options.concurrency, workDir: config.workDir }, 'oci-build worker started'),
  });
  return ExitCode.Success;
}

/**
 * The rule for image settings (README, Distributed mode): a job carries the registry, push and
 * TLS settings of the serve that queued it; those the worker is given itself (a flag, its
 * environment, its file) win, so a worker's setting is never silently ignored. Storage, isolation
 * and the auth file are always the worker's.
 */
export function imageOverridesOf(config: Config, entries: readonly ConfigEntry[]): ImageOverrides {
  const set = (key: string) => entries.some((e) => e.path === key && e.source !== 'default');
  return {
    ...(set('image.registry') && config.image.registry ? { registry: config.image.registry } : {}),
    ...(set('image.push') ? { push: config.image.push } : {}),
    ...(set('image.tlsVerify') ? { tlsVerify: config.image.tlsVerify } : {}),
  };
}
