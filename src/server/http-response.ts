// What every route of `serve` answers with: an HttpError the request handler turns into a JSON
// answer (status, code, hint), and the few node:http helpers the routes share.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeError } from '../core/errors.js';

/** Per-request facts for the access log. */
export interface RequestLog {
  route: string;
  fields: Record<string, unknown>;
  /** Called when the client hung up before its answer. */
  onAbort?: () => void;
}

export class HttpError extends Error {
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

/** The 503 of a queue or store that did not answer: nothing was accepted. */
export function unavailable(cause?: unknown): HttpError {
  return new HttpError(
    503,
    'The build queue (NATS JetStream) is unavailable; nothing was accepted',
    'E_SERVICE_UNAVAILABLE',
    { 'retry-after': '5' },
    cause === undefined ? 'serve reconnects by itself; retry the delivery from GitHub (Recent Deliveries → Redeliver).' : describeError(cause),
  );
}

export function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) {
    throw new HttpError(405, `Method ${method} is not allowed here (allowed: ${methods.join(', ')})`, 'E_METHOD', { allow: methods.join(', ') });
  }
}

export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q === -1 ? raw : raw.slice(0, q);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
