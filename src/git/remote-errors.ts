// What a failed fetch means: worth retrying (the network, a 5xx), or final (credentials, a
// repository or ref that does not exist, something that is not a Git server).

import { isOciBuildError } from '../core/errors.js';
import { retry, type BackoffPolicy } from '../core/retry.js';
import { IncompleteFetchError } from './mirror.js';
import { PackFormatError } from './pack-objects.js';

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
  // A connection cut in the middle of a pack surfaces as a pack that does not parse (truncated or
  // damaged in transit), or as refs naming objects that never arrived: by kind, whatever the text.
  if (err instanceof PackFormatError || err instanceof IncompleteFetchError || e?.code === 'EmptyServerResponseError') {
    return { kind: 'transient', message };
  }
  // Node's HTTP client can end a request with a bare Error that has no code, only this text.
  if (/socket hang up|premature close|aborted/i.test(message)) return { kind: 'transient', message };
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

/** The `git` section's retry settings (config.ts): how often and how long a fetch is retried. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
  /** For tests: a source of randomness in [0, 1). */
  random?: () => number;
}

/**
 * The backoff of a fetch: exponential from retryDelayMs, capped at retryMaxDelayMs, with "equal
 * jitter" (half fixed, half random) so a fleet of workers does not hammer a recovering server in step.
 */
export function fetchBackoff(policy: RetryPolicy): BackoffPolicy {
  return { baseMs: policy.retryDelayMs, maxMs: policy.retryMaxDelayMs, jitter: 0.5, ...(policy.random ? { random: policy.random } : {}) };
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the retries run out;
 * the last RemoteFailure is thrown as `{ failure, error }`. Our own typed errors pass through.
 */
export function retryTransient<T>(
  attempt: (n: number) => Promise<T>,
  policy: RetryPolicy,
  options: { signal?: AbortSignal; mask: (text: string) => string; onRetry?: (failure: RemoteFailure, delayMs: number, attempt: number) => void },
): Promise<T> {
  const classified = async (n: number) => {
    try {
      return await attempt(n);
    } catch (err) {
      if (isOciBuildError(err)) throw err;
      throw new RemoteFetchFailure(classifyRemoteError(err, options.mask), err);
    }
  };
  return retry(classified, {
    policy: fetchBackoff(policy),
    retries: policy.retries,
    retryable: (err): err is RemoteFetchFailure => err instanceof RemoteFetchFailure && err.failure.kind === 'transient',
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onRetry ? { onRetry: (err: RemoteFetchFailure, delayMs: number, n: number) => options.onRetry!(err.failure, delayMs, n) } : {}),
  });
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
