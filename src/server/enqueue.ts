// The enqueue protocol of `serve`: how the job of a push that builds gets into the queue, over the
// JobIntake port alone (no HTTP), so the intake contract suite runs it against the fake and NATS.
//
// "503 means nothing was accepted" and "a 202 has its job and its record" must hold when NATS stops
// answering in the middle, and a write whose acknowledgement timed out may still be stored later
// (a SIGSTOPped nats-server reads what was sent once it runs again). So:
//  - the push is claimed and the `queued` record created together (see enqueue), and only then the
//    job published: every message serve leaves in the stream has had its record before it;
//  - a failed publish does not remove the record, it settles it: `failed` with NOT_ACCEPTED, a
//    compare-and-set on the revision the create returned. A worker that gets the job (stored after
//    all) finds a final record and acknowledges it without building (worker.ts, "already
//    finished"). The settle is sent at once on the same connection, behind the publish, so the
//    server reads it before any worker can have the job; if it does not answer within
//    SETTLE_WAIT_MS the answer is 503 and the settle is retried (below). If the compare-and-set
//    finds a worker's write, the job was stored and is being built: the answer is 202;
//  - a failed create may be stored later too: it is settled the same way (a `failed` record where
//    the key is still free or holds that attempt's `queued` record);
//  - what could not be settled at once waits in `unsettled` (memory of this process: the cheapest
//    design that covers what this serve answered; a serve killed mid-request leaves its record
//    to the reconciliation of nobody, as before). Every settleRetryMs, when a round trip to NATS
//    succeeds (after it, everything sent earlier on the connection has been read by the server),
//    each is settled; once NATS answers again that takes one interval.
//  - a redelivery of a webhook answered 503 finds the NOT_ACCEPTED record and revives it
//    (compare-and-set back to `queued`), then publishes (publish's `revived`).

import { describeError, isTransient } from '../core/errors.js';
import { initialRecord } from '../core/pipeline.js';
import { retry, sleep, type BackoffPolicy } from '../core/retry.js';
import type { BuildJob, BuildRecord, JobStatus } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import { NOT_ACCEPTED, type JobIntake } from './job-intake.js';

/** How long a 503 waits for its record's settle before answering (see enqueueClaimed). */
const SETTLE_WAIT_MS = 1000;
/** How long the settle loop waits for NATS to answer a round trip before trying its leftovers. */
const PROBE_TIMEOUT_MS = 1500;
/**
 * Retries of a write that failed transiently within server.queueWait: a JetStream cluster electing
 * a stream's new leader answers 503 "no responders" (or times out) for several seconds. Every write
 * of the protocol is idempotent (the claim and the record are conditional creates that recognise
 * their own earlier attempt; the job's Nats-Msg-Id is the delivery id), so a retry cannot queue a
 * push twice.
 */
const QUEUE_WAIT_POLICY: BackoffPolicy = { baseMs: 100, maxMs: 1000, jitter: 0.5 };

/** What became of a job handed to the queue; the webhook route turns it into an answer. */
export type EnqueueResult =
  /** 202: the job is in the stream and its `queued` record in the store (or a worker has it). */
  | { kind: 'queued'; jobId: string; duplicate: boolean }
  /** 202: a redelivery of a job whose build started or ended; nothing was published. */
  | { kind: 'known'; jobId: string; status: JobStatus }
  /** 200 ignored: another job holds this push (a replay under a fresh delivery id); nothing queued. */
  | { kind: 'replay'; jobId: string; holder: string }
  /** 503: nothing accepted; a record written on the way is settled as not accepted. */
  | { kind: 'not-accepted'; jobId: string; cause?: unknown };

type Created = { created: boolean; record: BuildRecord; revision?: number };

export interface JobEnqueuerOptions {
  intake: JobIntake;
  logger: Logger;
  /** How often records of webhooks answered 503 are settled again while unsettled. */
  settleRetryMs: number;
  /** server.queueWait: how long a webhook may wait for NATS (reconnecting, electing) before a 503; 0 answers at once. */
  queueWaitMs?: number;
}

export class JobEnqueuer {
  /** Records of webhooks answered 503 whose settle (notAccepted) is not known to be stored yet. */
  private readonly unsettled = new Map<string, { failed: BuildRecord; revision?: number }>();
  private settling = false;
  private readonly stopping = new AbortController();

  constructor(private readonly options: JobEnqueuerOptions) {}

