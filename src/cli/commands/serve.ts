// `oci-build serve`: the webhook receiver and status API, until SIGINT/SIGTERM.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

export async function serveCommand(options: { config?: string; host?: string; port?: number }, io: CliIO): Promise<ExitCodeValue> {
  const config = await loadCliConfig(options.config, io, {
    server: {
      ...(options.host ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
    },
  });
  const { startServer } = await import('../../server/http-server.js');
  const { createLogger } = await import('../../log/logger.js');
  const logger = createLogger({ name: 'oci-build-serve' });
  const server = await startServer({ config, logger });

  await new Promise<void>((resolveStop) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'shutting down');
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      resolveStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    io.signal?.addEventListener('abort', () => stop('SIGTERM'), { once: true });
  });
  await server.close();
  return ExitCode.Success;
}
