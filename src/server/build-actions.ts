// What a person does to builds through serve, apart from reading them: POST /builds/:id/cancel and
// POST /builds/:id/rebuild (a bearer token always, whatever server.publicRead says), and
// GET /workers (a read: open with server.publicRead).
//
// Cancel (see queue/cancel-requests.ts for why a request key): the request is stored first, so the
// worker that runs the build, or starts it in the next moment, cancels it; a queued record is also
// set to `cancelled` by compare-and-set and its log ended, so a worker that gets the job later
// acknowledges it without building, and a follower of its log stops.
// Rebuild: the job of rebuild-job.ts, through the same enqueue protocol as a webhook (enqueue.ts):
// its record and job are in NATS before the 202, and a 503 means nothing was accepted.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/config.js';
import { cancelMessage, cancelledByToken, cleanCancelReason, type CancelRequest } from '../core/cancel-request.js';
import { describeError } from '../core/errors.js';
import { parseHostList, type HostEntry } from '../core/hosts.js';
import type { CommitStatusNotifier } from '../core/ports.js';
import { isFinalStatus, type BuildJob, type BuildRecord } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import type { AuthResult } from './api-auth.js';
import type { JobEnqueuer } from './enqueue.js';
import { HttpError, allow, header, sendJson, unavailable, type RequestLog } from './http-response.js';
import type { JobIntake } from './job-intake.js';
import { BodyTooLargeError, readBody } from './request-body.js';
import { decideRebuild } from './rebuild-job.js';
import { decodeId } from './status-routes.js';

/** A cancel request's body: `{"reason": "…"}` at most. */
const MAX_ACTION_BODY_BYTES = 4096;
const MAX_IDEMPOTENCY_KEY = 200;

/** A live worker as GET /workers answers it (queue/workers.ts WorkerInfo). */
export interface WorkerView {
  name: string;
  id: string;
  concurrency: number;
  state?: string;
  running: Array<{ jobId: string; repository: string; branch?: string; startedAt: string }>;
}

/** What the routes need of NATS beyond the JobIntake; queue-build-control.ts implements it. */
export interface BuildControl {
  /** Stores the request the worker running the build acts on. */
  requestCancel(request: CancelRequest): Promise<void>;
  /** `queued` → `cancelled` by compare-and-set; otherwise the record as it is now. */
  cancelQueued(request: CancelRequest): Promise<{ cancelled: boolean; record: BuildRecord | undefined }>;
  /** Ends the log of a build cancelled before it started, with one line saying so. */
  endLog(id: string, line: string): Promise<void>;
  listWorkers(): Promise<WorkerView[]>;
}

export interface BuildActionDeps {
  config: Config;
  intake: JobIntake;
  enqueuer: JobEnqueuer;
  /** Undefined: serve runs on an intake without these (a test's): the routes answer 501. */
  control: BuildControl | undefined;
  checkToken: (authorization: string | undefined) => AuthResult;
  logger: Logger;
  /** Commit statuses: a rebuild's `pending`, as a webhook's (src/notify); none: no statuses. */
  notifier?: CommitStatusNotifier;
}

export class BuildActionRoutes {
  private readonly allowedHosts: HostEntry[];

  constructor(private readonly deps: BuildActionDeps) {
    this.allowedHosts = parseHostList(deps.config.server.allowedHosts);
  }

