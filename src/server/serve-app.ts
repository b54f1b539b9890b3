// `serve` as a state machine, like the worker: INITIALIZED → RUNNING → DRAINING → STOPPED.
//   INITIALIZED  routes built, nothing listening.
//   RUNNING      listening; the status watch feeds the metrics; unsettled records are retried.
//   DRAINING     close(): no new connections, log streams ended, requests in progress answered
//                (keep-alive sockets closed once idle, every socket after CLOSE_GRACE_MS).
//   STOPPED      the settle loop ended, the intake serve opened closed; close() resolves.
// A listen that fails goes from INITIALIZED straight to STOPPED (start() throws). Each change is
// logged as `serve <state>` with `from` and `to`, as the worker logs its own.
//
// Plain node:http, no framework: six routes do not need a router, and the webhook ingest path is
// benchmarked against a bare node:http receiver (bench/webhook-ingest.mjs), so every layer
// between the socket and the publish is overhead we would have to pay for.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monotonicMs } from '../core/elapsed.js';
import type { Config } from '../config/config.js';
import { InputError, ServiceUnavailableError, describeError, isOciBuildError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { accessLogger, type Logger } from '../log/logger.js';
import { createTokenCheck } from './api-auth.js';
import { BuildActionRoutes, type BuildControl } from './build-actions.js';
import { serveDashboard } from './dashboard-route.js';
import type { CommitStatusNotifier } from '../core/ports.js';
import { BadgeRoute } from './badge-route.js';
import { JobEnqueuer } from './enqueue.js';
import { collectGarbage } from './garbage-collection.js';
import { HttpError, allow, pathOf, sendJson, type RequestLog } from './http-response.js';
import type { JobIntake } from './job-intake.js';
import type { ServerMetrics } from './metrics.js';
import { BodyAbortedError, InflightBudget } from './request-body.js';
import { StatusRoutes } from './status-routes.js';
import { WebhookRoute } from './webhook-route.js';

export type ServeState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

/** How long DRAINING waits for requests in progress before it closes their sockets. */
const CLOSE_GRACE_MS = 10_000;
/** The wait before the status watch starts again after it failed. */
const WATCH_RESTART_MS = 1000;

export interface ServeAppDeps {
  config: Config;
  secret: string;
  intake: JobIntake;
  /** Closed when serve stops: the intake serve connected itself (not one a test handed in). */
  ownsIntake: boolean;
  logger: Logger;
  metrics: ServerMetrics;
  settleRetryMs: number;
  /** Start the status watch that feeds the metrics. */
  watchRecords: boolean;
  /** Commit statuses: `pending` for each job accepted (src/notify); none: no statuses. */
  notifier?: CommitStatusNotifier;
  /** Cancel requests and the workers' list (build-actions.ts); none: those routes answer 501. */
  control?: BuildControl;
}

export class ServeApp {
  private _state: ServeState = 'INITIALIZED';
  private readonly server: Server;
  private readonly enqueuer: JobEnqueuer;
  private readonly webhook: WebhookRoute;
  private readonly status: StatusRoutes;
  private readonly badge: BadgeRoute;
  private readonly actions: BuildActionRoutes;
  /** The access log: same destination, cheaper redaction (see accessLogger). */
  private readonly accessLog: Logger;
  private readonly background = new AbortController();
  private closing: Promise<void> | undefined;
  /** `http://host:port` once RUNNING. */
  url = '';
  port = 0;

  constructor(private readonly deps: ServeAppDeps) {
    this.accessLog = accessLogger(deps.logger);
    // A burst over the budget leaves its chunks as garbage outside the V8 heap, which an idle serve
    // would never collect (garbage-collection.ts): collect when the burst ends.
    const budget = new InflightBudget(deps.config.server.maxInflightBytes, () => setImmediate(collectGarbage));
    this.enqueuer = new JobEnqueuer({ intake: deps.intake, logger: deps.logger, settleRetryMs: deps.settleRetryMs, queueWaitMs: deps.config.server.queueWaitMs });
    this.webhook = new WebhookRoute({ config: deps.config, secret: deps.secret, enqueuer: this.enqueuer, metrics: deps.metrics, budget, ...(deps.notifier ? { notifier: deps.notifier, intake: deps.intake } : {}) });
    this.badge = new BadgeRoute({ config: deps.config, intake: deps.intake });
    this.status = new StatusRoutes({ config: deps.config, intake: deps.intake, metrics: deps.metrics, logger: deps.logger });
    this.actions = new BuildActionRoutes({ config: deps.config, intake: deps.intake, enqueuer: this.enqueuer, control: deps.control, checkToken: createTokenCheck(deps.config.server.apiTokens), logger: deps.logger, ...(deps.notifier ? { notifier: deps.notifier } : {}) });
    this.server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.handle(req, res));
    // Webhook bodies are small and arrive at once; a client trickling a body is cut off.
    this.server.requestTimeout = 120_000;
  }

  get state(): ServeState {
    return this._state;
  }

  private setState(next: ServeState, fields: Record<string, unknown> = {}): void {
    this.deps.logger.info({ from: this._state, to: next, ...fields }, `serve ${next.toLowerCase()}`);
    this._state = next;
  }

  /** INITIALIZED → RUNNING: listens on host:port (0: any free port). */
  async start(host: string, port: number): Promise<void> {
    if (this._state !== 'INITIALIZED') throw new Error(`ServeApp.start() in state ${this._state}`);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(port, host, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this._state = 'STOPPED';
      if (this.deps.ownsIntake) await this.deps.intake.close();
      const code = (err as NodeJS.ErrnoException).code;
      throw new ServiceUnavailableError(`serve cannot listen on ${host}:${port}: ${describeError(err)}`, {
        cause: err,
        hint: code === 'EADDRINUSE' ? 'Another process uses that port: pick another with --port or server.port (OCI_BUILD_SERVER_PORT).' : 'Check server.host and server.port.',
      });
    }
    const address = this.server.address() as AddressInfo;
    const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.url = `http://${urlHost}:${address.port}`;
    this.port = address.port;
    const { nats } = this.deps.config;
    this.setState('RUNNING', { url: this.url, stream: nats.stream, subject: nats.subject, bucket: nats.statusBucket });
    if (this.deps.watchRecords) this.watchRecords(this.background.signal);
  }

  /** → DRAINING → STOPPED; every call returns the same promise. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this._state === 'INITIALIZED') {
        this.setState('STOPPED');
        if (this.deps.ownsIntake) await this.deps.intake.close();
        return;
      }
      if (this._state === 'STOPPED') return;
      this.setState('DRAINING');
      this.background.abort();
      this.status.abortStreams();
      await closeServer(this.server);
      this.enqueuer.stop();
      if (this.deps.ownsIntake) await this.deps.intake.close();
      this.setState('STOPPED');
    })();
    return this.closing;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = monotonicMs();
    const log: RequestLog = { route: 'not_found', fields: {} };
    const path = pathOf(req.url);
    res.once('close', () => {
      // Draining: the keep-alive socket of an answered request would hold close() for the grace.
      if (this._state === 'DRAINING') setImmediate(() => this.server.closeIdleConnections());
      const durationMs = Math.round((monotonicMs() - started) * 100) / 100;
      if (!res.writableFinished) {
        log.onAbort?.();
        // The client hung up before its answer was sent: no status was given (statusCode would
        // say 200, or whatever writeHead set just before the write failed), and no error of ours.
        this.deps.metrics.requests.observe({ method: req.method ?? '', route: log.route, status: 'aborted' }, durationMs / 1000);
        const { error: _error, ...fields } = log.fields;
        this.accessLog.info({ method: req.method, path, aborted: true, durationMs, ...fields }, 'request');
        return;
      }
      const status = res.statusCode;
      this.deps.metrics.requests.observe({ method: req.method ?? '', route: log.route, status: String(status) }, durationMs / 1000);
      const line = { method: req.method, path, status, durationMs, ...log.fields };
      if (status >= 500) this.accessLog.warn(line, 'request');
      else this.accessLog.info(line, 'request');
    });
    this.route(req, res, path, log).catch((err: unknown) => this.fail(res, err, log));
  }

  private async route(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): Promise<void> {
    const method = req.method ?? 'GET';
    if (path === '/webhooks/github') {
      log.route = 'webhook';
      allow(method, ['POST']);
      return this.webhook.handle(req, res, log);
    }
    if (await this.actions.handle(req, res, path, log)) return;
    if (await this.status.handle(req, res, path, log)) return;
    if (await this.badge.handle(req, res, path, log)) return;
    if (serveDashboard(req, res, path, log)) return;
    throw new HttpError(404, `No route for ${method} ${path}`, 'E_NOT_FOUND');
  }

  private fail(res: ServerResponse, err: unknown, log: RequestLog): void {
    if (err instanceof BodyAbortedError || res.destroyed) {
      // Nobody to answer: the access log records the abort.
      res.destroy();
      return;
    }
    let status = 500;
    let body: Record<string, unknown>;
    let headers: Record<string, string> = {};
    if (err instanceof HttpError) {
      status = err.status;
      headers = err.headers;
      body = { error: err.message, code: err.code, ...(err.hint ? { hint: err.hint } : {}) };
    } else if (err instanceof InputError) {
      status = 400;
      body = { error: err.message, code: err.code, ...(err.hint ? { hint: err.hint } : {}) };
    } else {
      this.deps.logger.error({ err: describeError(err), ...log.fields }, 'request failed');
      body = { error: 'Internal error', code: isOciBuildError(err) ? err.code : 'E_INTERNAL' };
    }
    if (status >= 400) log.fields.error = body.error;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, body, headers);
  }

  /** The metrics feed: every record change of the status store, while RUNNING. */
  private watchRecords(signal: AbortSignal): void {
    const watch = this.deps.intake.watchRecords;
    if (!watch) return;
    void (async () => {
      // The watch restarts after an error (NATS down for longer than the client's reconnect).
      while (!signal.aborted) {
        try {
          for await (const change of watch.call(this.deps.intake, signal)) this.deps.metrics.observeRecord(change);
        } catch (err) {
          if (!signal.aborted) this.deps.logger.warn({ err: describeError(err) }, 'status watch failed; retrying');
        }
        await sleep(WATCH_RESTART_MS, signal, { unref: true });
      }
    })();
  }
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const grace = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
  grace.unref();
  await closed;
  clearTimeout(grace);
}
