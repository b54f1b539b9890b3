// Cancel requests in the status bucket: `cancel.<id>` → CancelRequest JSON (core/cancel-request.ts).
//
// Why a key of its own, and not only a compare-and-set of the record: a running build's record is
// the worker's (the pipeline writes it as it goes, plainly), so a record that serve changed would
// be overwritten by the next phase. The request key is serve's alone: every serve replica writes
// it the same way, and each worker keeps ONE watch on `cancel.>` (not one per build) and cancels
// the build it is running when its key appears. A worker looks the key up when it starts a build
// and when its watch starts again after a failure, so a request made meanwhile is not missed.
//
// A queued build has no worker yet: serve also sets its record to `cancelled` by compare-and-set
// on the `queued` revision (cancelQueued), and a worker that gets the job later finds a final
// record and acknowledges it without building (worker outcome "ack"). If a worker took the job
// between serve's read and its write, the write loses the race, and the request key cancels it.
//
// Requests stay in the bucket (one small entry per cancelled build, like the push claims).

import { KvWatchInclude, type KvEntry, type QueuedIterator } from 'nats';
import { cancelFields, cancelMessage, type CancelRequest, type CancelRequestWatch } from '../core/cancel-request.js';
import { sleep } from '../core/retry.js';
import type { BuildRecord } from '../core/types.js';
import { buildKey } from './job-queue.js';
import { publishIfRevision, readEntry, valueOf } from './kv-conditional.js';
import { JetStreamLogStore } from './log-stream.js';
import { natsUnavailable, subjectToken, type NatsContext } from './nats.js';

export const CANCEL_KEY_PREFIX = 'cancel';
/** How long a failed watch waits before watching again. */
const REWATCH_MS = 1_000;

export function cancelKey(id: string): string {
  return `${CANCEL_KEY_PREFIX}.${subjectToken(id)}`;
}

/** What cancelQueued found: the record it cancelled, or the record as someone else left it. */
export type QueuedCancel = { cancelled: true; record: BuildRecord } | { cancelled: false; record: BuildRecord | undefined };

export class KvCancelRequests implements CancelRequestWatch {
  constructor(private readonly ctx: NatsContext) {}

  /** Stores the request (a later request for the same build replaces it). */
  async request(request: CancelRequest): Promise<void> {
    try {
      await this.ctx.kv.put(cancelKey(request.id), JSON.stringify(request));
    } catch (err) {
      throw natsUnavailable(`Cannot store the cancel request of build ${request.id}`, err, this.ctx.config);
    }
  }

  async get(id: string): Promise<CancelRequest | undefined> {
    return requestOf(await readEntry(this.ctx, cancelKey(id), `the cancel request of build ${id}`));
  }

  watch(running: () => string[], listener: (request: CancelRequest) => void): () => void {
    const stopped = new AbortController();
    let watcher: QueuedIterator<KvEntry> | undefined;
    void (async () => {
      while (!stopped.signal.aborted) {
        try {
          watcher = await this.ctx.kv.watch({ key: `${CANCEL_KEY_PREFIX}.>`, include: KvWatchInclude.UpdatesOnly });
          if (stopped.signal.aborted) watcher.stop();
          // Watching from here on: what was requested before is looked up once.
          for (const id of running()) {
            const request = await this.get(id).catch(() => undefined);
            if (request) listener(request);
          }
          for await (const entry of watcher) {
            const request = requestOf(entry);
            if (request) listener(request);
          }
        } catch {
          // NATS away: watch again; the lookup above covers what was requested meanwhile.
        }
        await sleep(REWATCH_MS, stopped.signal);
      }
    })();
    return () => {
      stopped.abort();
      watcher?.stop();
    };
  }

  /**
   * Sets a `queued` record to `cancelled` (naming `request.by`) by compare-and-set, so a worker
   * that started the build meanwhile is never overwritten. Anything but `queued`: left alone.
   */
  async cancelQueued(request: CancelRequest, now: Date = new Date()): Promise<QueuedCancel> {
    const key = buildKey(request.id);
    const what = `the record of build ${request.id}`;
    // Each try cancels the record as it is now (a retry note written meanwhile is kept).
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await readEntry(this.ctx, key, what);
      const current = valueOf(entry)?.json<BuildRecord>();
      if (!current || current.status !== 'queued') return { cancelled: false, record: current };
      const cancelled = cancelledRecord(current, request, now);
      if ((await publishIfRevision(this.ctx, key, JSON.stringify(cancelled), entry!.revision, what)) !== undefined) return { cancelled: true, record: cancelled };
    }
    throw natsUnavailable(`Cannot cancel build ${request.id}`, new Error('its record kept changing'), this.ctx.config);
  }

  /** Ends the log of a build cancelled before it started, saying so: its followers stop. */
  async endLog(id: string, line: string): Promise<void> {
    const log = await new JetStreamLogStore(this.ctx).openLog(id, { endOnClose: true });
    log.write(line, 'system');
    await log.close();
  }
}

/** The record of a queued build cancelled on request. */
export function cancelledRecord(record: BuildRecord, request: CancelRequest, now: Date): BuildRecord {
  return {
    ...record,
    status: 'cancelled',
    finishedAt: now.toISOString(),
    ...cancelFields(request),
    error: { phase: 'queue', code: 'E_CANCELLED', message: `${cancelMessage(request)}, before it started` },
  };
}

function requestOf(entry: KvEntry | null): CancelRequest | undefined {
  const value = valueOf(entry);
  if (!value) return undefined;
  try {
    const request = value.json<CancelRequest>();
    return typeof request?.id === 'string' && typeof request.by === 'string' ? request : undefined;
  } catch {
    return undefined;
  }
}
