// What `serve` needs from the queue and the status store, as one small interface: the HTTP layer is
// unit-tested against a fake, and queue-intake.ts implements it over src/queue (JetStream + KV).

import type { BuildListFilter } from '../core/ports.js';
import type { BuildJob, BuildRecord } from '../core/types.js';

export interface IntakeHealth {
  /** `unresponsive`: connected, but the last round trip got no answer in time (a stalled server). */
  nats: 'connected' | 'disconnected' | 'unresponsive';
}

/** The error code of a record serve settled as not accepted (it answered the webhook non-2xx). */
export const NOT_ACCEPTED = 'E_NOT_ACCEPTED';

/** One change of a record in the status store (a watch over every record). */
export interface RecordChange {
  id: string;
  /** Undefined when the record was deleted. */
  record?: BuildRecord;
  /** Part of the state present when the watch started, not a change after it. */
  initial: boolean;
}

export interface JobIntake {
  /**
   * Cheap and synchronous, read on every webhook so a queue known to be away answers 503 at once:
   * the connection's events and the outcome of the last round trip (probe).
   */
  health(): IntakeHealth;
  /** A real round trip to NATS within `timeoutMs`: what `/health` answers. Never throws. */
  probe(timeoutMs: number): Promise<IntakeHealth>;
  /**
   * Stores the `queued` record unless one with its id exists (a redelivery). `revision`: the
   * record's revision in the store (what settleNotAccepted and reviveQueued compare against).
   */
  createQueued(record: BuildRecord): Promise<{ created: boolean; record: BuildRecord; revision?: number }>;
  /**
   * Publishes the job; resolves once JetStream acknowledged it. `duplicate`: the message id was seen.
   * `revived`: the revision of a record reviveQueued brought back; a message id seen before whose
   * message is gone from the stream is then published again under a message id of its own.
   */
  publish(job: BuildJob, options?: { revived?: number }): Promise<{ duplicate: boolean }>;
  /**
   * Settles a record whose webhook is answered non-2xx: writes `failed` (the given record, code
   * NOT_ACCEPTED) over it if it is still the `queued` record of that attempt (same createdAt; at
   * `revision` when known), or where it is absent (an in-doubt create that lands later then finds
   * the key taken). `taken`: a worker or another delivery owns the record now; it is left alone.
   */
  settleNotAccepted(failed: BuildRecord, revision?: number): Promise<'settled' | 'taken'>;
  /** Replaces a record settled NOT_ACCEPTED (at `revision`) by a fresh `queued` one: a redelivery. */
  reviveQueued(record: BuildRecord, revision: number): Promise<{ revived: boolean; revision?: number }>;
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
