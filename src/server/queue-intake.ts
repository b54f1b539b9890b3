// JobIntake over src/queue: the jobs stream, the status KV bucket and the log stream of NATS
// JetStream.
//
// Health: the client's status events say when the socket is gone, so `serve` answers 503 at once
// while nats.js reconnects (by itself, forever) instead of letting requests queue up in the
// client's reconnect buffer. They say nothing when the server stops answering on a socket that
// stays open (a SIGSTOPped or wedged nats-server: the events said `connected` for as long as it
// lasted), so a round trip (PING/PONG) with a timeout is the real check: /health makes one, a
// timer makes one every few seconds, and so does any failed write; the cached outcome is what the
// webhook path reads.

import { Events, headers as natsHeaders, type KvEntry } from 'nats';
import type { Config } from '../config/config.js';
import { DEFAULT_CONSUMER_NAME, type BuildListFilter } from '../core/ports.js';
import type { BuildJob, BuildRecord } from '../core/types.js';
import { JOB_ID_HEADER, buildKey, jobSubject, publishJob, queueDepth } from '../queue/job-queue.js';
import { KvBuildStore } from '../queue/kv-build-store.js';
import { publishIfRevision, readEntry, valueOf, writeIfRevision, type ConflictDecision } from '../queue/kv-conditional.js';
import { readLog } from '../queue/log-stream.js';
import { JsErrorCode, isJsError } from '../queue/nats-errors.js';
import { SendBatch } from '../queue/send-batch.js';
import { closeNats, connectNats, natsUnavailable, subjectToken, type NatsContext } from '../queue/nats.js';
import { NOT_ACCEPTED, type IntakeHealth, type JobIntake, type RecordChange } from './job-intake.js';
import type { Logger } from '../log/logger.js';

const RECORD_KEY_PREFIX = 'build.';
/** Push claims: `push.<pushClaimKey>` → the id of the job that claimed it (see claimPush). */
const PUSH_KEY_PREFIX = 'push.';

/** How long a background round trip may take before NATS counts as unresponsive. */
const PROBE_TIMEOUT_MS = 2_000;

export interface QueueIntakeOptions {
  logger?: Logger;
  /** Background round trips (default 5 s); 0 turns them off. */
  probeIntervalMs?: number;
}

export class QueueIntake implements JobIntake {
  private readonly store: KvBuildStore;
  private connected = true;
  /** The outcome of the last round trip. */
  private answering = true;
  private probing: Promise<boolean> | undefined;
  private readonly probeTimer: NodeJS.Timeout | undefined;
  private readonly batch = new SendBatch();
  private readonly logger: Logger | undefined;

  constructor(
    readonly ctx: NatsContext,
    options: QueueIntakeOptions = {},
  ) {
    this.logger = options.logger;
    this.store = new KvBuildStore(ctx);
    void this.followStatus();
    const every = options.probeIntervalMs ?? 5_000;
    if (every > 0) this.probeTimer = setInterval(() => void this.probe(PROBE_TIMEOUT_MS), every).unref();
  }

  private async followStatus(): Promise<void> {
    void this.ctx.nc.closed().then(() => {
      this.connected = false;
    });
    for await (const status of this.ctx.nc.status()) {
      if (status.type === Events.Disconnect) {
        this.connected = false;
        this.logger?.warn({ nats: String(status.data) }, 'NATS disconnected; reconnecting');
      } else if (status.type === Events.Reconnect) {
        this.connected = true;
        this.logger?.info({ nats: String(status.data) }, 'NATS reconnected');
      }
    }
  }

  health(): IntakeHealth {
    if (!this.connected || this.ctx.nc.isClosed()) return { nats: 'disconnected' };
    return { nats: this.answering ? 'connected' : 'unresponsive' };
  }

  async probe(timeoutMs: number): Promise<IntakeHealth> {
    if (!this.connected || this.ctx.nc.isClosed()) return this.health();
    // One round trip at a time: callers arriving meanwhile share its outcome.
    this.probing ??= this.roundTrip(timeoutMs).finally(() => (this.probing = undefined));
    await this.probing;
    return this.health();
  }

