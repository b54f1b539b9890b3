// The build worker: a durable JetStream pull consumer running up to `concurrency` pipelines.
//
// State machine (like Temporal's worker): INITIALIZED → RUNNING → DRAINING → STOPPED.
//   RUNNING   each slot pulls one job, runs it, settles it, pulls the next.
//   DRAINING  no more pulls; running builds get `shutdownGraceMs` to finish, then (or on a second
//             signal / stop()) they are cancelled and handed back (nak) for another worker.
//   STOPPED   every job settled; the services registration is gone; run() resolves.
//
// Outcomes of one delivery ("errors as signals"):
//   succeeded, or failed/cancelled for a reason in the build   → final record written, then ack
//   transient error (NATS, registry, network; isTransient)     → nak with backoff, until
//                                                                 maxDeliveries, then final `failed`
//   superseded by a newer push to the same repository/branch   → final `cancelled` (cancelledBy), ack
//   cancelled by shutdown                                       → record back to `queued`, nak now
// The final record is written before the ack, so a crash in between only causes a redelivery,
// which is recognised (the record is already final) and acknowledged without building again.

import { performance } from 'node:perf_hooks';
import { AckPolicy, DeliverPolicy, KvWatchInclude, nanos, type Consumer, type ConsumerMessages, type JsMsg, type KvEntry, type QueuedIterator, type Service, type Subscription } from 'nats';
import { CancelledError, ServiceUnavailableError, describeError, isOciBuildError, isTransient, type OciBuildError } from '../core/errors.js';
import { initialRecord, runPipeline as coreRunPipeline, type PipelineResult } from '../core/pipeline.js';
import { isFinalStatus, type BuildJob, type BuildRecord } from '../core/types.js';
import type { Config } from '../config/config.js';
import { LATEST_KEY_PREFIX, keyOfSubject, newestJob, newestQueuedJob, raiseLatest, supersedeKeyOf, type LatestJob } from '../queue/job-queue.js';
import { KvBuildStore } from '../queue/kv-build-store.js';
import { JetStreamLogStore } from '../queue/log-stream.js';
import { closeNats, connectNats } from '../queue/nats.js';
import { registerWorkerService, type RunningJobInfo, type WorkerStatusPayload } from '../queue/workers.js';
import { AttemptLogs, AttemptStore, DELIVERY_NOTE, JobReporter, withStoreRetry } from './job-attempt.js';
import {
  compileWorkerOptions,
  createWorkerLogger,
  retryBackoffMs,
  workerOptionsFromConfig,
  type CompiledWorkerOptions,
  type PipelineDepsFactory,
  type WorkerLogger,
  type WorkerOptions,
} from './worker-options.js';

export type WorkerState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

interface ActiveJob {
  job: BuildJob;
  msg: JsMsg;
  seq: number;
  delivery: number;
  key?: string;
  startedAt: string;
  controller: AbortController;
  logger: WorkerLogger;
  /** Set when a newer push superseded this build. */
  supersededBy?: LatestJob;
  /** Set when shutdown cancelled this build: it goes back to the queue. */
  handBack?: boolean;
}

export interface WorkerRunOptions {
  /** SIGTERM/SIGINT drain, a second one cancels (default true). */
  handleSignals?: boolean;
  /** Aborting it drains, like a first signal. */
  signal?: AbortSignal;
}

export class Worker {
  readonly options: CompiledWorkerOptions;
  private _state: WorkerState = 'INITIALIZED';
  private readonly store: KvBuildStore;
  private readonly logStore: JetStreamLogStore;
  private readonly logger: WorkerLogger;
  private readonly active = new Map<number, ActiveJob>();
  private readonly pulls = new Set<ConsumerMessages>();
  private readonly slots: Array<Promise<void>> = [];
  /** Wakes slots sleeping after a pull error when draining starts. */
  private readonly drainController = new AbortController();
  private service?: Service;
  private latestWatcher?: QueuedIterator<KvEntry>;
  private publishedJobs?: Subscription;
  private graceTimer?: NodeJS.Timeout;
  private stopped!: Promise<void>;
  private resolveStopped!: () => void;
  private finishing?: Promise<void>;
  private removeSignalHandlers?: () => void;
  /** Counters for status and tests. */
  readonly stats = { started: 0, succeeded: 0, failed: 0, cancelled: 0, retried: 0, handedBack: 0, superseded: 0 };

