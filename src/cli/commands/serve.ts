// `oci-build serve`: the webhook receiver and status API, until SIGINT/SIGTERM. The first signal
// (or io.signal) closes gracefully (serve drains: requests in progress are answered); a second one
// is left to Node's default, which ends the process at once.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { onShutdownSignals } from '../../exec/shutdown-signals.js';
import type { CliIO } from '../io.js';
import { settingsForLog } from '../../config/config.js';
import { loadCliConfigWithSources } from '../load-config.js';

export async function serveCommand(options: { config?: string; host?: string; port?: number }, io: CliIO): Promise<ExitCodeValue> {
  const { config, entries } = await loadCliConfigWithSources(options.config, io, {
    server: {
      ...(options.host ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
    },
  });
  const { startServer } = await import('../../server/http-server.js');
  const { createLogger } = await import('../../log/logger.js');
  const logger = createLogger({ name: 'oci-build-serve' });
  logger.info({ settings: settingsForLog(entries) }, 'effective settings');
  const { createCommitStatusNotifier } = await import('../../compose.js');
  const notifier = await createCommitStatusNotifier(config, { logger });
  const server = await startServer({ config, logger, ...(notifier ? { notifier } : {}) });

  let removeSignalHandlers: (() => void) | undefined;
  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      resolveStop();
    };
    removeSignalHandlers = onShutdownSignals({ graceful: stop });
    io.signal?.addEventListener('abort', () => stop('SIGTERM'), { once: true });
  });
  try {
    await server.close();
    await notifier?.close(10_000);
  } finally {
    removeSignalHandlers?.();
  }
  return ExitCode.Success;
}
