// `oci-build serve`: GitHub webhooks in, jobs onto JetStream, the status API out. This module
// turns options into a running ServeApp (serve-app.ts: the state machine and the request handler);
// the routes are webhook-route.ts (with the enqueue protocol, enqueue.ts) and status-routes.ts.

import type { Config } from '../config/config.js';
import { ConfigError } from '../core/errors.js';
import type { CommitStatusNotifier } from '../core/ports.js';
import { createLogger, type Logger } from '../log/logger.js';
import type { JobIntake } from './job-intake.js';
import { ServerMetrics } from './metrics.js';
import type { BuildControl } from './build-actions.js';
import { queueBuildControl } from './queue-build-control.js';
import { QueueIntake, connectQueueIntake } from './queue-intake.js';
import { ServeApp, type ServeState } from './serve-app.js';

export type { ServeState } from './serve-app.js';

export interface ServerOptions {
  config: Config;
  /** The queue and status store; by default connected from config.nats (src/queue). */
  intake?: JobIntake;
  logger?: Logger;
  /** Override config.server.host/port (flags are already merged into config; tests pass port 0). */
  host?: string;
  port?: number;
  /** Start-up of the status watch that feeds the metrics (default true). */
  watchRecords?: boolean;
  /** How often records of webhooks answered 503 are settled again while unsettled (default 2 s). */
  settleRetryMs?: number;
  /** Background round trips to NATS of the intake this opens (default 5 s). */
  probeIntervalMs?: number;
  /** Commit statuses (compose.ts createCommitStatusNotifier); none: no statuses. Not closed by serve. */
  notifier?: CommitStatusNotifier;
  /** Cancel requests and the workers' list; by default over the intake's NATS connection. */
  control?: BuildControl;
}

export interface RunningServer {
  /** `http://host:port` */
  url: string;
  port: number;
  metrics: ServerMetrics;
  /** RUNNING once returned; DRAINING while close() waits; STOPPED after. */
  readonly state: ServeState;
  /** Stops accepting, ends log streams, waits for requests in progress, closes the intake it opened. */
  close(): Promise<void>;
}

/** Refuses to start without a webhook secret: an unsigned webhook endpoint would build anything. */
export function requireWebhookSecret(config: Config): string {
  const secret = config.server.webhookSecret;
  if (!secret) {
    throw new ConfigError('serve needs a webhook secret to verify GitHub deliveries', [
      { path: 'server.webhookSecret', message: 'is required: set it in the config file or in OCI_BUILD_SERVER_WEBHOOK_SECRET' },
    ], { hint: 'Use the same secret as in the GitHub webhook settings (Settings → Webhooks → Secret).' });
  }
  return secret;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { config } = options;
  const secret = requireWebhookSecret(config);
  const logger = options.logger ?? createLogger({ name: 'oci-build-serve' });
  const ownsIntake = options.intake === undefined;
  const intake = options.intake ?? (await connectQueueIntake(config.nats, { logger, ...(options.probeIntervalMs !== undefined ? { probeIntervalMs: options.probeIntervalMs } : {}) }));
  const metrics = new ServerMetrics({ queueDepth: () => intake.queueDepth(), defaultMetrics: true });
  const control = options.control ?? (intake instanceof QueueIntake ? queueBuildControl(intake.ctx) : undefined);
  const app = new ServeApp({ config, secret, intake, ownsIntake, logger, metrics, settleRetryMs: options.settleRetryMs ?? 2000, watchRecords: options.watchRecords !== false, ...(options.notifier ? { notifier: options.notifier } : {}), ...(control ? { control } : {}) });

  if (config.server.apiTokens.length === 0) {
    logger.warn('no API token configured: the status API refuses every request (set OCI_BUILD_SERVER_API_TOKENS)');
  }
  await app.start(options.host ?? config.server.host, options.port ?? config.server.port);
  return {
    url: app.url,
    port: app.port,
    metrics,
    get state() {
      return app.state;
    },
    close: () => app.close(),
  };
}