  constructor(options: WorkerOptions) {
    this.options = compileWorkerOptions(options);
    this.logger = this.options.logger.child({ worker: this.options.name });
    this.store = new KvBuildStore(this.options.nats);
    this.logStore = new JetStreamLogStore(this.options.nats);
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  get state(): WorkerState {
    return this._state;
  }

  get name(): string {
    return this.options.name;
  }

  /** The jobs running now (for the services endpoint and `status --workers`). */
  runningJobs(): RunningJobInfo[] {
    return [...this.active.values()].map((a) => ({
      jobId: a.job.id,
      repository: a.job.repository?.fullName ?? (a.job.source.kind === 'git' ? a.job.source.url : a.job.source.path),
      ...(a.job.repository?.branch ? { branch: a.job.repository.branch } : {}),
      startedAt: a.startedAt,
    }));
  }

  status(): WorkerStatusPayload {
    return { name: this.name, concurrency: this.options.concurrency, state: this._state, running: this.runningJobs() };
  }

  private setState(next: WorkerState): void {
    this.logger.info({ from: this._state, to: next }, `worker ${next.toLowerCase()}`);
    this._state = next;
  }

  /** Makes sure the consumer exists, registers the worker, starts pulling. */
  async start(): Promise<void> {
    if (this._state !== 'INITIALIZED') throw new Error(`Worker.start() in state ${this._state}`);
    try {
      await this.ensureConsumer();
      this.service = await registerWorkerService(this.options.nats, () => this.status());
    } catch (err) {
      this._state = 'STOPPED';
      this.resolveStopped();
      throw err;
    }
    this.setState('RUNNING');
    void this.watchLatest();
    this.watchPublishedJobs();
    void this.watchConnection();
    for (let i = 0; i < this.options.concurrency; i++) this.slots.push(this.slot(i));
    this.logger.info(
      { concurrency: this.options.concurrency, maxDeliveries: this.options.maxDeliveries, stream: this.options.nats.config.stream, consumer: this.options.consumerName },
      'worker started',
    );
  }

  /**
   * Resolves when the worker has stopped. With handleSignals (the daemon), SIGTERM or SIGINT drains
   * and a second one cancels the running builds at once.
   */
  async run(options: WorkerRunOptions = {}): Promise<void> {
    if (this._state === 'INITIALIZED') await this.start();
    if (options.handleSignals ?? true) {
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        this.logger.info({ signal }, signals === 1 ? 'signal received: draining' : 'second signal: cancelling running builds');
        if (signals === 1) void this.drain();
        else void this.stop();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      this.removeSignalHandlers = () => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      };
    }
    if (options.signal) {
      if (options.signal.aborted) void this.drain();
      else options.signal.addEventListener('abort', () => void this.drain(), { once: true });
    }
    await this.stopped;
  }

  /** Stops pulling; running builds get shutdownGraceMs to finish, then are handed back. Resolves when stopped. */
  drain(): Promise<void> {
    if (this._state === 'INITIALIZED') {
      this._state = 'STOPPED';
      this.resolveStopped();
    }
    if (this._state !== 'RUNNING') return this.stopped;
    this.setState('DRAINING');
    this.drainController.abort();
    for (const pull of this.pulls) pull.stop();
    if (this.active.size > 0) {
      this.logger.info({ running: this.active.size, graceMs: this.options.shutdownGraceMs }, 'waiting for running builds to finish');
      this.graceTimer = setTimeout(() => {
        this.logger.warn({ running: this.active.size }, 'shutdown grace period over: cancelling running builds');
        this.cancelRunning();
      }, this.options.shutdownGraceMs);
    }
    void this.finishWhenIdle();
    return this.stopped;
  }

  /** Cancels running builds at once (process groups killed) and hands them back. Resolves when stopped. */
  stop(): Promise<void> {
    if (this._state === 'STOPPED') return this.stopped;
    void this.drain();
    this.cancelRunning();
    return this.stopped;
  }

  private cancelRunning(): void {
    for (const a of this.active.values()) {
      if (a.controller.signal.aborted) continue;
      a.handBack = true;
      a.controller.abort(new CancelledError(`The worker ${this.name} is shutting down: the build is handed back to the queue`));
    }
  }

