// POST /webhooks/github: the size and signature checks, the body, the decision (decideWebhook),
// then the job handed to the enqueue protocol (enqueue.ts) and its result answered.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/config.js';
import { InputError } from '../core/errors.js';
import { parseHostList, type HostEntry } from '../core/hosts.js';
import type { CommitStatusNotifier } from '../core/ports.js';
import type { BuildJob } from '../core/types.js';
import { compileBranchFilter } from './branch-filter.js';
import type { EnqueueResult, JobEnqueuer } from './enqueue.js';
import { decideWebhook, parseWebhookBody } from './github-payload.js';
import { HttpError, header, sendJson, unavailable, type RequestLog } from './http-response.js';
import type { JobIntake } from './job-intake.js';
import type { ServerMetrics, WebhookOutcome } from './metrics.js';
import { BodyTooLargeError, checkDeclaredLength, readBody, type InflightBudget } from './request-body.js';
import { StreamingSignatureCheck, parseSignatureHeader } from './webhook-signature.js';

/** GitHub events named as such in the webhook metrics; any other is `other`. */
const METRIC_EVENTS = new Set(['push', 'ping', 'create', 'delete', 'pull_request', 'release', 'repository', 'status', 'check_run', 'check_suite', 'workflow_run', 'workflow_job', 'issues', 'issue_comment']);
const SIGNATURE_HINT = 'Set the same secret in the GitHub webhook and in server.webhookSecret (OCI_BUILD_SERVER_WEBHOOK_SECRET).';
/** The `ignored` answer of a push already accepted under another delivery id. */
const DUPLICATE_PUSH = 'duplicate push';

export interface WebhookRouteDeps {
  config: Config;
  secret: string;
  enqueuer: JobEnqueuer;
  metrics: ServerMetrics;
  /** server.maxInflightBytes: the body bytes held across every connection. */
  budget: InflightBudget;
  /** Told of each job accepted, after its 202 (the `queued` commit status); `intake` says whether it still is. */
  notifier?: CommitStatusNotifier;
  intake?: Pick<JobIntake, 'get'>;
}

export class WebhookRoute {
  private readonly branchFilter: ReturnType<typeof compileBranchFilter>;
  /** server.allowedHosts, parsed once (config validation already refused bad entries). */
  private readonly allowedHosts: readonly HostEntry[];

  constructor(private readonly deps: WebhookRouteDeps) {
    this.branchFilter = compileBranchFilter(deps.config.server.branches);
    this.allowedHosts = parseHostList(deps.config.server.allowedHosts);
  }

  async handle(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<void> {
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
      read = await readBody(req, { limit, budget: this.deps.budget, onChunk: (chunk) => check.update(chunk) });
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
    let decision;
    try {
      const payload = parseWebhookBody(header(req, 'content-type'), read.body);
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

    const result = await this.deps.enqueuer.enqueue(job, decision.pushKey, (decided) => {
      outcome(outcomeOf(decided));
      if (decided.kind === 'replay') {
        log.fields.ignored = DUPLICATE_PUSH;
        log.fields.duplicateOf = decided.holder;
      }
    });
    switch (result.kind) {
      case 'queued':
        sendJson(res, 202, { jobId: job.id, status: 'queued', ...(result.duplicate ? { duplicate: true } : {}) });
        if (!result.duplicate) this.notifyQueued(job);
        return;
      case 'known':
        return sendJson(res, 202, { jobId: job.id, status: result.status, duplicate: true });
      case 'replay':
        return sendJson(res, 200, { ignored: DUPLICATE_PUSH, detail: duplicateDetail(job, result.holder) });
      case 'not-accepted':
        throw unavailable(result.cause);
    }
  }

  /** The `queued` status, once the answer is out; dropped if a worker has the job by then. */
  private notifyQueued(job: BuildJob): void {
    const { notifier, intake } = this.deps;
    if (!notifier) return;
    setImmediate(() => notifier.queued(job, intake ? { stillQueued: async () => (await intake.get(job.id))?.status === 'queued' } : {}));
  }

  private imageOptions() {
    const image = this.deps.config.image;
    return { ...(image.registry ? { registry: image.registry } : {}), push: image.push, tlsVerify: image.tlsVerify, buildArgs: {} };
  }
}

function outcomeOf(result: EnqueueResult): WebhookOutcome {
  switch (result.kind) {
    case 'queued':
      return result.duplicate ? 'duplicate' : 'queued';
    case 'known':
    case 'replay':
      return 'duplicate';
    case 'not-accepted':
      return 'unavailable';
  }
}

function duplicateDetail(job: BuildJob, holder: string): string {
  const repo = job.repository;
  const range = `${repo?.before?.slice(0, 7) ?? '?'}..${repo?.commit?.slice(0, 7) ?? '?'}`;
  return `${repo?.fullName ?? 'this repository'} ${repo?.ref ?? ''} ${range} was already accepted as build ${holder}; a replayed delivery builds nothing`;
}