  /**
   * Queues the job of a push (`pushKey`: pushClaimKey). `onDecided` is told the result as soon as
   * it is known, before any clean-up that follows it (a replay's record is forgotten after), so a
   * client hanging up meanwhile is not counted twice.
   */
  async enqueue(job: BuildJob, pushKey: string, onDecided?: (result: EnqueueResult) => void): Promise<EnqueueResult> {
    const decide = (result: EnqueueResult): EnqueueResult => {
      onDecided?.(result);
      return result;
    };
    const { intake, logger } = this.options;
    const deadline = Date.now() + (this.options.queueWaitMs ?? 0);
    // A queue known to be away answers 503 once it has not come back within queueWait, before
    // anything is written.
    if (!(await this.waitForQueue(deadline))) return decide({ kind: 'not-accepted', jobId: job.id });
    // Replays build nothing: X-GitHub-Delivery is not signed, so a signed push body sent again
    // under a fresh delivery id would be a new job. The first job to claim the push (repository,
    // ref, before, after) keeps it; a redelivery has the same job id and passes. A claim is never
    // undone: after a 503 the same delivery passes again, and GitHub redelivers by delivery id.
    // The claim and the queued record are written together, in one round trip: awaited one after
    // the other they made three sequential NATS round trips per webhook, and serve's throughput
    // fell from 0.62 to 0.53 of the bare receiver's (bench webhook-ingest). Nothing is published
    // before both are in, so a record written for a push that another job holds is only removed.
    const record = initialRecord(job);
    const [claim, created] = await Promise.allSettled([
      this.withinWait(deadline, () => intake.claimPush(pushKey, job.id)),
      this.withinWait(deadline, () => intake.createQueued(record)),
    ]);
    if (claim.status === 'rejected') {
      const result = decide({ kind: 'not-accepted', jobId: job.id, cause: claim.reason });
      logger.warn({ jobId: job.id, err: describeError(claim.reason) }, 'cannot claim the push');
      await this.undoCreate(record, created);
      return result;
    }
    if (!claim.value.claimed) {
      const result = decide({ kind: 'replay', jobId: job.id, holder: claim.value.jobId });
      await this.undoCreate(record, created);
      return result;
    }
    return this.enqueueClaimed(job, record, created, decide, deadline);
  }