  private finishWhenIdle(): Promise<void> {
    this.finishing ??= (async () => {
      await Promise.allSettled(this.slots);
      // Slots return once their job is settled; a job is only in `active` while a slot runs it.
      if (this.graceTimer) clearTimeout(this.graceTimer);
      this.latestWatcher?.stop();
      this.publishedJobs?.unsubscribe();
      try {
        await this.service?.stop();
      } catch {
        // NATS gone: the registration goes with the connection.
      }
      this.removeSignalHandlers?.();
      this.setState('STOPPED');
      this.logger.info({ ...this.stats }, 'worker stopped');
      this.resolveStopped();
    })();
    return this.finishing;
  }

  private async ensureConsumer(): Promise<void> {
    const { jsm, config } = this.options.nats;
    const o = this.options;
    const wanted = {
      ack_wait: nanos(o.ackWaitMs),
      // One more than maxDeliveries: the worker itself must see the last delivery of a job whose
      // workers kept dying, to record it as failed instead of leaving it `running` for ever.
      max_deliver: o.maxDeliveries + 1,
    };
    try {
      const info = await jsm.consumers.info(config.stream, o.consumerName);
      if (info.config.ack_wait !== wanted.ack_wait || info.config.max_deliver !== wanted.max_deliver) {
        await jsm.consumers.update(config.stream, o.consumerName, wanted);
      }
      return;
    } catch (err) {
      if (!/consumer not found/i.test(describeError(err))) throw new ServiceUnavailableError(`Cannot read consumer ${o.consumerName} of stream ${config.stream}: ${describeError(err)}`, { cause: err });
    }
    try {
      await jsm.consumers.add(config.stream, {
        durable_name: o.consumerName,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        max_ack_pending: -1,
        ...wanted,
      });
    } catch (err) {
      // Another worker created it at the same moment.
      if (!/already in use|already exists/i.test(describeError(err))) {
        throw new ServiceUnavailableError(`Cannot create consumer ${o.consumerName} on stream ${config.stream}: ${describeError(err)}`, { cause: err });
      }
    }
  }

  /**
   * One slot: pull one job, run it to its settlement, repeat. One pull per free slot (not
   * consume()'s prefetch): a prefetched job would wait in this process while its ack_wait runs,
   * then be redelivered to another worker and built twice.
   */
  private async slot(index: number): Promise<void> {
    const { js, config } = this.options.nats;
    let failures = 0;
    let consumer: Consumer | undefined;
    while (this._state === 'RUNNING') {
      let msg: JsMsg | undefined;
      try {
        consumer ??= await js.consumers.get(config.stream, this.options.consumerName);
        const pull = await consumer.fetch({ max_messages: 1, expires: this.options.pullExpiresMs });
        this.pulls.add(pull);
        // Draining may have begun while the pull was being set up.
        if (this._state !== 'RUNNING') pull.stop();
        try {
          for await (const m of pull) {
            msg = m;
            break;
          }
        } finally {
          this.pulls.delete(pull);
        }
        failures = 0;
      } catch (err) {
        failures++;
        consumer = undefined;
        if (this._state !== 'RUNNING') break;
        const waitMs = Math.min(250 * 2 ** Math.min(failures, 5), 5_000);
        this.logger.warn({ slot: index, err: describeError(err), waitMs }, 'pulling a job failed; retrying');
        await sleep(waitMs, this.drainController.signal);
        continue;
      }
      if (!msg) continue;
      try {
        await this.handle(msg);
      } catch (err) {
        // handle() settles every outcome itself; this is a bug, but the slot must live on.
        this.logger.error({ err: describeError(err), seq: msg.info.streamSequence }, 'unexpected error while handling a job');
      }
    }
  }

  /** A NATS reconnect loses the server-side pull requests: re-issue them at once. */
  private async watchConnection(): Promise<void> {
    try {
      for await (const s of this.options.nats.nc.status()) {
        if (this._state !== 'RUNNING') {
          if (this._state === 'STOPPED') return;
          continue;
        }
        if (s.type === 'reconnect') {
          this.logger.info({ server: s.data }, 'reconnected to NATS');
          for (const pull of this.pulls) pull.stop();
        } else if (s.type === 'disconnect') {
          this.logger.warn({ server: s.data }, 'disconnected from NATS; reconnecting');
        }
      }
    } catch {
      // The connection was closed.
    }
  }

