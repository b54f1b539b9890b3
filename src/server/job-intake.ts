// What `serve` needs from the queue and the status store, as one small interface: the HTTP layer is
// unit-tested against a fake, and queue-intake.ts implements it over src/queue (JetStream + KV).

import type { BuildListFilter } from '../core/ports.js';
import type { BuildJob, BuildRecord } from '../core/types.js';

export interface IntakeHealth {
  nats: 'connected' | 'disconnected';
}

/** One change of a record in the status store (a watch over every record). */
export interface RecordChange {
  id: string;
  /** Undefined when the record was deleted. */
  record?: BuildRecord;
  /** Part of the state present when the watch started, not a change after it. */
  initial: boolean;
}

export interface JobIntake {
  /** Cheap and synchronous: read on every webhook, so a disconnected queue answers 503 at once. */
  health(): IntakeHealth;
  /** Stores the `queued` record unless one with its id exists (a redelivery). */
  createQueued(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord }>;
  /** Publishes the job; resolves once JetStream acknowledged it. `duplicate`: the message id was seen. */
  publish(job: BuildJob): Promise<{ duplicate: boolean }>;
  /** Removes a record this intake created whose job could not be published. */
  discard(id: string): Promise<void>;
  /**
   * Claims a push (pushClaimKey: repository, ref, before, after) for a job, create-if-absent: the
   * first job to claim it keeps it for good. `claimed` is true when the claim is `jobId`'s, now
   * or from an earlier call (a redelivery); otherwise `jobId` is the job that holds it.
   */
  claimPush(key: string, jobId: string): Promise<{ jobId: string; claimed: boolean }>;
  get(id: string): Promise<BuildRecord | undefined>;
  list(filter: BuildListFilter): Promise<BuildRecord[]>;
  /** The build's log lines; with `follow`, continues until the build ends or `signal` aborts. */
  readLog(id: string, options: { follow: boolean; signal: AbortSignal }): AsyncIterable<string>;
  /** Jobs waiting in the stream. */
  queueDepth(): Promise<number>;
  /** Every record change, for metrics; ends when `signal` aborts. */
  watchRecords?(signal: AbortSignal): AsyncIterable<RecordChange>;
  close(): Promise<void>;
}
