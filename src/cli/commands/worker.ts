// `oci-build worker`: pulls jobs from JetStream and runs the pipeline until SIGTERM (drain) or a
// second signal (cancel). The same adapters as `oci-build build`; the worker brings the store
// (JetStream KV), the logs (a JetStream stream) and the reporter.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { createPipelineAdapters, runWorkerDaemon } from '../../compose.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

export async function workerCommand(options: { config?: string; concurrency?: number; workDir?: string }, io: CliIO): Promise<ExitCodeValue> {
  const config = await loadCliConfig(options.config, io, {
    ...(options.workDir ? { workDir: options.workDir } : {}),
    ...(options.concurrency !== undefined ? { worker: { concurrency: options.concurrency } } : {}),
  });
  const { createWorkerLogger } = await import('../../worker/worker-options.js');
  const logger = createWorkerLogger({ name: 'oci-build-worker' });
  // One set of adapters for every job: they share the cache service and the mirrors' locks.
  const { cache: _cache, ...adapters } = createPipelineAdapters(config);
  await runWorkerDaemon(config, {
    logger,
    pipelineDeps: () => adapters,
    ...(io.signal ? { signal: io.signal } : {}),
    onStarted: (worker) => logger.info({ name: worker.options.name, concurrency: worker.options.concurrency, workDir: config.workDir }, 'oci-build worker started'),
  });
  return ExitCode.Success;
}