  /** True once the queue is connected and answering; false if it is not by the deadline. */
  private async waitForQueue(deadline: number): Promise<boolean> {
    const { intake } = this.options;
    for (let attempt = 0; intake.health().nats !== 'connected'; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0 || this.stopping.signal.aborted) return false;
      if (intake.health().nats === 'unresponsive') await intake.probe(Math.min(left, PROBE_TIMEOUT_MS));
      else await sleep(Math.min(left, 100), this.stopping.signal);
    }
    return true;
  }

  /** `write`, retried while it fails transiently and the deadline has not passed. */
  private withinWait<T>(deadline: number, write: () => Promise<T>): Promise<T> {
    const left = deadline - Date.now();
    if (left <= 0) return write();
    return retry(write, {
      policy: QUEUE_WAIT_POLICY,
      deadlineMs: left,
      retryable: (err): err is unknown => isTransient(err) && !this.stopping.signal.aborted,
      onRetry: (err, delayMs, attempt) => this.options.logger.info({ err: describeError(err), delayMs, attempt }, 'the build queue did not take a write; retrying within server.queueWait'),
    });
  }

  /** The record of a push this job does not hold: removed, or (a create whose answer was lost may land later) settled like any record of a 503. */
  private async undoCreate(record: BuildRecord, created: PromiseSettledResult<Created>): Promise<void> {
    if (created.status === 'fulfilled' && created.value.created) await this.forget(record, created.value.revision);
    else if (created.status === 'rejected') this.settleLater(notAccepted(record, created.reason));
  }

  /** The queued record, then the job (see the protocol at the top of this file). */
  private async enqueueClaimed(job: BuildJob, record: BuildRecord, stored: PromiseSettledResult<Created>, decide: (result: EnqueueResult) => EnqueueResult, deadline: number): Promise<EnqueueResult> {
    const { intake, logger } = this.options;
    if (stored.status === 'rejected') {
      const result = decide({ kind: 'not-accepted', jobId: job.id, cause: stored.reason });
      logger.warn({ jobId: job.id, err: describeError(stored.reason) }, 'cannot store the queued record; settling it as not accepted');
      this.settleLater(notAccepted(record, stored.reason));
      return result;
    }
    let created = stored.value;
    let revived: number | undefined;
    if (!created.created && isNotAccepted(created.record) && created.revision !== undefined) {
      // A redelivery of a webhook that was answered 503: queue it now.
      let again: { revived: boolean; revision?: number };
      try {
        again = await intake.reviveQueued(record, created.revision);
      } catch (err) {
        const result = decide({ kind: 'not-accepted', jobId: job.id, cause: err });
        this.settleLater(notAccepted(record, err));
        return result;
      }
      // Another redelivery revived it first: that one publishes and answers.
      if (!again.revived) return decide({ kind: 'not-accepted', jobId: job.id });
      revived = again.revision;
      created = { created: true, record, ...(again.revision !== undefined ? { revision: again.revision } : {}) };
    }
    if (!created.created && created.record.status !== 'queued') {
      // Redelivered after its build started or ended: nothing to publish.
      return decide({ kind: 'known', jobId: job.id, status: created.record.status });
    }
    try {
      // A redelivery of a still-queued job publishes again with the same Nats-Msg-Id: within the
      // stream's duplicate window JetStream drops it, and if the first publish never happened
      // (serve died in between) this one queues it.
      const published = await this.withinWait(deadline, () => intake.publish(job, revived !== undefined ? { revived } : {}));
      return decide({ kind: 'queued', jobId: job.id, duplicate: published.duplicate || !created.created });
    } catch (err) {
      // A redelivery's publish failing leaves the record of the attempt that created it alone.
      if (created.created && (await this.settle(notAccepted(record, err), created.revision)) === 'taken') {
        // The publish was stored and a worker has the job: it was accepted after all.
        const result = decide({ kind: 'queued', jobId: job.id, duplicate: false });
        logger.warn({ jobId: job.id, err: describeError(err) }, 'publish unacknowledged, but a worker already took the job');
        return result;
      }
      const result = decide({ kind: 'not-accepted', jobId: job.id, cause: err });
      logger.warn({ jobId: job.id, err: describeError(err) }, 'publish failed; the record is settled as not accepted');
      return result;
    }
  }

  /** Removes a queued record no job was published for (a replay's, a failed claim's); settles it if that fails. */
  private async forget(record: BuildRecord, revision: number | undefined): Promise<void> {
    try {
      await this.options.intake.discard(record.id);
    } catch (err) {
      await this.settle(notAccepted(record, err), revision);
    }
  }

  private settleLater(failed: BuildRecord): void {
    this.unsettled.set(failed.id, { failed });
    this.scheduleSettle();
  }

  /** settleNotAccepted, waited for at most SETTLE_WAIT_MS; undecided: retried in the background. */
  private async settle(failed: BuildRecord, revision: number | undefined): Promise<'settled' | 'taken' | 'pending'> {
    const attempt = this.options.intake.settleNotAccepted(failed, revision);
    let timer: NodeJS.Timeout | undefined;
    const wait = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), SETTLE_WAIT_MS)));
    const result = await Promise.race([attempt.catch(() => 'pending' as const), wait]);
    clearTimeout(timer);
    if (result === 'pending') {
      this.unsettled.set(failed.id, { failed, ...(revision !== undefined ? { revision } : {}) });
      this.scheduleSettle();
    }
    return result;
  }

  /** One loop at a time, while anything is unsettled: a fixed interval, not a backoff (each round is one cheap round trip). */
  private scheduleSettle(): void {
    if (this.settling || this.stopping.signal.aborted) return;
    this.settling = true;
    void this.settleLoop();
  }

  private async settleLoop(): Promise<void> {
    try {
      for (;;) {
        await sleep(this.options.settleRetryMs, this.stopping.signal, { unref: true });
        if (this.stopping.signal.aborted) return;
        await this.settleLeftovers();
        // Checked and cleared (finally) in one synchronous step, so a record added meanwhile starts a new loop.
        if (this.unsettled.size === 0) return;
      }
    } finally {
      this.settling = false;
    }
  }

  private async settleLeftovers(): Promise<void> {
    const { intake, logger } = this.options;
    if ((await intake.probe(PROBE_TIMEOUT_MS)).nats !== 'connected') return;
    for (const [id, { failed, revision }] of [...this.unsettled]) {
      try {
        const result = await intake.settleNotAccepted(failed, revision);
        this.unsettled.delete(id);
        if (result === 'taken' && revision !== undefined) {
          logger.error({ jobId: id }, 'a webhook answered 503 was built: a worker took its job before the record was settled');
        } else {
          logger.info({ jobId: id, result }, 'record of a webhook answered 503 settled');
        }
      } catch (err) {
        logger.warn({ jobId: id, err: describeError(err) }, 'cannot settle the record yet; will retry');
        break;
      }
    }
  }

  /** Ends the settle loop (serve is stopping; what is left stays unsettled, as in a killed serve). */
  stop(): void {
    this.stopping.abort();
  }
}

/** The record of a webhook answered 503: final, so a worker that gets its job builds nothing. */
export function notAccepted(record: BuildRecord, cause: unknown): BuildRecord {
  return {
    ...record,
    status: 'failed',
    finishedAt: new Date().toISOString(),
    error: {
      phase: 'queue',
      code: NOT_ACCEPTED,
      message: `Not accepted: the webhook was answered 503 because the build queue (NATS JetStream) did not answer (${describeError(cause)}); nothing was built. Redeliver it from GitHub (Recent Deliveries → Redeliver) to queue it again.`,
    },
  };
}

export function isNotAccepted(record: BuildRecord): boolean {
  return record.status === 'failed' && record.error?.code === NOT_ACCEPTED;
}
