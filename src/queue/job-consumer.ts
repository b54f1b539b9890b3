// The worker's side of the jobs stream on JetStream (the JobConsumer port): the durable pull
// consumer, one pull per free slot, the deliveries' ack protocol, and what tells a worker that a
// newer push of a branch it is building exists:
//   - a KV watch on `latest.>` (a worker started a newer job: raiseLatest),
//   - a core subscription on `<subject>.>` (a job was published on a branch being built; the
//     stream says whether it really is newer: a webhook redelivery dropped as a duplicate is heard
//     here too, but never stored),
//   - newestPush, which the worker asks before a job starts and on every heartbeat.
// A NATS reconnect loses the server-side pull requests: the pulls running then are stopped, so
// every slot re-issues its own at once.

import { AckPolicy, DeliverPolicy, KvWatchInclude, nanos, type Consumer, type ConsumerMessages, type JsMsg, type KvEntry, type QueuedIterator } from 'nats';
import { ServiceUnavailableError, describeError } from '../core/errors.js';
import type { ConsumerEvent, ConsumerSettings, ConsumerWatch, Delivery, JobConsumer, PushMark } from '../core/ports.js';
import { retry, sleep } from '../core/retry.js';
import type { BuildJob } from '../core/types.js';
import { LATEST_KEY_PREFIX, keyOfSubject, newestJob, newestQueuedJob, raiseLatest, supersedeKeyOf, type LatestJob } from './job-queue.js';
import { isJetStreamSettling, isJsError, JsErrorCode } from './nats-errors.js';
import { JETSTREAM_SETUP_BACKOFF, JETSTREAM_SETUP_WAIT_MS, type NatsContext } from './nats.js';

/** How long a failed KV watch waits before watching again (the heartbeat's check covers the gap). */
const REWATCH_MS = 1_000;
/** The stream may not have stored a job yet when the plain subscription hears of it: look again after this. */
const RECHECK_MS = 250;

export class JetStreamJobConsumer implements JobConsumer {
  private name?: string;
  private consumer?: Consumer;
  private readonly pulls = new Set<ConsumerMessages>();

  constructor(private readonly ctx: NatsContext) {}

  /**
   * Creates or updates the durable consumer. Retried while JetStream does not answer (for up to
   * JETSTREAM_SETUP_WAIT_MS): on a cluster, two workers starting together, or a consumer leader
   * being elected, can time out a first attempt; a daemon should not exit for that.
   */
  ensure(settings: ConsumerSettings): Promise<void> {
    return retry(() => this.ensureOnce(settings), {
      policy: JETSTREAM_SETUP_BACKOFF,
      deadlineMs: JETSTREAM_SETUP_WAIT_MS,
      // What JetStream did not answer (the cause ensureOnce wraps), not what it refused.
      retryable: (err): err is unknown => isJetStreamSettling((err as Error | undefined)?.cause ?? err),
    });
  }