  private async roundTrip(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    // A PONG also means every write this connection sent before the PING has been read by the server.
    const answered = await Promise.race([this.ctx.nc.rtt().then(() => true, () => false), timeout]);
    clearTimeout(timer);
    if (answered !== this.answering) {
      if (answered) this.logger?.info('NATS answers again');
      else this.logger?.warn({ timeoutMs }, 'NATS does not answer (no PONG within the timeout): refusing webhooks until it does');
    }
    this.answering = answered;
    return answered;
  }

  /** A write that failed may mean a server that stopped answering: look at once. */
  private checkAfter<T>(write: Promise<T>): Promise<T> {
    write.catch(() => void this.probe(PROBE_TIMEOUT_MS));
    return write;
  }

  createQueued(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord; revision?: number }> {
    return this.checkAfter(this.batch.run(() => this.store.createIfAbsent(record)));
  }

  /**
   * One awaited JetStream publish on the branch's subject (publishJob): workers learn of a newer
   * push to a branch from the stream itself (last message by subject), so nothing else is written.
   * Batched like the records: the acks of one read do not always resolve in one callback, and
   * unbatched the publishes that follow them took a socket write each (profiled: 10 % of serve's
   * CPU against 7 % batched).
   */
  async publish(job: BuildJob, options: { revived?: number } = {}): Promise<{ duplicate: boolean }> {
    const { duplicate, seq } = await this.checkAfter(this.batch.run(() => publishJob(this.ctx, job)));
    if (!duplicate || options.revived === undefined) return { duplicate };
    // A revived record (its first delivery was answered 503): the stream knows the message id, so
    // that first publish was stored after all. Still waiting there, it is this job's message now;
    // already taken by a worker (which found the record `failed` and built nothing), it is gone,
    // and only a message id of its own gets the job queued within the duplicate window.
    let present: boolean;
    try {
      await this.ctx.jsm.streams.getMessage(this.ctx.config.stream, { seq });
      present = true;
    } catch (err) {
      if (!isJsError(err, JsErrorCode.NoMessageFound)) throw natsUnavailable(`Cannot look up the message of build ${job.id}`, err, this.ctx.config);
      present = false;
    }
    if (!present) {
      const h = natsHeaders();
      h.set(JOB_ID_HEADER, job.id);
      try {
        await this.ctx.publisher.publish(jobSubject(this.ctx.config, job), JSON.stringify(job), { msgId: `${job.deliveryId ?? job.id}~${options.revived}`, headers: h });
      } catch (err) {
        throw natsUnavailable(`Cannot queue build ${job.id} on stream ${this.ctx.config.stream}`, err, this.ctx.config);
      }
    }
    return { duplicate: false };
  }

  /**
   * Compare-and-set on the record's key (`Nats-Expected-Last-Subject-Sequence`), so a worker that
   * started the job meanwhile (it writes `running`) or another delivery's record is never
   * overwritten. With `revision` the first write needs no read: issued right after the failed
   * publish on the same connection, it reaches the server behind that publish, before a worker
   * can have read the record (see JobEnqueuer.settle, enqueue.ts).
   */
  async settleNotAccepted(failed: BuildRecord, revision?: number): Promise<'settled' | 'taken'> {
    const key = buildKey(failed.id);
    const what = `the record of build ${failed.id}`;
    const decide = (entry: KvEntry | null): ConflictDecision<'settled' | 'taken'> => {
      const existing = valueOf(entry)?.json<BuildRecord>();
      if (existing && existing.createdAt !== failed.createdAt) return { done: 'taken' };
      if (existing?.status === 'failed' && existing.error?.code === NOT_ACCEPTED) return { done: 'settled' };
      if (existing && existing.status !== 'queued') return { done: 'taken' };
      return { retryAt: entry?.revision ?? 0 };
    };
    let expected = revision;
    if (expected === undefined) {
      const first = decide(await readEntry(this.ctx, key, what));
      if ('done' in first) return first.done;
      expected = first.retryAt;
    }
    return writeIfRevision(this.ctx, { key, data: JSON.stringify(failed), expected, written: () => 'settled', onConflict: decide, what, attempts: 6 });
  }