  /** Cancels running builds superseded by a newer push, as soon as `latest.<jobKey>` moves. */
  private async watchLatest(): Promise<void> {
    if (!this.options.cancelSuperseded) return;
    while (this._state === 'RUNNING') {
      try {
        this.latestWatcher = await this.options.nats.kv.watch({ key: `${LATEST_KEY_PREFIX}.>`, include: KvWatchInclude.UpdatesOnly });
        for await (const entry of this.latestWatcher) {
          if (entry.operation !== 'PUT') continue;
          const key = entry.key.slice(LATEST_KEY_PREFIX.length + 1);
          const latest = entry.json<LatestJob>();
          for (const a of this.active.values()) if (a.key === key) this.supersedeIfOlder(a, latest);
        }
      } catch (err) {
        // Meanwhile the heartbeat's check still catches superseded builds, within heartbeatMs.
        if (this._state === 'RUNNING') this.logger.warn({ err: describeError(err) }, 'watching for newer pushes failed; watching again');
      }
      await sleep(1_000, this.drainController.signal);
    }
  }

  /**
   * A job published on a branch this worker is building: the stream says whether it really is
   * newer (a webhook redelivery dropped as a duplicate is seen here too, but never stored).
   */
  private watchPublishedJobs(): void {
    if (!this.options.cancelSuperseded) return;
    const { nc, config } = this.options.nats;
    this.publishedJobs = nc.subscribe(`${config.subject}.>`, {
      callback: (err, m) => {
        if (err) return;
        const key = keyOfSubject(config, m.subject);
        const building = [...this.active.values()].filter((a) => a.key === key && !a.controller.signal.aborted);
        if (!key || building.length === 0) return;
        const check = async (attempt: number) => {
          const newest = await newestQueuedJob(this.options.nats, key);
          for (const a of building) this.supersedeIfOlder(a, newest);
          // The stream may not have stored it yet when the plain subscription hears of it.
          if (attempt === 0 && building.some((a) => !a.supersededBy)) setTimeout(() => void check(1).catch(() => undefined), 250);
        };
        check(0).catch(() => undefined);
      },
    });
  }

  private supersedeIfOlder(a: ActiveJob, latest: LatestJob | undefined): void {
    if (!latest || latest.seq <= a.seq || latest.id === a.job.id || a.controller.signal.aborted) return;
    a.supersededBy = latest;
    a.logger.info({ supersededBy: latest.id }, 'superseded by a newer push: cancelling');
    a.controller.abort(new CancelledError(supersedeMessage(a.job, latest.id)));
  }

