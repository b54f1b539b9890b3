// One delivery of a job, from its arrival to its settlement: read what the record and the queue
// know (already finished? interrupted before? superseded?), run the pipeline, and settle what
// decideOutcome (outcome.ts) says. Every outcome is settled here; only a bug escapes.

import { monotonicMs } from '../core/elapsed.js';
import { cancelFields } from '../core/cancel-request.js';
import { CancelledError, ServiceUnavailableError, describeError, isOciBuildError, isTransient, type OciBuildError } from '../core/errors.js';
import { initialRecord, runPipeline as coreRunPipeline, type PipelineResult } from '../core/pipeline.js';
import type { Delivery, JobConsumer, PushMark } from '../core/ports.js';
import type { BuildRecord } from '../core/types.js';
import { AttemptLogs, AttemptStore, DELIVERY_NOTE, JobReporter } from './job-attempt.js';
import { decideOutcome, type Outcome, type OutcomeInput } from './outcome.js';
import { acknowledge, settleFinal, settleRetry, storeRetry, supersedeMessage, type ActiveJob, type SettlementContext } from './settlement.js';
import { retryBackoffMs, withImageOverrides, type CompiledWorkerOptions, type WorkerLogger } from './worker-options.js';

/** What a delivery needs of the worker that took it. */
export interface DeliveryHost extends SettlementContext {
  readonly options: CompiledWorkerOptions;
  readonly consumer: JobConsumer;
  readonly logger: WorkerLogger;
  /** Still taking jobs (not draining). */
  isRunning(): boolean;
  /** The job is running here from now until untrack: heartbeats, supersede, status. */
  track(active: ActiveJob): void;
  untrack(seq: number): void;
  isTracked(seq: number): boolean;
  supersedeIfOlder(active: ActiveJob, push: PushMark | undefined): void;
}

export async function handleDelivery(host: DeliveryHost, delivery: Delivery): Promise<void> {
  const { options } = host;
  const job = delivery.job;
  if (!job) {
    // Nothing can ever build it: drop it rather than redeliver it for ever.
    host.logger.error({ seq: delivery.seq, err: delivery.unreadable }, 'unreadable job message: terminated');
    delivery.term();
    return;
  }
  if (!host.isRunning()) {
    delivery.nak();
    return;
  }
  const { seq, attempt } = delivery;
  const logger = host.logger.child({
    jobId: job.id,
    ...(job.repository?.fullName ? { repository: job.repository.fullName } : {}),
    ...(job.repository?.branch ? { branch: job.repository.branch } : {}),
    ...(job.repository?.commit ? { commit: job.repository.commit } : {}),
    ...(attempt > 1 ? { delivery: attempt } : {}),
  });
  const active: ActiveJob = { job, delivery, seq, attempt, startedAt: new Date().toISOString(), controller: new AbortController(), logger };
  const key = options.cancelSuperseded ? host.consumer.supersedeKeyOf(job) : undefined;
  if (key) active.key = key;
  // From here until the settlement the queue hears from us every heartbeatMs, so a live build
  // is never redelivered; the same tick double-checks for a newer push.
  const heartbeat = setInterval(() => {
    delivery.working();
    if (key && host.isTracked(seq)) host.consumer.newestPush(key).then((p) => host.supersedeIfOlder(active, p), () => undefined);
  }, options.heartbeatMs);
  try {
    const [existing, newest] = await storeRetry(host, () => Promise.all([host.store.get(job.id), key ? host.consumer.newestPush(key) : undefined]), logger);
    const notes = (existing?.warnings ?? []).filter((w) => DELIVERY_NOTE.test(w));
    if (existing?.status === 'running' && attempt > 1) {
      // Nobody settled the previous delivery: its worker died (SIGKILL, OOM, power) or lost NATS.
      notes.push(`delivery ${attempt - 1} of ${options.maxDeliveries} was interrupted on ${existing.worker ?? 'another worker'} (it stopped without settling the job); redelivered`);
    }
    const input: OutcomeInput = { attempt, maxDeliveries: options.maxDeliveries, ran: false, handBack: false, backoff: options, ...(existing ? { existingStatus: existing.status } : {}) };
    let outcome = decideOutcome(input);
    if (outcome.kind === 'run' && key) {
      // Only a job that may start raises latest.<key>: it is a write, and it says "started".
      const latest = newest && newest.seq > seq ? newest : await storeRetry(host, () => host.consumer.raiseLatest({ key, id: job.id, seq }), logger);
      if (latest.seq > seq && latest.id !== job.id) active.supersededBy = latest;
    }
    // Draining may have begun while we looked: a job that has not started goes back at once.
    if (outcome.kind === 'run') outcome = decideOutcome({ ...input, handBack: !host.isRunning(), ...(active.supersededBy ? { supersededBy: active.supersededBy.id } : {}) });
    const record = { ...(existing ?? initialRecord(job)), warnings: notes };
    switch (outcome.kind) {
      case 'ack':
        logger.info({ status: existing?.status }, 'job already finished (its acknowledgement was lost): acknowledging');
        await acknowledge(delivery, logger);
        // Its final statuses again (the same states: harmless), for a record that serve settled itself (a queued build cancelled).
        if (existing) options.notifier?.finished(existing, job);
        return;
      case 'final':
        await settleFinal(host, active, record, outcome.error, outcome.status);
        return;
      case 'superseded':
        host.stats.superseded++;
        logger.info({ supersededBy: outcome.by }, 'superseded before it started');
        await settleFinal(host, active, record, new CancelledError(supersedeMessage(job, outcome.by)), 'cancelled', { started: false });
        return;
      case 'handBack':
        delivery.nak();
        return;
      case 'retry':
        delivery.nak(outcome.delayMs);
        return;
      case 'run':
        host.track(active);
        await runJob(host, active, notes);
        return;
    }
  } catch (err) {
    // Only NATS trouble gets here (the pipeline's own failures are settled in runJob).
    logger.error({ err: describeError(err) }, 'could not settle the job; it will be redelivered');
    delivery.nak(retryBackoffMs(attempt, options));
  } finally {
    clearInterval(heartbeat);
    host.untrack(seq);
  }
}