  async reviveQueued(record: BuildRecord, revision: number): Promise<{ revived: boolean; revision?: number }> {
    const seq = await publishIfRevision(this.ctx, buildKey(record.id), JSON.stringify(record), revision, `the record of build ${record.id}`);
    return seq === undefined ? { revived: false } : { revived: true, revision: seq };
  }

  discard(id: string): Promise<void> {
    return this.store.delete(id);
  }

  /**
   * `push.<key>` is written with `Nats-Expected-Last-Subject-Sequence: 0`: stored only while the
   * key has no message, so of two deliveries of one push exactly one job gets the claim. The bucket
   * keeps one revision per key and no TTL (nats.ts), so a claim lasts as long as the bucket.
   * Batched like the records (see publish).
   */
  claimPush(key: string, jobId: string): Promise<{ jobId: string; claimed: boolean }> {
    return this.batch.run(() => this.claim(key, jobId));
  }

  private claim(key: string, jobId: string): Promise<{ jobId: string; claimed: boolean }> {
    return writeIfRevision<{ jobId: string; claimed: boolean }>(this.ctx, {
      key: `${PUSH_KEY_PREFIX}${subjectToken(key)}`,
      data: jobId,
      expected: 0,
      written: () => ({ jobId, claimed: true }),
      // Ours when an earlier attempt of this delivery stored it (its acknowledgement was lost).
      onConflict: (entry) => {
        const holder = valueOf(entry)?.string();
        return holder !== undefined ? { done: { jobId: holder, claimed: holder === jobId } } : { retryAt: entry?.revision ?? 0 };
      },
      what: `the claim of push ${key} for build ${jobId}`,
    });
  }

  get(id: string): Promise<BuildRecord | undefined> {
    return this.store.get(id);
  }

  list(filter: BuildListFilter): Promise<BuildRecord[]> {
    return this.store.list(filter);
  }

  readLog(id: string, options: { follow: boolean; signal: AbortSignal }): AsyncIterable<string> {
    return readLog(this.ctx, id, options);
  }

  queueDepth(): Promise<number> {
    return queueDepth(this.ctx, DEFAULT_CONSUMER_NAME);
  }

  async *watchRecords(signal: AbortSignal): AsyncIterable<RecordChange> {
    if (signal.aborted) return;
    // Entries stored before the watch began are the initial state (nats.js's initializedFn may fire
    // before those entries are read from the iterator, so the stored time decides instead).
    const startedAt = Date.now();
    let watcher;
    try {
      watcher = await this.ctx.kv.watch({ key: `${RECORD_KEY_PREFIX}>` });
    } catch (err) {
      throw natsUnavailable('Cannot watch the status bucket', err, this.ctx.config);
    }
    const onAbort = () => watcher.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const entry of watcher) yield changeOf(entry, startedAt);
    } finally {
      signal.removeEventListener('abort', onAbort);
      watcher.stop();
    }
  }

  async close(): Promise<void> {
    if (this.probeTimer) clearInterval(this.probeTimer);
    await closeNats(this.ctx);
  }
}

function changeOf(entry: KvEntry, startedAt: number): RecordChange {
  const id = entry.key.slice(RECORD_KEY_PREFIX.length);
  const initial = entry.created.getTime() < startedAt;
  if (entry.operation !== 'PUT' || entry.length === 0) return { id, initial };
  try {
    return { id, record: entry.json<BuildRecord>(), initial };
  } catch {
    return { id, initial };
  }
}

/** Connects to NATS (streams and bucket ensured); ServiceUnavailableError when unreachable. */
export async function connectQueueIntake(config: Config['nats'], options: QueueIntakeOptions & { name?: string } = {}): Promise<QueueIntake> {
  const ctx = await connectNats(config, { name: options.name ?? 'oci-build-serve', ...(options.logger ? { logger: options.logger } : {}) });
  return new QueueIntake(ctx, options);
}
