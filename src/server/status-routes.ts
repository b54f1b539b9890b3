// The status routes of `serve`, apart from the webhook: GET /builds, /builds/:id, /builds/:id/logs
// (bearer token), /health and /metrics (open). Reads of the status store only; nothing here writes.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/config.js';
import { describeError } from '../core/errors.js';
import { BUILD_ID_PATTERN } from '../core/build-id.js';
import { newestFirst } from '../core/build-list.js';
import type { BuildListFilter } from '../core/ports.js';
import { JOB_STATUSES, type JobStatus } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import { createTokenCheck, type AuthResult } from './api-auth.js';
import { HttpError, allow, header, sendJson, unavailable, type RequestLog } from './http-response.js';
import type { JobIntake } from './job-intake.js';
import { MAX_TAIL_BYTES, keepTail, type LogTail } from './log-tail.js';
import type { ServerMetrics } from './metrics.js';

const MAX_LIST_LIMIT = 1000;
const DEFAULT_LIST_LIMIT = 50;
/** How long /health waits for NATS to answer a round trip. */
const HEALTH_TIMEOUT_MS = 1500;

export interface StatusRoutesDeps {
  config: Config;
  intake: JobIntake;
  metrics: ServerMetrics;
  logger: Logger;
}

export class StatusRoutes {
  private readonly checkToken: (authorization: string | undefined) => AuthResult;
  private readonly streams = new Set<AbortController>();

  constructor(private readonly deps: StatusRoutesDeps) {
    this.checkToken = createTokenCheck(deps.config.server.apiTokens);
  }

  /** Answers the request if `path` is one of these routes; false when it is not. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): Promise<boolean> {
    const method = req.method ?? 'GET';
    if (path === '/health') {
      log.route = 'health';
      allow(method, ['GET', 'HEAD']);
      // A round trip, not the connection state: a stalled server keeps its socket open.
      const health = await this.deps.intake.probe(HEALTH_TIMEOUT_MS);
      const ok = health.nats === 'connected';
      sendJson(res, ok ? 200 : 503, ok ? { status: 'ok', nats: health.nats } : { status: 'unavailable', nats: health.nats });
      return true;
    }
    if (path === '/metrics') {
      log.route = 'metrics';
      allow(method, ['GET']);
      const { contentType, body } = await this.deps.metrics.render();
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return true;
    }
    const builds = /^\/builds(?:\/([^/]+)(\/logs)?)?\/?$/.exec(path);
    if (!builds) return false;
    log.route = builds[2] ? 'build_logs' : builds[1] ? 'build' : 'builds';
    allow(method, ['GET']);
    // server.publicRead: the reads answer without a token (cancel and rebuild never do: build-actions.ts).
    if (!this.deps.config.server.publicRead) this.authorize(req);
    const query = new URLSearchParams(req.url?.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');
    if (!builds[1]) {
      await this.listBuilds(res, query);
      return true;
    }
    const id = decodeId(builds[1]);
    log.fields.jobId = id;
    if (builds[2]) {
      await this.streamLogs(req, res, id, query);
      return true;
    }
    const record = await this.read(() => this.deps.intake.get(id));
    if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
    sendJson(res, 200, record);
    return true;
  }

  /** Ends every log stream (serve is draining: a follower would keep its request open for good). */
  abortStreams(): void {
    for (const stream of this.streams) stream.abort();
  }

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
    const builds = await this.read(() => this.deps.intake.list(filter));
    builds.sort(newestFirst);
    sendJson(res, 200, { builds: builds.slice(0, filter.limit) });
  }

  private async streamLogs(req: IncomingMessage, res: ServerResponse, id: string, query: URLSearchParams): Promise<void> {
    const record = await this.read(() => this.deps.intake.get(id));
    if (!record) throw new HttpError(404, `No build with id ${id}`, 'E_NOT_FOUND');
    const follow = ['1', 'true', 'yes'].includes(query.get('follow') ?? '');
    const tail = tailBytes(query, follow);
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
      if (tail !== undefined) {
        let kept: LogTail;
        try {
          kept = await keepTail(lines, first, tail);
        } catch (err) {
          if (abort.signal.aborted) return;
          throw unavailable(err);
        } finally {
          await lines.return?.();
        }
        const text = kept.lines.map((line) => `${line}\n`).join('');
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'x-log-skipped-bytes': String(kept.skippedBytes), 'x-log-skipped-lines': String(kept.skippedLines), 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
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
  private async read<T>(read: () => Promise<T>): Promise<T> {
    if (this.deps.intake.health().nats !== 'connected') throw unavailable();
    try {
      return await read();
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/** The :id segment: URL-decoded, then the one build-id grammar (core/build-id.ts), else 400. */
export function decodeId(segment: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'The build id is not valid URL encoding', 'E_INPUT');
  }
  if (!BUILD_ID_PATTERN.test(id)) throw new HttpError(400, `${JSON.stringify(id.slice(0, 80))} is not a build id`, 'E_INPUT');
  return id;
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

/** `?tail=BYTES` (only the end of the log; not with follow), else undefined. */
function tailBytes(query: URLSearchParams, follow: boolean): number | undefined {
  const tail = query.get('tail');
  if (tail === null) return undefined;
  if (!/^\d+$/.test(tail) || Number(tail) < 1 || Number(tail) > MAX_TAIL_BYTES) {
    throw new HttpError(400, `tail must be a number of bytes from 1 to ${MAX_TAIL_BYTES}, got ${JSON.stringify(tail.slice(0, 20))}`, 'E_INPUT');
  }
  if (follow) throw new HttpError(400, 'tail and follow cannot be combined: a followed log is sent from its start', 'E_INPUT');
  return Number(tail);
}