async function runJob(host: DeliveryHost, active: ActiveJob, notes: string[]): Promise<void> {
  const { options, name } = host;
  const { job, logger, attempt } = active;
  host.stats.started++;
  const started = monotonicMs();
  logger.info({ attempt, maxDeliveries: options.maxDeliveries, source: job.source.kind }, 'job started');
  options.notifier?.building(job);

  const decorate = (record: BuildRecord): BuildRecord => {
    if (notes.length > 0) record.warnings = [...notes, ...(record.warnings ?? []).filter((w) => !notes.includes(w))];
    if (active.supersededBy && record.status === 'cancelled') record.cancelledBy = active.supersededBy.id;
    if (active.cancelRequest && record.status === 'cancelled') Object.assign(record, cancelFields(active.cancelRequest));
    return record;
  };
  const store = new AttemptStore(host.store, decorate, options.storeRetryMs, logger);
  const logs = new AttemptLogs(host.logs);
  let result: PipelineResult | undefined;
  let crash: unknown;
  try {
    const adapters = await options.pipelineDeps(job, { signal: active.controller.signal, logger });
    const reporter = new JobReporter(logger, adapters.reporter);
    const run = options.runPipeline ?? coreRunPipeline;
    if (attempt > 1) {
      logger.info({ attempt }, 'running a redelivered job');
      const log = await host.logs.openLog(job.id, { endOnClose: false });
      log.write(`==> delivery ${attempt} of ${options.maxDeliveries} on ${name}`, 'system');
      await log.close();
    }
    result = await run(withImageOverrides(job, options.imageOverrides), { ...adapters, store, logs, reporter, workerName: name }, { signal: active.controller.signal, timeoutMs: options.timeoutMs });
  } catch (err) {
    crash = err;
  }
  const durationMs = Math.round(monotonicMs() - started);
  const base: BuildRecord = store.finalRecord ?? result?.record ?? { ...initialRecord(job), status: 'running' };
  const error: OciBuildError | undefined = crash !== undefined ? asOciError(crash) : result?.error;
  const outcome: Outcome = decideOutcome({
    attempt,
    maxDeliveries: options.maxDeliveries,
    ran: true,
    handBack: active.handBack === true,
    ...(active.supersededBy ? { supersededBy: active.supersededBy.id } : {}),
    result: { status: base.status, ...(error ? { error: { code: error.code, message: error.message, transient: isTransient(error) } } : {}) },
    backoff: options,
  });
  const at = `delivery ${attempt} of ${options.maxDeliveries}`;
  switch (outcome.kind) {
    case 'handBack':
      host.stats.handedBack++;
      await settleRetry(host, active, base, 0, `${at} handed back by ${name} at shutdown`);
      logger.info({ durationMs }, 'job handed back for redelivery');
      return;
    case 'superseded':
      host.stats.superseded++;
      await settleFinal(host, active, base, error ?? new CancelledError(supersedeMessage(job, outcome.by)), 'cancelled', { logs, durationMs });
      return;
    case 'retry': {
      host.stats.retried++;
      const why = error ? `${error.code}: ${error.message}` : 'unknown';
      await settleRetry(host, active, base, outcome.delayMs, `${at} failed on ${name} (${why}); retrying in ${Math.round(outcome.delayMs / 1000)}s`);
      logger.warn({ durationMs, err: error?.message, code: error?.code, retryInMs: outcome.delayMs }, 'job failed for a transient reason: retrying');
      return;
    }
    case 'final':
      await settleFinal(host, active, base, outcome.error, outcome.status, { logs, durationMs });
      return;
    default:
      // 'ack' and 'run' are answers before a build, never after one.
      throw new Error(`unexpected outcome ${outcome.kind} after a build`);
  }
}

function asOciError(err: unknown): OciBuildError {
  if (isOciBuildError(err)) return err;
  // The pipeline itself threw (its store or log failed): infrastructure, worth a retry.
  return new ServiceUnavailableError(`The build could not be run: ${describeError(err)}`, { cause: err });
}
