// What a failed fetch means: worth retrying (the network, a 5xx), or final (credentials, a
// repository or ref that does not exist, something that is not a Git server).

import { setTimeout as delay } from 'node:timers/promises';
import { CancelledError, isOciBuildError } from '../core/errors.js';

export type RemoteFailureKind = 'transient' | 'auth' | 'not-found' | 'protocol';

export interface RemoteFailure {
  kind: RemoteFailureKind;
  /** One line, credentials masked. */
  message: string;
  statusCode?: number;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EPIPE',
  'ESOCKETTIMEDOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

export function classifyRemoteError(err: unknown, mask: (text: string) => string): RemoteFailure {
  const e = err as { code?: string; message?: string; data?: { statusCode?: number; statusMessage?: string }; cause?: unknown };
  const message = mask(oneLine(e?.message ?? String(err)));
  if (e?.code === 'HttpError' && typeof e.data?.statusCode === 'number') {
    const statusCode = e.data.statusCode;
    const text = `HTTP ${statusCode}${e.data.statusMessage ? ` ${e.data.statusMessage}` : ''}`;
    if (statusCode === 401 || statusCode === 403) return { kind: 'auth', message: text, statusCode };
    if (statusCode === 404 || statusCode === 410) return { kind: 'not-found', message: text, statusCode };
    if (statusCode === 408 || statusCode === 429 || statusCode >= 500) return { kind: 'transient', message: text, statusCode };
    return { kind: 'protocol', message: text, statusCode };
  }
  if (e?.code === 'SmartHttpError' || e?.code === 'UnknownTransportError' || e?.code === 'UrlParseError') {
    return { kind: 'protocol', message };
  }
  const code = networkCode(err);
  if (code !== undefined) return { kind: 'transient', message: code === message ? code : `${code}: ${message.replace(`${code} `, '')}` };
  // A connection cut in the middle of a pack surfaces as a parse error of the truncated stream.
  if (/socket hang up|premature close|aborted|EmptyServerResponse|unexpected end|Unexpected end/i.test(message) || e?.code === 'EmptyServerResponseError') {
    return { kind: 'transient', message };
  }
  return { kind: 'protocol', message };
}

function networkCode(err: unknown): string | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 4 && current; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || code.startsWith('UND_ERR_'))) return code;
    const errors = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(errors) && errors.length > 0) current = errors[0];
    else current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function oneLine(text: string): string {
  return text.split('\n').find((line) => line.trim().length > 0)?.trim() ?? text;
}

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
  /** For tests: a source of randomness in [0, 1). */
  random?: () => number;
}

/**
 * The delay before retry number `attempt` (0-based): exponential, capped, with "equal jitter"
 * (half fixed, half random) so a fleet of workers does not hammer a recovering server in step.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy): number {
  const exponential = Math.min(policy.retryMaxDelayMs, policy.retryDelayMs * 2 ** attempt);
  const random = (policy.random ?? Math.random)();
  return Math.round(exponential / 2 + (exponential / 2) * random);
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the retries run out;
 * the last RemoteFailure is thrown as `{ failure, error }`.
 */
export async function retryTransient<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy,
  options: { signal?: AbortSignal; mask: (text: string) => string; onRetry?: (failure: RemoteFailure, delayMs: number, attempt: number) => void },
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (isOciBuildError(err)) throw err;
      if (options.signal?.aborted) throw cancellation(options.signal);
      const failure = classifyRemoteError(err, options.mask);
      if (failure.kind !== 'transient' || n >= policy.retries) throw new RemoteFetchFailure(failure, err);
      const wait = backoffDelay(n, policy);
      options.onRetry?.(failure, wait, n + 1);
      try {
        await delay(wait, undefined, options.signal ? { signal: options.signal } : undefined);
      } catch {
        throw cancellation(options.signal);
      }
    }
  }
}

/** The pipeline aborts with a typed reason (a timeout); anything else is a cancellation. */
function cancellation(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return isOciBuildError(reason) ? reason : new CancelledError('The fetch was cancelled');
}

/** A fetch that failed for good: carries the classification. Never leaves src/git. */
export class RemoteFetchFailure extends Error {
  constructor(
    readonly failure: RemoteFailure,
    readonly original: unknown,
  ) {
    super(failure.message);
  }
}
