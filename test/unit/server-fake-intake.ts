// An in-memory JobIntake for the server's unit tests: records in a Map, published jobs in an array
// deduplicated by message id like JetStream, and switches to make NATS "fail" at each step. It
// keeps the promises of QueueIntake, no more (the intake contract suite runs both): the listing's
// filter and order are the stores' own (core/build-list.ts), and the queue depth counts the jobs
// published and not yet consumed by a worker.

import { matchesBuildFilter, newestFirst } from '../../src/core/build-list.js';
import type { BuildListFilter } from '../../src/core/ports.js';
import type { BuildJob, BuildRecord } from '../../src/core/types.js';
import { ServiceUnavailableError } from '../../src/core/errors.js';
import { NOT_ACCEPTED, type IntakeHealth, type JobIntake, type RecordChange } from '../../src/server/job-intake.js';

export class FakeIntake implements JobIntake {
  readonly records = new Map<string, BuildRecord>();
  /** Every job stored in the "stream", in order. */
  readonly published: BuildJob[] = [];
  /** Those no worker has taken yet (consume() takes one). */
  readonly waiting: BuildJob[] = [];
  readonly logs = new Map<string, string[]>();
  /** Push claims: pushClaimKey → the job id holding it. */
  readonly claims = new Map<string, string>();
  private readonly msgIds = new Set<string>();
  connected = true;
  /** Connected, but round trips time out (a stalled server). */
  unresponsive = false;
  /** Record revisions, like the KV bucket's. */
  private readonly revisions = new Map<string, number>();
  private revision = 0;
  failCreate = false;
  failPublish = false;
  failDiscard = false;
  failClaim = false;
  /**
   * The next this-many publishes and record creates fail as NATS fails while a cluster elects a
   * stream leader: transiently (503 no responders), nothing stored.
   */
  electionFailures = 0;
  /** Resolves a log follower's wait: push lines, then end(). */
  private readonly followers = new Map<string, Array<() => void>>();
  private readonly ended = new Set<string>();
  private readonly changes: Array<(change: RecordChange) => void> = [];

  health(): IntakeHealth {
    return { nats: !this.connected ? 'disconnected' : this.unresponsive ? 'unresponsive' : 'connected' };
  }

  async probe(): Promise<IntakeHealth> {
    return this.health();
  }

  private storeRecord(record: BuildRecord): number {
    this.records.set(record.id, structuredClone(record));
    this.revisions.set(record.id, ++this.revision);
    return this.revision;
  }

  async createQueued(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord; revision?: number }> {
    if (this.failCreate || !this.connected) throw new Error('fake: KV create timed out');
    this.electing('create');
    const existing = this.records.get(record.id);
    if (existing) return { created: false, record: existing, revision: this.revisions.get(record.id)! };
    return { created: true, record, revision: this.storeRecord(record) };
  }

  async settleNotAccepted(failed: BuildRecord, revision?: number): Promise<'settled' | 'taken'> {
    if (this.failDiscard || !this.connected) throw new Error('fake: KV update timed out');
    const existing = this.records.get(failed.id);
    if (existing && revision !== undefined && this.revisions.get(failed.id) === revision) {
      this.storeRecord(failed);
      return 'settled';
    }
    if (existing && existing.createdAt !== failed.createdAt) return 'taken';
    if (existing?.status === 'failed' && existing.error?.code === NOT_ACCEPTED) return 'settled';
    if (existing && existing.status !== 'queued') return 'taken';
    this.storeRecord(failed);
    return 'settled';
  }

  async reviveQueued(record: BuildRecord, revision: number): Promise<{ revived: boolean; revision?: number }> {
    if (this.failCreate || !this.connected) throw new Error('fake: KV update timed out');
    if (this.revisions.get(record.id) !== revision) return { revived: false };
    return { revived: true, revision: this.storeRecord(record) };
  }

  private electing(what: string): void {
    if (this.electionFailures <= 0) return;
    this.electionFailures--;
    throw new ServiceUnavailableError(`fake: ${what}: no stream answered (503 no responders)`);
  }

