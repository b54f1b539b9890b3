// `oci-build serve`: GitHub webhooks in, jobs onto JetStream, the status API out.
//
// Plain node:http, no framework: six routes do not need a router, and the webhook ingest path is
// benchmarked against a bare node:http receiver (bench/webhook-ingest.mjs), so every layer
// between the socket and the publish is overhead we would have to pay for.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import { ConfigError, InputError, ServiceUnavailableError, describeError, isOciBuildError } from '../core/errors.js';
import { newestFirst } from '../core/build-list.js';
import { initialRecord } from '../core/pipeline.js';
import type { BuildListFilter } from '../core/ports.js';
import type { BuildJob, BuildRecord, JobStatus } from '../core/types.js';
import { createTokenCheck, type AuthResult } from './api-auth.js';
import { compileBranchFilter } from './branch-filter.js';
import { parseHostList, type HostEntry } from '../core/hosts.js';
import { decideWebhook, parseWebhookBody } from './github-payload.js';
import { NOT_ACCEPTED, type JobIntake } from './job-intake.js';
import { accessLogger, createLogger, type Logger } from '../log/logger.js';
import { collectGarbage } from './garbage-collection.js';
import { ServerMetrics, type WebhookOutcome } from './metrics.js';
import { BodyAbortedError, BodyTooLargeError, InflightBudget, checkDeclaredLength, readBody } from './request-body.js';
import { connectQueueIntake } from './queue-intake.js';
import { StreamingSignatureCheck, parseSignatureHeader } from './webhook-signature.js';

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
}

export interface RunningServer {
  /** `http://host:port` */
  url: string;
  port: number;
  metrics: ServerMetrics;
  /** Stops accepting, ends log streams, waits for requests in progress, closes the intake it opened. */
  close(): Promise<void>;
}

const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const BUILD_ID_PATTERN = /^[A-Za-z0-9_=.-]{1,200}$/;
const MAX_LIST_LIMIT = 1000;
/** GitHub events named as such in the webhook metrics; any other is `other`. */
const METRIC_EVENTS = new Set(['push', 'ping', 'create', 'delete', 'pull_request', 'release', 'repository', 'status', 'check_run', 'check_suite', 'workflow_run', 'workflow_job', 'issues', 'issue_comment']);
const DEFAULT_LIST_LIMIT = 50;
/** How long /health (and the settle loop) waits for NATS to answer a round trip. */
const HEALTH_TIMEOUT_MS = 1500;
/** How long a 503 waits for its record's settle before answering (see enqueue). */
const SETTLE_WAIT_MS = 1000;
const SIGNATURE_HINT = 'Set the same secret in the GitHub webhook and in server.webhookSecret (OCI_BUILD_SERVER_WEBHOOK_SECRET).';