  private async handle(msg: JsMsg): Promise<void> {
    let job: BuildJob;
    try {
      job = msg.json<BuildJob>();
      if (typeof job?.id !== 'string' || !job.id || typeof job.source !== 'object' || !job.image) throw new Error('not a BuildJob');
    } catch (err) {
      // Nothing can ever build it: drop it rather than redeliver it for ever.
      this.logger.error({ seq: msg.info.streamSequence, err: describeError(err) }, 'unreadable job message: terminated');
      settle(() => msg.term());
      return;
    }
    if (this._state !== 'RUNNING') {
      settle(() => msg.nak());
      return;
    }
    const seq = msg.info.streamSequence;
    const delivery = msg.info.deliveryCount;
    const logger = this.logger.child({
      jobId: job.id,
      ...(job.repository?.fullName ? { repository: job.repository.fullName } : {}),
      ...(job.repository?.branch ? { branch: job.repository.branch } : {}),
      ...(job.repository?.commit ? { commit: job.repository.commit } : {}),
      ...(delivery > 1 ? { delivery } : {}),
    });
    const active: ActiveJob = {
      job,
      msg,
      seq,
      delivery,
      startedAt: new Date().toISOString(),
      controller: new AbortController(),
      logger,
    };
    const key = this.options.cancelSuperseded ? supersedeKeyOf(job) : undefined;
    if (key) active.key = key;
    // From here until the settlement JetStream hears from us every heartbeatMs, so a live build
    // is never redelivered; the same tick double-checks for a newer push.
    const heartbeat = setInterval(() => {
      settle(() => msg.working());
      if (active.key && this.active.has(seq)) {
        newestJob(this.options.nats, active.key).then((l) => this.supersedeIfOlder(active, l), () => undefined);
      }
    }, this.options.heartbeatMs);
    try {
      const [existing, newest] = await this.retryStore(
        () => Promise.all([this.store.get(job.id), key ? newestJob(this.options.nats, key) : undefined]),
        logger,
      );
      if (existing && isFinalStatus(existing.status)) {
        logger.info({ status: existing.status }, 'job already finished (its acknowledgement was lost): acknowledging');
        await this.ack(msg, logger);
        return;
      }
      const notes = (existing?.warnings ?? []).filter((w) => DELIVERY_NOTE.test(w));
      if (existing?.status === 'running' && delivery > 1) {
        // Nobody settled the previous delivery: its worker died (SIGKILL, OOM, power) or lost NATS.
        notes.push(`delivery ${delivery - 1} of ${this.options.maxDeliveries} was interrupted on ${existing.worker ?? 'another worker'} (it stopped without settling the job); redelivered`);
      }

      if (delivery > this.options.maxDeliveries) {
        const error = new ServiceUnavailableError(
          `Gave up after ${delivery - 1} ${delivery - 1 === 1 ? 'delivery' : 'deliveries'}: the workers running this build stopped before it ended`,
          { hint: 'Look at the workers\' logs (killed? out of memory?) and push again.' },
        );
        await this.settleFinal(active, { ...(existing ?? initialRecord(job)), warnings: notes }, error, 'failed');
        return;
      }

      if (key) {
        const latest =
          newest && newest.seq > seq ? newest : await this.retryStore(() => raiseLatest(this.options.nats, key, { id: job.id, seq }), logger);
        if (latest.seq > seq && latest.id !== job.id) {
          active.supersededBy = latest;
          this.stats.superseded++;
          const error = new CancelledError(supersedeMessage(job, latest.id));
          logger.info({ supersededBy: latest.id }, 'superseded before it started');
          await this.settleFinal(active, { ...(existing ?? initialRecord(job)), warnings: notes }, error, 'cancelled', { started: false });
          return;
        }
      }

      if (this._state !== 'RUNNING') {
        // Draining began while we looked: a job that has not started goes back at once.
        settle(() => msg.nak());
        return;
      }
      this.active.set(seq, active);
      await this.runJob(active, notes);
    } catch (err) {
      // Only NATS trouble gets here (the pipeline's own failures are settled in runJob).
      logger.error({ err: describeError(err) }, 'could not settle the job; it will be redelivered');
      settle(() => msg.nak(this.retryDelay(delivery)));
    } finally {
      clearInterval(heartbeat);
      this.active.delete(seq);
    }
  }