  /** Answers the request if `path` is one of these routes; false when it is not. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): Promise<boolean> {
    const method = req.method ?? 'GET';
    if (path === '/workers' || path === '/workers/') {
      log.route = 'workers';
      allow(method, ['GET']);
      if (!this.deps.config.server.publicRead) this.authorize(req);
      const workers = await this.withNats(() => this.control().listWorkers());
      sendJson(res, 200, { workers }, { 'cache-control': 'no-store' });
      return true;
    }
    const action = /^\/builds\/([^/]+)\/(cancel|rebuild)\/?$/.exec(path);
    if (!action) return false;
    log.route = action[2] === 'cancel' ? 'build_cancel' : 'build_rebuild';
    allow(method, ['POST']);
    const position = this.authorize(req);
    const id = decodeId(action[1]!);
    log.fields.jobId = id;
    if (action[2] === 'cancel') await this.cancel(req, res, id, position, log);
    else await this.rebuild(req, res, id, log);
    return true;
  }

  private async cancel(req: IncomingMessage, res: ServerResponse, id: string, position: number, log: RequestLog): Promise<void> {
    const reason = cleanCancelReason((await readJsonBody(req)).reason);
    const control = this.control();
    const record = await this.withNats(() => this.deps.intake.get(id));
    if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
    if (isFinalStatus(record.status)) throw alreadyEnded(record);
    const request: CancelRequest = { id, by: cancelledByToken(position), ...(reason ? { reason } : {}), requestedAt: new Date().toISOString() };
    log.fields.cancelledBy = request.by;
    await this.withNats(() => control.requestCancel(request));
    if (record.status === 'queued') {
      const result = await this.withNats(() => control.cancelQueued(request));
      if (result.cancelled) {
        await control.endLog(id, `==> ${cancelMessage(request)}, before it started`).catch((err: unknown) =>
          this.deps.logger.warn({ jobId: id, err: describeError(err) }, 'could not end the log of a cancelled build'),
        );
        return sendJson(res, 200, { jobId: id, status: 'cancelled', cancelledBy: request.by });
      }
      // It ended meanwhile; or a worker took it, and the request cancels it there.
      if (result.record && isFinalStatus(result.record.status)) throw alreadyEnded(result.record);
    }
    sendJson(res, 202, { jobId: id, status: 'cancelling', cancelledBy: request.by });
  }

  private async rebuild(req: IncomingMessage, res: ServerResponse, id: string, log: RequestLog): Promise<void> {
    await readJsonBody(req);
    const key = header(req, 'idempotency-key');
    if (key !== undefined && (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY)) {
      throw new HttpError(400, `Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY} characters`, 'E_INPUT');
    }
    const record = await this.withNats(() => this.deps.intake.get(id));
    if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
    const image = this.deps.config.image;
    const decision = decideRebuild(record, {
      image: { ...(image.registry ? { registry: image.registry } : {}), push: image.push, tlsVerify: image.tlsVerify, buildArgs: {} },
      allowedHosts: this.allowedHosts,
      ...(key !== undefined ? { idempotencyKey: key } : {}),
    });
    if (decision.kind === 'refused') throw new HttpError(409, decision.reason, 'E_NOT_REBUILDABLE');
    const { job } = decision;
    log.fields.rebuildId = job.id;
    const result = await this.deps.enqueuer.enqueue(job, decision.pushKey);
    switch (result.kind) {
      case 'queued':
        sendJson(res, 202, { jobId: job.id, status: 'queued', rebuildOf: id, ...(result.duplicate ? { duplicate: true } : {}) });
        if (!result.duplicate) this.notifyQueued(job);
        return;
      case 'known':
        return sendJson(res, 202, { jobId: job.id, status: result.status, rebuildOf: id, duplicate: true });
      case 'replay':
        // A claim key of its own: only another rebuild with the same id could hold it.
        return sendJson(res, 202, { jobId: result.holder, status: 'queued', rebuildOf: id, duplicate: true });
      case 'not-accepted':
        throw unavailable(result.cause);
    }
  }

  /** The `queued` status once the answer is out, dropped if a worker has the job by then (as webhook-route.ts does). */
  private notifyQueued(job: BuildJob): void {
    const { notifier, intake } = this.deps;
    if (!notifier) return;
    setImmediate(() => notifier.queued(job, { stillQueued: async () => (await intake.get(job.id))?.status === 'queued' }));
  }

  /** Throws 401/403 unless the request carries a token of server.apiTokens; its position (from 1). */
  private authorize(req: IncomingMessage): number {
    const result = this.deps.checkToken(header(req, 'authorization'));
    if (!result.ok) {
      throw new HttpError(result.status, result.message, result.status === 401 ? 'E_UNAUTHORIZED' : 'E_FORBIDDEN', result.wwwAuthenticate ? { 'www-authenticate': result.wwwAuthenticate } : {});
    }
    return result.position;
  }

  private control(): BuildControl {
    if (!this.deps.control) throw new HttpError(501, 'This serve cannot cancel builds or list workers (no NATS control)', 'E_NOT_IMPLEMENTED');
    return this.deps.control;
  }

  /** A NATS operation; its failures are 503 (nothing was done, or it can be asked again). */
  private async withNats<T>(operation: () => Promise<T>): Promise<T> {
    if (this.deps.intake.health().nats !== 'connected') throw unavailable();
    try {
      return await operation();
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unavailable(err);
    }
  }
}

function alreadyEnded(record: BuildRecord): HttpError {
  return new HttpError(409, `Build ${record.id} has already ended (${record.status}): there is nothing to cancel`, 'E_ALREADY_FINISHED', {}, 'Rebuild it with POST /builds/:id/rebuild (oci-build rebuild ID) to run it again.');
}

/** An action's optional JSON body (empty, or an object), at most MAX_ACTION_BODY_BYTES. */
async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  let body: Buffer | undefined;
  try {
    ({ body } = await readBody(req, { limit: MAX_ACTION_BODY_BYTES }));
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new HttpError(413, `The request body is over ${MAX_ACTION_BODY_BYTES} bytes`, 'E_BODY_TOO_LARGE');
    throw err;
  }
  if (!body || body.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'The request body is not JSON (send {"reason": "…"} or nothing)', 'E_INPUT');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'The request body must be a JSON object', 'E_INPUT');
  return value as Record<string, unknown>;
}
