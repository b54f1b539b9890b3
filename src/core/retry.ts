// Waiting and backing off: the one implementation behind every retry in oci-build (Git fetches,
// a job's next delivery, NATS writes while the client reconnects, a pull loop, a watch that
// failed). Pure but for the timers; the decision to retry is the caller's, by error kind
// (isTransient and friends in core/errors.ts), never by message text.

import { CancelledError, isOciBuildError } from './errors.js';

export interface BackoffPolicy {
  /** The first delay. */
  baseMs: number;
  /** No delay is longer. */
  maxMs: number;
  /**
   * How much of each delay is random: 0 none; 0.5 "equal jitter" (half fixed, half random), so a
   * fleet that failed together does not retry in step; 1 "full jitter".
   */
  jitter?: number;
  /** For tests: a source of randomness in [0, 1). */
  random?: () => number;
}

/** The delay before retry number `attempt` (0-based): base × 2^attempt, capped, jittered. */
export function backoffDelay(attempt: number, policy: BackoffPolicy): number {
  const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0));
  if (jitter === 0) return Math.round(exponential);
  const random = (policy.random ?? Math.random)();
  return Math.round(exponential * (1 - jitter) + exponential * jitter * random);
}

/**
 * Waits `ms`. When `signal` aborts: with `onAbort: 'resolve'` (the default) it returns at once (a
 * loop that checks its own state next); with 'reject' it throws the signal's typed reason, or a
 * CancelledError.
 */
export function sleep(ms: number, signal?: AbortSignal, options: { onAbort?: 'resolve' | 'reject'; unref?: boolean } = {}): Promise<void> {
  const reject = options.onAbort === 'reject';
  return new Promise((resolve, fail) => {
    if (signal?.aborted) return reject ? fail(abortError(signal)) : resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
      resolve();
    };
    const aborted = () => {
      clearTimeout(timer);
      if (reject) fail(abortError(signal!));
      else resolve();
    };
    const timer = setTimeout(done, ms);
    if (options.unref) timer.unref();
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * The error an aborted operation ends with: the signal's reason when it is one of ours (a build
 * timeout, a supersede, a shutdown hand-back), else a CancelledError naming what was cancelled.
 */
export function abortError(signal: AbortSignal, what = 'The operation'): Error {
  const reason: unknown = signal.reason;
  return isOciBuildError(reason) ? reason : new CancelledError(`${what} was cancelled`);
}

export interface RetryOptions<E> {
  policy: BackoffPolicy;
  /** Retries after the first attempt (so at most retries + 1 attempts). */
  retries?: number;
  /** Keeps retrying until this much time has passed since the start (with `retries`, whichever ends first). */
  deadlineMs?: number;
  /** Whether a failure is worth another attempt: by error kind, never by message. */
  retryable: (err: unknown) => err is E;
  signal?: AbortSignal;
  onRetry?: (err: E, delayMs: number, attempt: number) => void;
  /** For tests: the clock. */
  now?: () => number;
}

/** Runs `fn` until it succeeds, fails with what `retryable` refuses, or the retries or time run out. */
export async function retry<T, E = unknown>(fn: (attempt: number) => Promise<T>, options: RetryOptions<E>): Promise<T> {
  const now = options.now ?? Date.now;
  const started = now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (options.signal?.aborted) throw abortError(options.signal);
      if (!options.retryable(err)) throw err;
      if (options.retries !== undefined && attempt >= options.retries) throw err;
      const wait = backoffDelay(attempt, options.policy);
      if (options.deadlineMs !== undefined && now() + wait - started > options.deadlineMs) throw err;
      options.onRetry?.(err, wait, attempt + 1);
      await sleep(wait, options.signal, { onAbort: 'reject' });
    }
  }
}