  private async runJob(active: ActiveJob, notes: string[]): Promise<void> {
    const { job, logger, delivery } = active;
    this.stats.started++;
    const started = performance.now();
    logger.info({ attempt: delivery, maxDeliveries: this.options.maxDeliveries, source: job.source.kind }, 'job started');

    const decorate = (record: BuildRecord): BuildRecord => {
      if (notes.length > 0) record.warnings = [...notes, ...(record.warnings ?? []).filter((w) => !notes.includes(w))];
      if (active.supersededBy && record.status === 'cancelled') record.cancelledBy = active.supersededBy.id;
      return record;
    };
    const store = new AttemptStore(this.store, decorate, this.options.storeRetryMs, logger);
    const logs = new AttemptLogs(this.logStore);
    let result: PipelineResult | undefined;
    let crash: unknown;
    try {
      const adapters = await this.options.pipelineDeps(job, { signal: active.controller.signal, logger });
      const reporter = new JobReporter(logger, adapters.reporter);
      const run = this.options.runPipeline ?? coreRunPipeline;
      if (delivery > 1) {
        logger.info({ attempt: delivery }, 'running a redelivered job');
        const log = await this.logStore.openLog(job.id, { endOnClose: false });
        log.write(`==> delivery ${delivery} of ${this.options.maxDeliveries} on ${this.name}`, 'system');
        await log.close();
      }
      result = await run(job, { ...adapters, store, logs, reporter, workerName: this.name }, { signal: active.controller.signal, timeoutMs: this.options.timeoutMs });
    } catch (err) {
      crash = err;
    }
    const durationMs = Math.round(performance.now() - started);
    const base: BuildRecord = store.finalRecord ?? result?.record ?? { ...initialRecord(job), status: 'running' };
    const error: OciBuildError | undefined = crash !== undefined ? asOciError(crash) : result?.error;

    if (active.handBack) {
      this.stats.handedBack++;
      await this.settleRetry(active, base, error ?? new CancelledError('shutdown'), 0, `handed back by ${this.name} at shutdown`);
      logger.info({ durationMs }, 'job handed back for redelivery');
      return;
    }
    if (active.supersededBy && base.status === 'cancelled') {
      this.stats.superseded++;
      await this.settleFinal(active, base, error ?? new CancelledError(supersedeMessage(job, active.supersededBy.id)), 'cancelled', { logs, durationMs });
      return;
    }
    if (error && isTransient(error)) {
      if (delivery < this.options.maxDeliveries) {
        this.stats.retried++;
        const delay = this.retryDelay(delivery);
        await this.settleRetry(active, base, error, delay);
        logger.warn({ durationMs, err: error.message, code: error.code, retryInMs: delay }, 'job failed for a transient reason: retrying');
        return;
      }
      const finalError = { code: error.code, message: `${error.message} (gave up after ${delivery} attempts)` };
      await this.settleFinal(active, base, finalError, 'failed', { logs, durationMs });
      return;
    }
    await this.settleFinal(active, base, error, base.status, { logs, durationMs });
  }

  /**
   * Writes the final record, ends the log, then acknowledges. If the record cannot be written
   * (NATS away too long) the job is not acknowledged: it comes back and is settled again.
   */
  private async settleFinal(
    active: ActiveJob,
    record: BuildRecord,
    error: Pick<OciBuildError, 'code' | 'message'> | undefined,
    status: BuildRecord['status'],
    extra: { logs?: AttemptLogs; durationMs?: number; started?: boolean } = {},
  ): Promise<void> {
    const { job, logger, msg } = active;
    const final: BuildRecord = { ...record, status: isFinalStatus(status) ? status : 'failed' };
    final.finishedAt ??= new Date().toISOString();
    if (error && (!final.error || final.error.message !== error.message)) {
      const lastPhase = [...final.phases].reverse().find((p) => p.status === 'failed' || p.status === 'cancelled');
      final.error = { phase: lastPhase?.name ?? 'queue', code: error.code, message: error.message };
    }
    if (active.supersededBy && final.status === 'cancelled') final.cancelledBy = active.supersededBy.id;
    if (final.worker === undefined && extra.started !== false) final.worker = this.name;
    if (extra.logs?.opened === undefined && error) {
      // The pipeline never ran (or never opened its log): say why in the log.
      const log = await this.logStore.openLog(job.id, { endOnClose: false });
      log.write(`error: ${error.message}`, 'system');
      await log.close();
    }
    await this.retryStore(() => this.store.put(final), logger);
    await this.retryStore(() => this.logStore.end(job.id), logger).catch((err: unknown) =>
      logger.warn({ err: describeError(err) }, 'could not end the build log'),
    );
    await this.ack(msg, logger);
    if (final.status === 'succeeded') this.stats.succeeded++;
    else if (final.status === 'cancelled') this.stats.cancelled++;
    else this.stats.failed++;
    const fields = {
      status: final.status,
      ...(extra.durationMs !== undefined ? { durationMs: extra.durationMs } : {}),
      ...(final.repository.commit ? { commit: final.repository.commit } : {}),
      ...(final.error ? { errorCode: final.error.code, error: final.error.message } : {}),
      ...(final.cancelledBy ? { cancelledBy: final.cancelledBy } : {}),
      images: final.images.map((i) => `${i.repository}:${i.tags[0] ?? ''}${i.digest ? `@${i.digest}` : ''}`),
    };
    if (final.status === 'succeeded') logger.info(fields, 'job finished');
    else logger.warn(fields, 'job finished');
  }

