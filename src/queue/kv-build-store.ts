// BuildRecords in the JetStream KV bucket (`nats.statusBucket`): key `build.<id>` → record JSON.
// Status lives in NATS, not on a worker, so it survives any worker restart and every `serve`
// replica answers the same.

import { DeliverPolicy, type KvEntry } from 'nats';
import { checkedListLimit, matchesBuildFilter, newestFirst } from '../core/build-list.js';
import type { BuildListFilter, BuildStore } from '../core/ports.js';
import { isFinalStatus, type BuildRecord } from '../core/types.js';
import { buildKey } from './job-queue.js';
import { readEntry, valueOf, writeIfRevision } from './kv-conditional.js';
import { natsUnavailable, type NatsContext } from './nats.js';

/** Messages list() asks the server for at a time. */
const LIST_BATCH = 512;
/** The header of a KV delete or purge marker (nats.js's kvOperationHdr). */
const KV_OPERATION_HEADER = 'KV-Operation';

export interface KvListOptions {
  /** The recent windows list() tries before reading everything, shortest first. */
  windowsMs: number[];
  /** How far the writers' clocks may be ahead of the NATS server's. */
  clockSkewMs: number;
}

const HOUR_MS = 60 * 60 * 1000;
export const DEFAULT_LIST_OPTIONS: KvListOptions = { windowsMs: [HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS], clockSkewMs: 5 * 60 * 1000 };

export class KvBuildStore implements BuildStore {
  constructor(
    private readonly ctx: NatsContext,
    private readonly listOptions: KvListOptions = DEFAULT_LIST_OPTIONS,
  ) {}

  async put(record: BuildRecord): Promise<void> {
    try {
      await this.ctx.kv.put(buildKey(record.id), JSON.stringify(record));
    } catch (err) {
      throw natsUnavailable(`Cannot store the record of build ${record.id} in bucket ${this.ctx.config.statusBucket}`, err, this.ctx.config);
    }
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    return recordOf(await readEntry(this.ctx, buildKey(id), `the record of build ${id}`));
  }

  /**
   * Writes the record unless one exists: a redelivered webhook (or a worker that already started
   * the job) must not be overwritten by a `queued` record.
   */
  createIfAbsent(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord; revision: number }> {
    return writeIfRevision<{ created: boolean; record: BuildRecord; revision: number }>(this.ctx, {
      key: buildKey(record.id),
      data: JSON.stringify(record),
      expected: 0,
      written: (revision) => ({ created: true, record, revision }),
      onConflict: (entry) => {
        const existing = recordOf(entry);
        // Deleted (a marker is the key's last revision), or changed again meanwhile: try again.
        return existing ? { done: { created: false, record: existing, revision: entry!.revision } } : { retryAt: entry?.revision ?? 0 };
      },
      what: `the record of build ${record.id}`,
    });
  }

  async delete(id: string): Promise<void> {
    try {
      await this.ctx.kv.delete(buildKey(id));
    } catch (err) {
      throw natsUnavailable(`Cannot delete the record of build ${id}`, err, this.ctx.config);
    }
  }

  /**
   * Newest first by createdAt, filtered by repository full name, branch and status.
   *
   * A listing with a limit reads only the records written in a recent window (1 hour, then a day,
   * then a week, then everything) and stops at the first window that must hold the answer: the
   * bucket keeps one revision per build, in write order, and a build is written no earlier than it
   * was created, so every build created after the window opened is in it. When the `limit`-th
   * newest matching record was created inside the window (less a margin for clock skew between
   * the writer and the NATS server), nothing outside can be newer.
   */
  async list(filter: BuildListFilter = {}): Promise<BuildRecord[]> {
    const limit = checkedListLimit(filter);
    const matching = (records: BuildRecord[]) => records.filter((record) => matchesBuildFilter(record, filter)).sort(newestFirst);
    if (limit !== undefined) {
      for (const windowMs of this.listOptions.windowsMs) {
        const since = Date.now() - windowMs;
        const found = matching(await this.readRecords(since));
        const last = found[limit - 1];
        if (last && Date.parse(last.createdAt) >= since + this.listOptions.clockSkewMs) return found.slice(0, limit);
      }
    }
    return matching(await this.readRecords(undefined)).slice(0, limit);
  }

  /**
   * Every record written at or after `since` (ms since the epoch, NATS server time), or every
   * record: one ordered consumer streams the bucket's messages, no request per key.
   */
  private async readRecords(since: number | undefined): Promise<BuildRecord[]> {
    const bucket = this.ctx.config.statusBucket;
    const prefix = `$KV.${bucket}.`;
    const records = new Map<string, BuildRecord>();
    try {
      const consumer = await this.ctx.js.consumers.get(`KV_${bucket}`, {
        // One subject as a string: a list needs nats-server 2.10 (Debian 12 ships 2.9).
        filterSubjects: `${prefix}build.>`,
        inactive_threshold: 30_000,
        // Without a start time: from the first message (nats.js starts at sequence 1).
        ...(since === undefined ? {} : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(since).toISOString() }),
      });
      try {
        // Creates the (ephemeral, in-memory) consumer; consume() below reads through it.
        const total = (await consumer.info(true)).num_pending;
        let read = 0;
        if (total > 0) {
          for await (const message of await consumer.consume({ max_messages: LIST_BATCH })) {
            read += 1;
            const key = message.subject.slice(prefix.length);
            const operation = message.headers?.get(KV_OPERATION_HEADER);
            if (operation === 'DEL' || operation === 'PURGE' || message.data.length === 0) records.delete(key);
            else records.set(key, message.json<BuildRecord>());
            // Records written while we read come after: the ones there were at the start suffice.
            if (message.info.pending === 0 || read >= total) break;
          }
        }
      } finally {
        await consumer.delete().catch(() => undefined);
      }
    } catch (err) {
      throw natsUnavailable(`Cannot list the builds in bucket ${bucket}`, err, this.ctx.config);
    }
    return [...records.values()];
  }

  /**
   * The record as it is now (when it exists) and every change after, ending after a final status
   * (succeeded, failed, cancelled), a deletion, or when `signal` aborts.
   */
  async *watch(id: string, signal: AbortSignal): AsyncIterable<BuildRecord> {
    if (signal.aborted) return;
    let watcher;
    try {
      watcher = await this.ctx.kv.watch({ key: buildKey(id) });
    } catch (err) {
      throw natsUnavailable(`Cannot watch build ${id}`, err, this.ctx.config);
    }
    const onAbort = () => watcher.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const entry of watcher) {
        if (entry.operation !== 'PUT') return;
        const record = entry.json<BuildRecord>();
        yield record;
        if (isFinalStatus(record.status)) return;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      watcher.stop();
    }
  }
}

function recordOf(entry: KvEntry | null): BuildRecord | undefined {
  return valueOf(entry)?.json<BuildRecord>();
}
