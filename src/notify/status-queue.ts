// Posting commit statuses without ever holding a build up, in the order the build lived them.
//
// - One lane per (repository, commit, context): a lane posts one status at a time, so a status
//   never overtakes an earlier one of its context, and the latest state wins. A state waiting in
//   a lane is dropped when a newer one arrives (it would be overwritten at once), and a post
//   waiting to retry gives up as soon as a newer state of its context is queued: a stale `pending`
//   can never land after the final state.
// - At most `maxInFlight` posts are in flight per process (GitHub's guidance: no concurrent
//   bursts); a post waiting to retry holds no slot.
// - Retries: a server error (5xx) or a network failure is retried with backoff (core/retry.ts),
//   honouring `Retry-After`; a rate limit (403/429 with `x-ratelimit-remaining: 0` or
//   `Retry-After`) pauses every lane until the reset the API named; any other 4xx is not retried
//   (the token may not write statuses there, the commit is unknown: trying again cannot help).
//   A post is given up after `maxAttempts` or `giveUpAfterMs`, whichever comes first.
// Every post ends with an outcome (posted, failed with its error, or superseded) for the record.

import { backoffDelay, sleep as defaultSleep, type BackoffPolicy } from '../core/retry.js';
import type { CommitStatus, StatusTarget } from './status-mapping.js';

/** What a failed post tells the queue: the retry rules read only this. */
export class StatusPostError extends Error {
  constructor(
    message: string,
    /** `rate-limit`: wait `waitMs` (every lane). `server`, `network`: retry with backoff. `client`: never retried. */
    readonly kind: 'rate-limit' | 'server' | 'network' | 'client',
    readonly status?: number,
    /** How long the API asked us to wait (Retry-After, or until x-ratelimit-reset). */
    readonly waitMs?: number,
  ) {
    super(message);
    this.name = 'StatusPostError';
  }
}

export interface StatusRequest {
  target: StatusTarget;
  status: CommitStatus;
  buildId: string;
  /** The GitHub App installation to post as (App authentication). */
  installationId?: number;
  /** Asked before every attempt: false drops the post (its build moved on; a later state will be posted by whoever has it). */
  stillCurrent?: () => Promise<boolean>;
}

export interface PostOutcome {
  context: string;
  state: CommitStatus['state'];
  /** ISO time of the post, or of giving up. */
  at: string;
  /** Why it was not posted. */
  error?: string;
  /** Dropped unposted: a newer state of the context was queued (or the build moved on). */
  superseded?: boolean;
  attempts: number;
}