  async publish(job: BuildJob, options: { revived?: number } = {}): Promise<{ duplicate: boolean }> {
    if (this.failPublish || !this.connected) throw new Error('fake: publish timed out');
    this.electing('publish');
    const msgId = job.deliveryId ?? job.id;
    if (!this.msgIds.has(msgId)) {
      this.append(msgId, job);
      return { duplicate: false };
    }
    if (options.revived === undefined) return { duplicate: true };
    // Like QueueIntake: a revived record's first message, still waiting, is this job's message now;
    // taken by a worker already, the job is queued again under a message id of its own.
    if (!this.waiting.some((j) => j.id === job.id)) {
      const own = `${msgId}~${options.revived}`;
      if (!this.msgIds.has(own)) this.append(own, job);
    }
    return { duplicate: false };
  }

  private append(msgId: string, job: BuildJob): void {
    this.msgIds.add(msgId);
    this.published.push(structuredClone(job));
    this.waiting.push(structuredClone(job));
  }

  /** A worker takes the job's waiting messages and acknowledges them (a work-queue stream drops them). */
  consume(jobId: string): number {
    let taken = 0;
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i]!.id !== jobId) continue;
      this.waiting.splice(i, 1);
      taken++;
    }
    return taken;
  }

  /** A write of the record by someone else (a worker starting the build): a new revision. */
  putRecord(record: BuildRecord): void {
    this.storeRecord(record);
  }

  async claimPush(key: string, jobId: string): Promise<{ jobId: string; claimed: boolean }> {
    if (this.failClaim || !this.connected) throw new Error('fake: KV create timed out');
    const holder = this.claims.get(key);
    if (holder !== undefined) return { jobId: holder, claimed: holder === jobId };
    this.claims.set(key, jobId);
    return { jobId, claimed: true };
  }

  async discard(id: string): Promise<void> {
    if (this.failDiscard || !this.connected) throw new Error('fake: delete timed out');
    this.records.delete(id);
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    if (!this.connected) throw new Error('fake: disconnected');
    return this.records.get(id);
  }

  async list(filter: BuildListFilter): Promise<BuildRecord[]> {
    return [...this.records.values()]
      .filter((r) => matchesBuildFilter(r, filter))
      .sort(newestFirst)
      .slice(0, filter.limit ?? Infinity);
  }

  appendLog(id: string, line: string): void {
    this.logs.set(id, [...(this.logs.get(id) ?? []), line]);
    for (const wake of this.followers.get(id) ?? []) wake();
  }

  endLog(id: string): void {
    this.ended.add(id);
    for (const wake of this.followers.get(id) ?? []) wake();
  }

  async *readLog(id: string, options: { follow: boolean; signal: AbortSignal }): AsyncIterable<string> {
    let index = 0;
    for (;;) {
      const lines = this.logs.get(id) ?? [];
      while (index < lines.length) yield lines[index++]!;
      if (!options.follow || this.ended.has(id) || options.signal.aborted) return;
      await new Promise<void>((resolve) => {
        const list = this.followers.get(id) ?? [];
        list.push(resolve);
        this.followers.set(id, list);
        options.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    }
  }

  async queueDepth(): Promise<number> {
    return this.waiting.length;
  }

  emit(change: RecordChange): void {
    for (const listener of this.changes) listener(change);
  }

  async *watchRecords(signal: AbortSignal): AsyncIterable<RecordChange> {
    const pending: RecordChange[] = [];
    let wake: (() => void) | undefined;
    const listener = (change: RecordChange) => {
      pending.push(change);
      wake?.();
    };
    this.changes.push(listener);
    signal.addEventListener('abort', () => wake?.(), { once: true });
    try {
      while (!signal.aborted) {
        if (pending.length === 0) await new Promise<void>((r) => (wake = r));
        while (pending.length > 0) yield pending.shift()!;
      }
    } finally {
      this.changes.splice(this.changes.indexOf(listener), 1);
    }
  }

  async close(): Promise<void> {}
}