  /** Puts the record back to `queued` with a note, ends nothing, and hands the message back. */
  private async settleRetry(active: ActiveJob, record: BuildRecord, error: OciBuildError, delayMs: number, why?: string): Promise<void> {
    const { job, logger, msg, delivery } = active;
    const note = why
      ? `delivery ${delivery} of ${this.options.maxDeliveries} ${why}`
      : `delivery ${delivery} of ${this.options.maxDeliveries} failed on ${this.name} (${error.code}: ${error.message}); retrying in ${Math.round(delayMs / 1000)}s`;
    const queued: BuildRecord = { ...record, status: 'queued', warnings: [...(record.warnings ?? []).filter((w) => DELIVERY_NOTE.test(w)), note] };
    delete queued.finishedAt;
    delete queued.error;
    delete queued.cancelledBy;
    try {
      // The pipeline has closed its log: the note goes into a fresh one on the same subject.
      const log = await this.logStore.openLog(job.id, { endOnClose: false });
      log.write(`==> ${note}`, 'system');
      await log.close();
      await this.retryStore(() => this.store.put(queued), logger);
    } catch (err) {
      logger.warn({ err: describeError(err) }, 'could not record the retry');
    }
    settle(() => msg.nak(delayMs));
  }

  private async ack(msg: JsMsg, logger: WorkerLogger): Promise<void> {
    try {
      await msg.ackAck();
    } catch (err) {
      // The record is final: a redelivery is recognised and acknowledged without a rebuild.
      logger.warn({ err: describeError(err) }, 'acknowledgement not confirmed');
    }
  }

  private retryStore<T>(fn: () => Promise<T>, logger: WorkerLogger): Promise<T> {
    return withStoreRetry(fn, this.options.storeRetryMs, (err, waitMs) => logger.warn({ err: describeError(err), waitMs }, 'NATS operation failed; retrying'));
  }

  retryDelay(delivery: number): number {
    return retryBackoffMs(delivery, this.options);
  }
}

function supersedeMessage(job: BuildJob, newerId: string): string {
  const what = [job.repository?.fullName, job.repository?.branch].filter(Boolean).join(' ');
  return `Superseded by build ${newerId}, a newer push${what ? ` to ${what}` : ''}`;
}

function asOciError(err: unknown): OciBuildError {
  if (isOciBuildError(err)) return err;
  // The pipeline itself threw (its store or log failed): infrastructure, worth a retry.
  return new ServiceUnavailableError(`The build could not be run: ${describeError(err)}`, { cause: err });
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

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Creates a worker and starts it (consumer ensured, registered, pulling). */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const worker = new Worker(options);
  await worker.start();
  return worker;
}

export interface WorkerDaemonDeps {
  pipelineDeps: PipelineDepsFactory;
  logger?: WorkerLogger;
  /** Overrides of the configuration's worker settings (e.g. --concurrency). */
  overrides?: Partial<Omit<WorkerOptions, 'nats' | 'pipelineDeps'>>;
  /** Aborting it drains (the CLI's SIGINT signal). */
  signal?: AbortSignal;
  handleSignals?: boolean;
  /** Told once the worker pulls (e.g. to print where it runs). */
  onStarted?: (worker: Worker) => void;
}

/**
 * `oci-build worker`: connect to NATS, run until SIGTERM/SIGINT (drain) or a second signal
 * (cancel), close the connection. Resolves normally after a drain (exit 0); throws
 * ServiceUnavailableError (exit 3) when NATS cannot be reached at start.
 */
export async function runWorkerDaemon(config: Config, deps: WorkerDaemonDeps): Promise<Worker> {
  const logger = deps.logger ?? createWorkerLogger();
  const name = deps.overrides?.name ?? config.worker.name;
  const nats = await connectNats(config.nats, { name: `oci-build-worker${name ? ` ${name}` : ''}` });
  try {
    const worker = await startWorker({
      ...workerOptionsFromConfig(config),
      ...deps.overrides,
      nats,
      pipelineDeps: deps.pipelineDeps,
      logger,
    });
    deps.onStarted?.(worker);
    await worker.run({ handleSignals: deps.handleSignals ?? true, ...(deps.signal ? { signal: deps.signal } : {}) });
    return worker;
  } finally {
    await closeNats(nats);
  }
}