export interface StatusQueueOptions {
  post: (request: StatusRequest) => Promise<void>;
  /** Posts in flight at once, over every lane (default 4). */
  maxInFlight?: number;
  /** Attempts of one post (default 8). */
  maxAttempts?: number;
  /** Backoff between attempts after a 5xx or a network failure (default 1 s, doubling, at most 60 s, half jittered). */
  policy?: BackoffPolicy;
  /** A post still failing this long after its first attempt is given up (default 15 min). */
  giveUpAfterMs?: number;
  /** For tests: the clock and the wait. */
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

interface Waiting {
  request: StatusRequest;
  resolve: (outcome: PostOutcome) => void;
}

interface Lane {
  next?: Waiting;
  running: boolean;
  /** Aborted to end a retry's wait early: a newer state arrived, or the queue closes. */
  wake?: AbortController;
}

export const DEFAULT_STATUS_POLICY: BackoffPolicy = { baseMs: 1000, maxMs: 60_000, jitter: 0.5 };

export class StatusQueue {
  private readonly lanes = new Map<string, Lane>();
  private inFlight = 0;
  private readonly slotWaiters: Array<() => void> = [];
  /** Every lane waits until then (a rate limit is the token's, not one lane's). */
  private pausedUntil = 0;
  private readonly closing = new AbortController();
  private readonly idleWaiters: Array<() => void> = [];
  private readonly post: StatusQueueOptions['post'];
  private readonly maxInFlight: number;
  private readonly maxAttempts: number;
  private readonly policy: BackoffPolicy;
  private readonly giveUpAfterMs: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(options: StatusQueueOptions) {
    this.post = options.post;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 4);
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 8);
    this.policy = options.policy ?? DEFAULT_STATUS_POLICY;
    this.giveUpAfterMs = options.giveUpAfterMs ?? 15 * 60_000;
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms, signal) => defaultSleep(ms, signal, { unref: true }));
  }

  /** Queues a status; resolves with its outcome (never rejects). */
  enqueue(request: StatusRequest): Promise<PostOutcome> {
    return new Promise((resolve) => {
      if (this.closing.signal.aborted) return resolve(this.outcome(request, 0, { error: 'not posted: the process is stopping' }));
      const key = laneKey(request);
      let lane = this.lanes.get(key);
      if (!lane) {
        lane = { running: false };
        this.lanes.set(key, lane);
      }
      if (lane.next) lane.next.resolve(this.outcome(lane.next.request, 0, { superseded: true }));
      lane.next = { request, resolve };
      lane.wake?.abort();
      if (!lane.running) void this.run(key, lane);
    });
  }

  /** Resolves once no lane has anything to post. */
  idle(): Promise<void> {
    if (this.lanes.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Waits up to `timeoutMs` for the lanes to empty, then gives up what is left (retry waits end at once). */
  async close(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.closing.abort();
    for (const lane of this.lanes.values()) lane.wake?.abort();
    await this.idle();
  }

  private async run(key: string, lane: Lane): Promise<void> {
    lane.running = true;
    try {
      while (lane.next) {
        const current = lane.next;
        lane.next = undefined;
        current.resolve(await this.deliver(current.request, lane));
      }
    } finally {
      lane.running = false;
      this.lanes.delete(key);
      if (this.lanes.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private async deliver(request: StatusRequest, lane: Lane): Promise<PostOutcome> {
    const started = this.now();
    // Asked before each attempt, the first too: serve's `queued` is not worth posting once a worker has the build.
    let checked = -1;
    for (let attempt = 0; ; ) {
      if (lane.next) return this.outcome(request, attempt, { superseded: true });
      if (this.closing.signal.aborted) return this.outcome(request, attempt, { error: 'not posted: the process stopped before GitHub answered' });
      if (attempt > checked && request.stillCurrent) {
        checked = attempt;
        if (!(await request.stillCurrent().catch(() => true))) return this.outcome(request, attempt, { superseded: true });
      }
      if (this.pausedUntil > this.now()) {
        await this.wait(lane, this.pausedUntil - this.now());
        continue;
      }
      await this.acquire();
      // A rate limit may have been answered while this post waited for its slot.
      if (this.pausedUntil > this.now() || lane.next) {
        this.release();
        continue;
      }
      let failure: StatusPostError;
      attempt++;
      try {
        await this.post(request);
        return this.outcome(request, attempt, {});
      } catch (err) {
        failure = err instanceof StatusPostError ? err : new StatusPostError(err instanceof Error ? err.message : String(err), 'network');
      } finally {
        this.release();
      }
      if (failure.kind === 'client') return this.outcome(request, attempt, { error: failure.message });
      if (attempt >= this.maxAttempts) return this.outcome(request, attempt, { error: `${failure.message} (gave up after ${attempt} attempts)` });
      const backoff = backoffDelay(attempt - 1, this.policy);
      const waitMs = failure.kind === 'rate-limit' ? Math.max(failure.waitMs ?? 60_000, this.policy.baseMs) : Math.max(backoff, failure.waitMs ?? 0);
      if (this.now() + waitMs - started > this.giveUpAfterMs) {
        return this.outcome(request, attempt, { error: `${failure.message} (gave up: the API asked to wait ${Math.ceil(waitMs / 1000)}s, past the ${Math.round(this.giveUpAfterMs / 1000)}s a status is retried)` });
      }
      if (failure.kind === 'rate-limit') this.pausedUntil = Math.max(this.pausedUntil, this.now() + waitMs);
      await this.wait(lane, waitMs);
    }
  }

  /** Sleeps unless a newer state of the lane arrives, or the queue closes. */
  private async wait(lane: Lane, ms: number): Promise<void> {
    if (lane.next || this.closing.signal.aborted) return;
    const wake = new AbortController();
    lane.wake = wake;
    try {
      await this.sleep(ms, AbortSignal.any([wake.signal, this.closing.signal]));
    } finally {
      if (lane.wake === wake) lane.wake = undefined;
    }
  }

  private acquire(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private release(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.inFlight--;
  }

  private outcome(request: StatusRequest, attempts: number, extra: { error?: string; superseded?: boolean }): PostOutcome {
    return {
      context: request.status.context,
      state: request.status.state,
      at: new Date(this.now()).toISOString(),
      attempts,
      ...(extra.error !== undefined ? { error: extra.error } : {}),
      ...(extra.superseded ? { superseded: true } : {}),
    };
  }
}

/** Statuses of one context of one commit share a lane (GitHub names are case-insensitive). */
export function laneKey(request: Pick<StatusRequest, 'target' | 'status'>): string {
  const { owner, repo, sha } = request.target;
  return `${owner.toLowerCase()}/${repo.toLowerCase()}@${sha}#${request.status.context}`;
}