  private async ensureOnce(settings: ConsumerSettings): Promise<void> {
    const { jsm, config } = this.ctx;
    const { name } = settings;
    this.name = name;
    this.consumer = undefined;
    const wanted = { ack_wait: nanos(settings.ackWaitMs), max_deliver: settings.maxDeliver };
    try {
      const info = await jsm.consumers.info(config.stream, name);
      if (info.config.ack_wait !== wanted.ack_wait || info.config.max_deliver !== wanted.max_deliver) {
        await jsm.consumers.update(config.stream, name, wanted);
      }
      return;
    } catch (err) {
      if (!isJsError(err, JsErrorCode.ConsumerNotFound)) {
        throw new ServiceUnavailableError(`Cannot read consumer ${name} of stream ${config.stream}: ${describeError(err)}`, { cause: err });
      }
    }
    try {
      await jsm.consumers.add(config.stream, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        max_ack_pending: -1,
        ...wanted,
      });
    } catch (err) {
      // Another worker created it at the same moment.
      if (!isJsError(err, JsErrorCode.ConsumerExists, JsErrorCode.ConsumerAlreadyExists)) {
        throw new ServiceUnavailableError(`Cannot create consumer ${name} on stream ${config.stream}: ${describeError(err)}`, { cause: err });
      }
    }
  }

  async next(options: { expiresMs: number; signal: AbortSignal }): Promise<Delivery | undefined> {
    const { signal } = options;
    if (signal.aborted) return undefined;
    if (this.name === undefined) throw new Error('JetStreamJobConsumer.next() before ensure()');
    try {
      this.consumer ??= await this.ctx.js.consumers.get(this.ctx.config.stream, this.name);
      const pull = await this.consumer.fetch({ max_messages: 1, expires: options.expiresMs });
      this.pulls.add(pull);
      const stop = () => pull.stop();
      signal.addEventListener('abort', stop, { once: true });
      // Aborted while the pull was being set up.
      if (signal.aborted) pull.stop();
      try {
        for await (const m of pull) return new JetStreamDelivery(m);
        return undefined;
      } finally {
        signal.removeEventListener('abort', stop);
        this.pulls.delete(pull);
      }
    } catch (err) {
      this.consumer = undefined;
      throw err;
    }
  }

  supersedeKeyOf(job: BuildJob): string | undefined {
    return supersedeKeyOf(job);
  }

  async newestPush(key: string): Promise<PushMark | undefined> {
    const newest = await newestJob(this.ctx, key);
    return newest && { key, ...newest };
  }

  async raiseLatest(started: PushMark): Promise<PushMark> {
    const latest = await raiseLatest(this.ctx, started.key, { id: started.id, seq: started.seq });
    return { key: started.key, ...latest };
  }

  watch(options: ConsumerWatch, listener: (event: ConsumerEvent) => void): () => void {
    const stopped = new AbortController();
    const stops: Array<() => void> = [this.watchConnection(listener, stopped.signal)];
    if (options.pushes) {
      stops.push(this.watchLatest(listener, stopped.signal), this.watchPublished(options, listener));
    }
    return () => {
      stopped.abort();
      for (const stop of stops) stop();
    };
  }

  private watchConnection(listener: (event: ConsumerEvent) => void, stopped: AbortSignal): () => void {
    const status = this.ctx.nc.status();
    void (async () => {
      try {
        for await (const s of status) {
          if (stopped.aborted) return;
          if (s.type === 'reconnect') {
            for (const pull of this.pulls) pull.stop();
            listener({ type: 'reconnected', server: String(s.data) });
          } else if (s.type === 'disconnect') {
            listener({ type: 'disconnected', server: String(s.data) });
          }
        }
      } catch {
        // The connection was closed.
      }
    })();
    return () => (status as Partial<QueuedIterator<unknown>>).stop?.();
  }

  private watchLatest(listener: (event: ConsumerEvent) => void, stopped: AbortSignal): () => void {
    let watcher: QueuedIterator<KvEntry> | undefined;
    void (async () => {
      while (!stopped.aborted) {
        try {
          watcher = await this.ctx.kv.watch({ key: `${LATEST_KEY_PREFIX}.>`, include: KvWatchInclude.UpdatesOnly });
          if (stopped.aborted) watcher.stop();
          for await (const entry of watcher) {
            if (entry.operation !== 'PUT') continue;
            const { id, seq } = entry.json<LatestJob>();
            listener({ type: 'newer-push', push: { key: entry.key.slice(LATEST_KEY_PREFIX.length + 1), id, seq } });
          }
        } catch (error) {
          if (!stopped.aborted) listener({ type: 'watch-failed', error });
        }
        await sleep(REWATCH_MS, stopped);
      }
    })();
    return () => watcher?.stop();
  }

  private watchPublished(options: ConsumerWatch, listener: (event: ConsumerEvent) => void): () => void {
    const { nc, config } = this.ctx;
    const subscription = nc.subscribe(`${config.subject}.>`, {
      callback: (err, m) => {
        if (err) return;
        const key = keyOfSubject(config, m.subject);
        if (!key || !options.isBuilding(key)) return;
        const check = async (attempt: number) => {
          const newest = await newestQueuedJob(this.ctx, key);
          if (newest) listener({ type: 'newer-push', push: { key, ...newest } });
          if (attempt === 0 && options.isBuilding(key)) setTimeout(() => void check(1).catch(() => undefined), RECHECK_MS);
        };
        check(0).catch(() => undefined);
      },
    });
    return () => subscription.unsubscribe();
  }
}

class JetStreamDelivery implements Delivery {
  readonly seq: number;
  readonly attempt: number;
  readonly job: BuildJob | undefined;
  readonly unreadable?: string;

  constructor(private readonly msg: JsMsg) {
    this.seq = msg.info.streamSequence;
    this.attempt = msg.info.deliveryCount;
    try {
      const job = msg.json<BuildJob>();
      if (typeof job?.id !== 'string' || !job.id || typeof job.source !== 'object' || !job.image) throw new Error('not a BuildJob');
      this.job = job;
    } catch (err) {
      this.job = undefined;
      this.unreadable = describeError(err);
    }
  }

  async ack(): Promise<void> {
    await this.msg.ackAck();
  }

  nak(delayMs?: number): void {
    settle(() => this.msg.nak(delayMs));
  }

  working(): void {
    settle(() => this.msg.working());
  }

  term(): void {
    settle(() => this.msg.term());
  }
}

/**
 * An ack-protocol message (nak, term, in-progress) that may meet a closed connection: then
 * nothing is lost, ack_wait expires and JetStream redelivers the job.
 */
function settle(send: () => void): void {
  try {
    send();
  } catch {
    // see above
  }
}