/** Per-request facts for the access log. */
interface RequestLog {
  route: string;
  fields: Record<string, unknown>;
  /** Called when the client hung up before its answer. */
  onAbort?: () => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
    readonly hint?: string,
  ) {
    super(message);
  }
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
  const app = new ServeApp({ config, secret, intake: intake, logger, metrics, settleRetryMs: options.settleRetryMs ?? 2000 });

  if (config.server.apiTokens.length === 0) {
    logger.warn('no API token configured: the status API refuses every request (set OCI_BUILD_SERVER_API_TOKENS)');
  }

  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => app.handle(req, res));
  // Webhook bodies are small and arrive at once; a client trickling a body is cut off.
  server.requestTimeout = 120_000;
  const host = options.host ?? config.server.host;
  const port = options.port ?? config.server.port;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    if (ownsIntake) await intake.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new ServiceUnavailableError(`serve cannot listen on ${host}:${port}: ${describeError(err)}`, {
      cause: err,
      hint: code === 'EADDRINUSE' ? 'Another process uses that port: pick another with --port or server.port (OCI_BUILD_SERVER_PORT).' : 'Check server.host and server.port.',
    });
  }
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${urlHost}:${address.port}`;
  logger.info({ url, stream: config.nats.stream, subject: config.nats.subject, bucket: config.nats.statusBucket }, 'serve listening');

  const background = new AbortController();
  if (options.watchRecords !== false) app.watchRecords(background.signal);

  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    metrics,
    close: () => {
      closing ??= (async () => {
        background.abort();
        app.abortStreams();
        await closeServer(server);
        app.stop();
        if (ownsIntake) await intake.close();
        logger.info('serve stopped');
      })();
      return closing;
    },
  };
}

async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const grace = setTimeout(() => server.closeAllConnections(), 10_000);
  grace.unref();
  await closed;
  clearTimeout(grace);
}

interface AppDeps {
  config: Config;
  secret: string;
  intake: JobIntake;
  logger: Logger;
  metrics: ServerMetrics;
  settleRetryMs: number;
}

/** The request handling of `serve`, separate from listening so tests can drive it on port 0. */
class ServeApp {
  private readonly checkToken: (authorization: string | undefined) => AuthResult;
  private readonly branchFilter: ReturnType<typeof compileBranchFilter>;
  /** server.allowedHosts, parsed once (config validation already refused bad entries). */
  private readonly allowedHosts: readonly HostEntry[];
  private readonly streams = new Set<AbortController>();
  /** Records of webhooks answered 503 whose settle (notAccepted) is not known to be stored yet. */
  private readonly unsettled = new Map<string, { failed: BuildRecord; revision?: number }>();
  private settleTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** server.maxInflightBytes: the body bytes held across every connection. */
  readonly budget: InflightBudget;
  /** The access log: same destination, cheaper redaction (see accessLogger). */
  private readonly accessLog: Logger;

  constructor(private readonly deps: AppDeps) {
    this.accessLog = accessLogger(deps.logger);
    // A burst over the budget leaves its chunks as garbage outside the V8 heap, which an idle serve
    // would never collect (garbage-collection.ts): collect when the burst ends.
    this.budget = new InflightBudget(deps.config.server.maxInflightBytes, () => setImmediate(collectGarbage));
    this.checkToken = createTokenCheck(deps.config.server.apiTokens);
    this.branchFilter = compileBranchFilter(deps.config.server.branches);
    this.allowedHosts = parseHostList(deps.config.server.allowedHosts);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const log: RequestLog = { route: 'not_found', fields: {} };
    const path = pathOf(req.url);
    res.once('close', () => {
      const durationMs = Math.round((performance.now() - started) * 100) / 100;
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
      return this.webhook(req, res, log);
    }
    if (path === '/health') {
      log.route = 'health';
      allow(method, ['GET', 'HEAD']);
      // A round trip, not the connection state: a stalled server keeps its socket open.
      const health = await this.deps.intake.probe(HEALTH_TIMEOUT_MS);
      const ok = health.nats === 'connected';
      return sendJson(res, ok ? 200 : 503, ok ? { status: 'ok', nats: health.nats } : { status: 'unavailable', nats: health.nats });
    }
    if (path === '/metrics') {
      log.route = 'metrics';
      allow(method, ['GET']);
      const { contentType, body } = await this.deps.metrics.render();
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const builds = /^\/builds(?:\/([^/]+)(\/logs)?)?\/?$/.exec(path);
    if (builds) {
      log.route = builds[2] ? 'build_logs' : builds[1] ? 'build' : 'builds';
      allow(method, ['GET']);
      this.authorize(req);
      const query = new URLSearchParams(req.url?.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');
      if (!builds[1]) return this.listBuilds(res, query);
      const id = decodeId(builds[1]);
      log.fields.jobId = id;
      if (builds[2]) return this.streamLogs(req, res, id, query);
      const record = await this.queue(() => this.deps.intake.get(id));
      if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
      return sendJson(res, 200, record);
    }
    throw new HttpError(404, `No route for ${method} ${path}`, 'E_NOT_FOUND');
  }

  // ---- POST /webhooks/github ----

  private async webhook(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<void> {
    const event = header(req, 'x-github-event');
    const delivery = header(req, 'x-github-delivery');
    // A bounded label set: the header arrives before the signature is checked, and an arbitrary
    // value per request would grow the metrics without limit.
    const eventLabel = event === undefined ? 'none' : METRIC_EVENTS.has(event) ? event : 'other';
    if (event) log.fields.event = event.slice(0, 64);
    if (delivery) log.fields.deliveryId = delivery.slice(0, 64);
    const outcome = (value: WebhookOutcome) => {
      log.fields.outcome = value;
      this.deps.metrics.webhooks.inc({ event: eventLabel, outcome: value });
    };
    // Counted once, whatever the webhook was waiting for when the client left (its body, NATS).
    log.onAbort = () => {
      if (log.fields.outcome === undefined) outcome('aborted');
    };
    // Refused before a byte of the body is read: a declared length over the limit, and a signature
    // header that cannot be right. The rest of such a body is not read: the connection is closed
    // rather than drained.
    const limit = this.deps.config.server.maxBodyBytes;
    const signatureHeader = req.headers['x-hub-signature-256'];
    try {
      checkDeclaredLength(req, limit);
    } catch (err) {
      if (!(err instanceof BodyTooLargeError)) throw err;
      outcome('too_large');
      throw new HttpError(413, err.message, err.code, { connection: 'close' }, err.hint);
    }
    const expected = parseSignatureHeader(signatureHeader);
    if (!expected) {
      outcome('unauthorized');
      throw new HttpError(
        401,
        signatureHeader === undefined ? 'The X-Hub-Signature-256 header is missing' : 'The X-Hub-Signature-256 header is not `sha256=` followed by 64 hex digits',
        'E_SIGNATURE',
        { connection: 'close' },
        SIGNATURE_HINT,
      );
    }
    // The HMAC is computed as the body streams in; the bytes are kept under the budget shared by
    // every connection (request-body.ts), so bodies that will fail the check cannot pile up.
    const check = new StreamingSignatureCheck(this.deps.secret, expected);
    let read;
    try {
      read = await readBody(req, { limit, budget: this.budget, onChunk: (chunk) => check.update(chunk) });
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        outcome('too_large');
        throw new HttpError(413, err.message, err.code, { connection: 'close' }, err.hint);
      }
      throw err;
    }
    if (!check.matches()) {
      outcome('unauthorized');
      throw new HttpError(401, 'The X-Hub-Signature-256 signature does not match the body', 'E_SIGNATURE', {}, SIGNATURE_HINT);
    }
    if (!read.body) {
      outcome('overloaded');
      throw new HttpError(
        503,
        'serve was holding too many webhook bodies; nothing was accepted',
        'E_OVERLOADED',
        { 'retry-after': '5' },
        'Bodies in flight on all connections went over server.maxInflightBytes (OCI_BUILD_SERVER_MAX_INFLIGHT_BYTES) and the largest were dropped; retry the delivery from GitHub (Recent Deliveries → Redeliver).',
      );
    }
    const body = read.body;
    let decision;
    try {
      const payload = parseWebhookBody(header(req, 'content-type'), body);
      decision = decideWebhook({ event, delivery }, payload, { image: this.imageOptions(), branchFilter: this.branchFilter, allowedHosts: this.allowedHosts });
    } catch (err) {
      if (err instanceof InputError) outcome('invalid');
      throw err;
    }
    if (decision.kind === 'ignored') {
      outcome('ignored');
      log.fields.ignored = decision.reason;
      return sendJson(res, 200, { ignored: decision.reason, detail: decision.detail });
    }
    const { job } = decision;
    log.fields.jobId = job.id;
    log.fields.repository = job.repository?.fullName;
    log.fields.commit = job.repository?.commit;
    log.fields.ref = job.repository?.ref;

    if (this.deps.intake.health().nats !== 'connected') {
      outcome('unavailable');
      throw unavailable();
    }
    // Replays build nothing: X-GitHub-Delivery is not signed, so a signed push body sent again
    // under a fresh delivery id would be a new job. The first job to claim the push (repository,
    // ref, before, after) keeps it; a redelivery has the same job id and passes. A claim is never
    // undone: after a 503 the same delivery passes again, and GitHub redelivers by delivery id.
    // The claim and the queued record are written together, in one round trip: awaited one after
    // the other they made three sequential NATS round trips per webhook, and serve's throughput
    // fell from 0.62 to 0.53 of the bare receiver's (bench webhook-ingest). Nothing is published
    // before both are in, so a record written for a push that another job holds is only removed.
    const record = initialRecord(job);
    const [claim, created] = await Promise.allSettled([this.deps.intake.claimPush(decision.pushKey, job.id), this.deps.intake.createQueued(record)]);
    if (claim.status === 'rejected') {
      outcome('unavailable');
      this.deps.logger.warn({ jobId: job.id, err: describeError(claim.reason) }, 'cannot claim the push');
      if (created.status === 'fulfilled' && created.value.created) await this.forget(record, created.value.revision);
      else if (created.status === 'rejected') this.settleLater(notAccepted(record, created.reason));
      throw unavailable(claim.reason);
    }
    if (!claim.value.claimed) {
      outcome('duplicate');
      log.fields.ignored = DUPLICATE_PUSH;
      log.fields.duplicateOf = claim.value.jobId;
      if (created.status === 'fulfilled' && created.value.created) await this.forget(record, created.value.revision);
      // A create whose answer was lost may land later: settled like any record of a 503.
      else if (created.status === 'rejected') this.settleLater(notAccepted(record, created.reason));
      return sendJson(res, 200, { ignored: DUPLICATE_PUSH, detail: duplicateDetail(job, claim.value.jobId) });
    }
    return this.enqueue(job, record, created, res, outcome);
  }

  /** Removes a queued record no job was published for (a replay's, a failed claim's); settles it if that fails. */
  private async forget(record: BuildRecord, revision: number | undefined): Promise<void> {
    try {
      await this.deps.intake.discard(record.id);
    } catch (err) {
      await this.settle(notAccepted(record, err), revision);
    }
  }

  private settleLater(failed: BuildRecord): void {
    this.unsettled.set(failed.id, { failed });
    this.scheduleSettle();
  }

  /**
   * The queued record, then the job. "503 means nothing was accepted" and "a 202 has its job and its
   * record" must hold when NATS stops answering in the middle, and a write whose acknowledgement
   * timed out may still be stored later (a SIGSTOPped nats-server reads what was sent once it runs
   * again). So:
   *  - the record is created first (acknowledged) and only then the job published: every message
   *    serve leaves in the stream has had its record before it;
   *  - a failed publish does not remove the record, it settles it: `failed` with NOT_ACCEPTED, a
   *    compare-and-set on the revision the create returned. A worker that gets the job (stored after
   *    all) finds a final record and acknowledges it without building (worker.ts, "already
   *    finished"). The settle is sent at once on the same connection, behind the publish, so the
   *    server reads it before any worker can have the job; if it does not answer within
   *    SETTLE_WAIT_MS the answer is 503 and the settle is retried (below). If the compare-and-set
   *    finds a worker's write, the job was stored and is being built: the answer is 202;
   *  - a failed create may be stored later too: it is settled the same way (a `failed` record where
   *    the key is still free or holds that attempt's `queued` record);
   *  - what could not be settled at once waits in `unsettled` (memory of this process: the cheapest
   *    design that covers what this serve answered; a serve killed mid-request leaves its record
   *    to the reconciliation of nobody, as before). Every settleRetryMs, when a round trip to NATS
   *    succeeds (after it, everything sent earlier on the connection has been read by the server),
   *    each is settled; once NATS answers again that takes one interval.
   *  - a redelivery of a webhook answered 503 finds the NOT_ACCEPTED record and revives it
   *    (compare-and-set back to `queued`), then publishes (publish's `revived`).
   */
  private async enqueue(
    job: BuildJob,
    record: BuildRecord,
    stored: PromiseSettledResult<{ created: boolean; record: BuildRecord; revision?: number }>,
    res: ServerResponse,
    outcome: (value: WebhookOutcome) => void,
  ): Promise<void> {
    if (stored.status === 'rejected') {
      outcome('unavailable');
      this.deps.logger.warn({ jobId: job.id, err: describeError(stored.reason) }, 'cannot store the queued record; settling it as not accepted');
      this.settleLater(notAccepted(record, stored.reason));
      throw unavailable(stored.reason);
    }
    let created = stored.value;
    let revived: number | undefined;
    if (!created.created && isNotAccepted(created.record) && created.revision !== undefined) {
      // A redelivery of a webhook that was answered 503: queue it now.
      let again: { revived: boolean; revision?: number };
      try {
        again = await this.deps.intake.reviveQueued(record, created.revision);
      } catch (err) {
        outcome('unavailable');
        this.settleLater(notAccepted(record, err));
        throw unavailable(err);
      }
      // Another redelivery revived it first: that one publishes and answers.
      if (!again.revived) {
        outcome('unavailable');
        throw unavailable();
      }
      revived = again.revision;
      created = { created: true, record, ...(again.revision !== undefined ? { revision: again.revision } : {}) };
    }
    if (!created.created && created.record.status !== 'queued') {
      // Redelivered after its build started or ended: nothing to publish.
      outcome('duplicate');
      return sendJson(res, 202, { jobId: job.id, status: created.record.status, duplicate: true });
    }
    try {
      // A redelivery of a still-queued job publishes again with the same Nats-Msg-Id: within the
      // stream's duplicate window JetStream drops it, and if the first publish never happened
      // (serve died in between) this one queues it.
      const published = await this.deps.intake.publish(job, revived !== undefined ? { revived } : {});
      const duplicate = published.duplicate || !created.created;
      outcome(duplicate ? 'duplicate' : 'queued');
      return sendJson(res, 202, { jobId: job.id, status: 'queued', ...(duplicate ? { duplicate: true } : {}) });
    } catch (err) {
      // A redelivery's publish failing leaves the record of the attempt that created it alone.
      if (created.created && (await this.settle(notAccepted(record, err), created.revision)) === 'taken') {
        // The publish was stored and a worker has the job: it was accepted after all.
        outcome('queued');
        this.deps.logger.warn({ jobId: job.id, err: describeError(err) }, 'publish unacknowledged, but a worker already took the job');
        return sendJson(res, 202, { jobId: job.id, status: 'queued' });
      }
      outcome('unavailable');
      this.deps.logger.warn({ jobId: job.id, err: describeError(err) }, 'publish failed; the record is settled as not accepted');
      throw unavailable(err);
    }
  }

  private imageOptions() {
    const image = this.deps.config.image;
    return { ...(image.registry ? { registry: image.registry } : {}), push: image.push, tlsVerify: image.tlsVerify, buildArgs: {} };
  }

  /** settleNotAccepted, waited for at most SETTLE_WAIT_MS; undecided: retried in the background. */
  private async settle(failed: BuildRecord, revision: number | undefined): Promise<'settled' | 'taken' | 'pending'> {
    const attempt = this.deps.intake.settleNotAccepted(failed, revision);
    let timer: NodeJS.Timeout | undefined;
    const wait = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), SETTLE_WAIT_MS)));
    const result = await Promise.race([attempt.catch(() => 'pending' as const), wait]);
    clearTimeout(timer);
    if (result === 'pending') {
      this.unsettled.set(failed.id, { failed, ...(revision !== undefined ? { revision } : {}) });
      this.scheduleSettle();
    }
    return result;
  }

  private scheduleSettle(): void {
    if (this.settleTimer || this.stopped) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      void this.settleLeftovers();
    }, this.deps.settleRetryMs);
    this.settleTimer.unref();
  }

  private async settleLeftovers(): Promise<void> {
    if ((await this.deps.intake.probe(HEALTH_TIMEOUT_MS)).nats === 'connected') {
      for (const [id, { failed, revision }] of [...this.unsettled]) {
        try {
          const result = await this.deps.intake.settleNotAccepted(failed, revision);
          this.unsettled.delete(id);
          if (result === 'taken' && revision !== undefined) {
            this.deps.logger.error({ jobId: id }, 'a webhook answered 503 was built: a worker took its job before the record was settled');
          } else {
            this.deps.logger.info({ jobId: id, result }, 'record of a webhook answered 503 settled');
          }
        } catch (err) {
          this.deps.logger.warn({ jobId: id, err: describeError(err) }, 'cannot settle the record yet; will retry');
          break;
        }
      }
    }
    if (this.unsettled.size > 0) this.scheduleSettle();
  }

  // ---- status API ----

  private authorize(req: IncomingMessage): void {
    const result = this.checkToken(header(req, 'authorization'));
    if (!result.ok) {
      throw new HttpError(result.status, result.message, result.status === 401 ? 'E_UNAUTHORIZED' : 'E_FORBIDDEN', result.wwwAuthenticate ? { 'www-authenticate': result.wwwAuthenticate } : {});
    }
  }

  private async listBuilds(res: ServerResponse, query: URLSearchParams): Promise<void> {
    const filter: BuildListFilter = { limit: DEFAULT_LIST_LIMIT };
    const limit = query.get('limit');
    if (limit !== null) {
      if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_LIST_LIMIT) {
        throw new HttpError(400, `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${JSON.stringify(limit.slice(0, 20))}`, 'E_INPUT');
      }
      filter.limit = Number(limit);
    }
    const status = query.get('status');
    if (status !== null) {
      if (!JOB_STATUSES.includes(status as JobStatus)) {
        throw new HttpError(400, `status must be one of ${JOB_STATUSES.join(', ')}`, 'E_INPUT');
      }
      filter.status = status as JobStatus;
    }
    const repo = query.get('repo');
    if (repo) filter.repo = repo;
    const branch = query.get('branch');
    if (branch) filter.branch = branch;
    const builds = await this.queue(() => this.deps.intake.list(filter));
    builds.sort(newestFirst);
    return sendJson(res, 200, { builds: builds.slice(0, filter.limit) });
  }

  private async streamLogs(req: IncomingMessage, res: ServerResponse, id: string, query: URLSearchParams): Promise<void> {
    const record = await this.queue(() => this.deps.intake.get(id));
    if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
    const follow = ['1', 'true', 'yes'].includes(query.get('follow') ?? '');
    const abort = new AbortController();
    this.streams.add(abort);
    const onClose = () => abort.abort();
    req.socket.once('close', onClose);
    res.once('close', onClose);
    try {
      let lines: AsyncIterator<string>;
      let first: IteratorResult<string>;
      try {
        lines = this.deps.intake.readLog(id, { follow, signal: abort.signal })[Symbol.asyncIterator]();
        first = await lines.next();
      } catch (err) {
        if (abort.signal.aborted) return;
        throw unavailable(err);
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      // Headers go out at once so a follower sees the stream open before the first line.
      res.flushHeaders();
      try {
        for (let next = first; !next.done; next = await lines.next()) {
          if (abort.signal.aborted) break;
          if (!res.write(`${next.value}\n`)) await waitDrain(res, abort.signal);
        }
      } catch (err) {
        if (!abort.signal.aborted) this.deps.logger.warn({ jobId: id, err: describeError(err) }, 'log stream ended with an error');
      } finally {
        await lines.return?.();
      }
      res.end();
    } finally {
      this.streams.delete(abort);
      req.socket.off('close', onClose);
    }
  }

  /** Runs a read of the status store; its failures are 503 (the store is NATS). */
  private async queue<T>(read: () => Promise<T>): Promise<T> {
    if (this.deps.intake.health().nats !== 'connected') throw unavailable();
    try {
      return await read();
    } catch (err) {
      throw unavailable(err);
    }
  }

  // ---- metrics feed ----

  watchRecords(signal: AbortSignal): void {
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
        if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000).unref());
      }
    })();
  }

  abortStreams(): void {
    for (const stream of this.streams) stream.abort();
  }

  stop(): void {
    this.stopped = true;
    if (this.settleTimer) clearTimeout(this.settleTimer);
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
}

/** The `ignored` answer of a push already accepted under another delivery id. */
const DUPLICATE_PUSH = 'duplicate push';

function duplicateDetail(job: BuildJob, holder: string): string {
  const repo = job.repository;
  const range = `${repo?.before?.slice(0, 7) ?? '?'}..${repo?.commit?.slice(0, 7) ?? '?'}`;
  return `${repo?.fullName ?? 'this repository'} ${repo?.ref ?? ''} ${range} was already accepted as build ${holder}; a replayed delivery builds nothing`;
}

/** The record of a webhook answered 503: final, so a worker that gets its job builds nothing. */
function notAccepted(record: BuildRecord, cause: unknown): BuildRecord {
  return {
    ...record,
    status: 'failed',
    finishedAt: new Date().toISOString(),
    error: {
      phase: 'queue',
      code: NOT_ACCEPTED,
      message: `Not accepted: the webhook was answered 503 because the build queue (NATS JetStream) did not answer (${describeError(cause)}); nothing was built. Redeliver it from GitHub (Recent Deliveries → Redeliver) to queue it again.`,
    },
  };
}

function isNotAccepted(record: BuildRecord): boolean {
  return record.status === 'failed' && record.error?.code === NOT_ACCEPTED;
}

function unavailable(cause?: unknown): HttpError {
  return new HttpError(
    503,
    'The build queue (NATS JetStream) is unavailable; nothing was accepted',
    'E_SERVICE_UNAVAILABLE',
    { 'retry-after': '5' },
    cause === undefined ? 'serve reconnects by itself; retry the delivery from GitHub (Recent Deliveries → Redeliver).' : describeError(cause),
  );
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) {
    throw new HttpError(405, `Method ${method} is not allowed here (allowed: ${methods.join(', ')})`, 'E_METHOD', { allow: methods.join(', ') });
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

function decodeId(segment: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'The build id is not valid URL encoding', 'E_INPUT');
  }
  if (!BUILD_ID_PATTERN.test(id)) throw new HttpError(400, `${JSON.stringify(id.slice(0, 80))} is not a build id`, 'E_INPUT');
  return id;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function waitDrain(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
