// Settling one delivery with the queue, once its outcome is decided (outcome.ts): the record and
// the log are written first, then the queue is told. The final record is written before the ack,
// so a crash in between only causes a redelivery, which is recognised (the record is already
// final) and acknowledged without building again.

import { cancelFields, type CancelRequest } from '../core/cancel-request.js';
import { describeError, type OciBuildError } from '../core/errors.js';
import type { BuildStore, Delivery, JobLogStore, PushMark } from '../core/ports.js';
import { isFinalStatus, type BuildJob, type BuildRecord } from '../core/types.js';
import { DELIVERY_NOTE, withStoreRetry, type AttemptLogs } from './job-attempt.js';
import type { CompiledWorkerOptions, WorkerLogger } from './worker-options.js';

/** A delivery this worker has taken in, from its arrival to its settlement. */
export interface ActiveJob {
  job: BuildJob;
  delivery: Delivery;
  seq: number;
  attempt: number;
  /** The supersede key (branch jobs, when cancelSuperseded is on). */
  key?: string;
  startedAt: string;
  controller: AbortController;
  logger: WorkerLogger;
  /** Set when a newer push superseded this build. */
  supersededBy?: PushMark;
  /** Set when shutdown cancelled this build: it goes back to the queue. */
  handBack?: boolean;
  /** Set when a person cancelled this build (cancel-on-request.ts). */
  cancelRequest?: CancelRequest;
}

export interface WorkerStats {
  started: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Ended `skipped` (the repository's `.oci-build.yaml` excludes the branch): acknowledged, never retried. */
  skipped: number;
  retried: number;
  handedBack: number;
  superseded: number;
}

/** What settling needs of the worker. */
export interface SettlementContext {
  readonly name: string;
  readonly options: Pick<CompiledWorkerOptions, 'maxDeliveries' | 'storeRetryMs' | 'notifier'>;
  readonly store: BuildStore;
  readonly logs: JobLogStore;
  readonly stats: WorkerStats;
}

export function supersedeMessage(job: BuildJob, newerId: string): string {
  const what = [job.repository?.fullName, job.repository?.branch].filter(Boolean).join(' ');
  return `Superseded by build ${newerId}, a newer push${what ? ` to ${what}` : ''}`;
}

/**
 * Writes the final record, ends the log, then acknowledges. If the record cannot be written
 * (NATS away too long) the job is not acknowledged: it comes back and is settled again.
 */
export async function settleFinal(
  ctx: SettlementContext,
  active: ActiveJob,
  record: BuildRecord,
  error: Pick<OciBuildError, 'code' | 'message'> | undefined,
  status: BuildRecord['status'],
  extra: { logs?: AttemptLogs; durationMs?: number; started?: boolean } = {},
): Promise<void> {
  const { job, logger } = active;
  const final: BuildRecord = { ...record, status: isFinalStatus(status) ? status : 'failed' };
  final.finishedAt ??= new Date().toISOString();
  if (error && (!final.error || final.error.message !== error.message)) {
    const lastPhase = [...final.phases].reverse().find((p) => p.status === 'failed' || p.status === 'cancelled');
    final.error = { phase: lastPhase?.name ?? 'queue', code: error.code, message: error.message };
  }
  if (active.supersededBy && final.status === 'cancelled') final.cancelledBy = active.supersededBy.id;
  if (active.cancelRequest && final.status === 'cancelled') Object.assign(final, cancelFields(active.cancelRequest));
  if (final.worker === undefined && extra.started !== false) final.worker = ctx.name;
  if (extra.logs?.opened === undefined && error) {
    // The pipeline never ran (or never opened its log): say why in the log.
    const log = await ctx.logs.openLog(job.id, { endOnClose: false });
    log.write(`error: ${error.message}`, 'system');
    await log.close();
  }
  await storeRetry(ctx, () => ctx.store.put(final), logger);
  // In the background: GitHub never holds the settlement up (src/notify).
  ctx.options.notifier?.finished(final, job);
  await storeRetry(ctx, () => ctx.logs.end(job.id), logger).catch((err: unknown) => logger.warn({ err: describeError(err) }, 'could not end the build log'));
  await acknowledge(active.delivery, logger);
  if (final.status === 'succeeded') ctx.stats.succeeded++;
  else if (final.status === 'cancelled') ctx.stats.cancelled++;
  else if (final.status === 'skipped') ctx.stats.skipped++;
  else ctx.stats.failed++;
  const fields = {
    status: final.status,
    ...(extra.durationMs !== undefined ? { durationMs: extra.durationMs } : {}),
    ...(final.repository.commit ? { commit: final.repository.commit } : {}),
    ...(final.error ? { errorCode: final.error.code, error: final.error.message } : {}),
    ...(final.cancelledBy ? { cancelledBy: final.cancelledBy } : {}),
    images: final.images.map((i) => `${i.repository}:${i.tags[0] ?? ''}${i.digest ? `@${i.digest}` : ''}`),
  };
  if (final.status === 'succeeded' || final.status === 'skipped') logger.info({ ...fields, ...(final.skipReason ? { skipReason: final.skipReason } : {}) }, 'job finished');
  else logger.warn(fields, 'job finished');
}

/** Puts the record back to `queued` with `note`, ends nothing, and hands the job back after `delayMs`. */
export async function settleRetry(ctx: SettlementContext, active: ActiveJob, record: BuildRecord, delayMs: number, note: string): Promise<void> {
  const { job, logger } = active;
  const queued: BuildRecord = { ...record, status: 'queued', warnings: [...(record.warnings ?? []).filter((w) => DELIVERY_NOTE.test(w)), note] };
  delete queued.finishedAt;
  delete queued.error;
  delete queued.cancelledBy;
  try {
    // The pipeline has closed its log: the note goes into a fresh one on the same subject.
    const log = await ctx.logs.openLog(job.id, { endOnClose: false });
    log.write(`==> ${note}`, 'system');
    await log.close();
    await storeRetry(ctx, () => ctx.store.put(queued), logger);
  } catch (err) {
    logger.warn({ err: describeError(err) }, 'could not record the retry');
  }
  active.delivery.nak(delayMs);
}

export async function acknowledge(delivery: Delivery, logger: WorkerLogger): Promise<void> {
  try {
    await delivery.ack();
  } catch (err) {
    // The record is final: a redelivery is recognised and acknowledged without a rebuild.
    logger.warn({ err: describeError(err) }, 'acknowledgement not confirmed');
  }
}

export function storeRetry<T>(ctx: Pick<SettlementContext, 'options'>, fn: () => Promise<T>, logger: WorkerLogger): Promise<T> {
  return withStoreRetry(fn, ctx.options.storeRetryMs, (err, waitMs) => logger.warn({ err: describeError(err), waitMs }, 'NATS operation failed; retrying'));
}
