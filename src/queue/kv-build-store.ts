// BuildRecords in the JetStream KV bucket (`nats.statusBucket`): key `build.<id>` → record JSON.
// Status lives in NATS, not on a worker, so it survives any worker restart and every `serve`
// replica answers the same.

import type { KvEntry } from 'nats';
import type { BuildListFilter, BuildStore } from '../core/ports.js';
import { isFinalStatus, type BuildRecord } from '../core/types.js';
import { buildKey } from './job-queue.js';
import { JetStreamPublishError, WRONG_LAST_SEQUENCE } from './js-publisher.js';
import { natsUnavailable, type NatsContext } from './nats.js';

/** How many records list() reads at once. */
const READ_PARALLELISM = 32;

export class KvBuildStore implements BuildStore {
  constructor(private readonly ctx: NatsContext) {}

  async put(record: BuildRecord): Promise<void> {
    try {
      await this.ctx.kv.put(buildKey(record.id), JSON.stringify(record));
    } catch (err) {
      throw natsUnavailable(`Cannot store the record of build ${record.id} in bucket ${this.ctx.config.statusBucket}`, err, this.ctx.config);
    }
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    let entry: KvEntry | null;
    try {
      entry = await this.ctx.kv.get(buildKey(id));
    } catch (err) {
      throw natsUnavailable(`Cannot read the record of build ${id}`, err, this.ctx.config);
    }
    return recordOf(entry);
  }

  /**
   * Writes the record unless one exists: a redelivered webhook (or a worker that already started
   * the job) must not be overwritten by a `queued` record.
   */
  async createIfAbsent(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord }> {
    const key = buildKey(record.id);
    const subject = `$KV.${this.ctx.config.statusBucket}.${key}`;
    const data = JSON.stringify(record);
    // The key's last revision we expect: 0 (never written), or a delete marker's.
    let expected = 0;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.ctx.publisher.publish(subject, data, { expectLastSubjectSequence: expected });
        return { created: true, record };
      } catch (err) {
        if (!(err instanceof JetStreamPublishError && err.errCode === WRONG_LAST_SEQUENCE)) {
          throw natsUnavailable(`Cannot store the record of build ${record.id}`, err, this.ctx.config);
        }
      }
      let entry: KvEntry | null;
      try {
        entry = await this.ctx.kv.get(key);
      } catch (err) {
        throw natsUnavailable(`Cannot read the record of build ${record.id}`, err, this.ctx.config);
      }
      const existing = recordOf(entry);
      if (existing) return { created: false, record: existing };
      // Deleted (a marker is the key's last revision), or changed again meanwhile: try again.
      expected = entry?.revision ?? 0;
    }
    throw natsUnavailable(`Cannot store the record of build ${record.id}`, new Error('the key kept changing'), this.ctx.config);
  }

  async delete(id: string): Promise<void> {
    try {
      await this.ctx.kv.delete(buildKey(id));
    } catch (err) {
      throw natsUnavailable(`Cannot delete the record of build ${id}`, err, this.ctx.config);
    }
  }

  /** Newest first by createdAt, filtered by repository full name, branch and status. */
  async list(filter: BuildListFilter = {}): Promise<BuildRecord[]> {
    const records: BuildRecord[] = [];
    try {
      const keys: string[] = [];
      for await (const key of await this.ctx.kv.keys('build.>')) keys.push(key);
      for (let i = 0; i < keys.length; i += READ_PARALLELISM) {
        const entries = await Promise.all(keys.slice(i, i + READ_PARALLELISM).map((k) => this.ctx.kv.get(k)));
        for (const entry of entries) {
          const record = recordOf(entry);
          if (record && matches(record, filter)) records.push(record);
        }
      }
    } catch (err) {
      throw natsUnavailable(`Cannot list the builds in bucket ${this.ctx.config.statusBucket}`, err, this.ctx.config);
    }
    records.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1));
    return filter.limit !== undefined && filter.limit >= 0 ? records.slice(0, filter.limit) : records;
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
  if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
  return entry.json<BuildRecord>();
}

function matches(record: BuildRecord, filter: BuildListFilter): boolean {
  if (filter.repo && record.repository.fullName.toLowerCase() !== filter.repo.toLowerCase()) return false;
  if (filter.branch && record.repository.branch !== filter.branch) return false;
  if (filter.status && record.status !== filter.status) return false;
  return true;
}
