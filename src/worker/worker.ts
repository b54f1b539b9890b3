// The build worker: up to `concurrency` pipelines fed by a JobConsumer (src/core/ports.ts; the
// JetStream one is src/queue/job-consumer.ts, wired by src/compose.ts).
//
// State machine (like Temporal's worker): INITIALIZED → RUNNING → DRAINING → STOPPED.
//   RUNNING   each slot pulls one job, runs it, settles it, pulls the next.
//   DRAINING  no more pulls; running builds get `shutdownGraceMs` to finish, then (or on a second
//             signal / stop()) they are cancelled and handed back (nak) for another worker.
//   STOPPED   every job settled; the registration is gone; run() resolves.
//
// What becomes of a delivery is decided by outcome.ts and carried out by job-delivery.ts.

import { CancelledError, describeError } from '../core/errors.js';
import type { BuildStore, ConsumerEvent, Delivery, JobConsumer, JobLogStore, PushMark, RunningJobInfo, WorkerStatusPayload } from '../core/ports.js';
import { backoffDelay, sleep } from '../core/retry.js';
import { onShutdownSignals } from '../exec/shutdown-signals.js';
import { cancelOnRequest } from './cancel-on-request.js';
import { handleDelivery, type DeliveryHost } from './job-delivery.js';
import { supersedeMessage, type ActiveJob, type WorkerStats } from './settlement.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerLogger, type WorkerOptions } from './worker-options.js';

export type WorkerState = 'INITIALIZED' | 'RUNNING' | 'DRAINING' | 'STOPPED';

export interface WorkerRunOptions {
  /** SIGTERM/SIGINT drain, a second one cancels (default true). */
  handleSignals?: boolean;
  /** Aborting it drains, like a first signal. */
  signal?: AbortSignal;
}

/** A slot's wait after a failed pull: 500 ms, doubled, at most 5 s. */
const PULL_BACKOFF = { baseMs: 250, maxMs: 5_000 };

export class Worker implements DeliveryHost {
  readonly options: CompiledWorkerOptions;
  readonly consumer: JobConsumer;
  readonly store: BuildStore;
  readonly logs: JobLogStore;
  readonly logger: WorkerLogger;
  private _state: WorkerState = 'INITIALIZED';
  private readonly active = new Map<number, ActiveJob>();
  private readonly slots: Array<Promise<void>> = [];
  /** Aborted when draining starts: ends the pulls and wakes slots sleeping after a pull error. */
  private readonly drainController = new AbortController();
  private registration?: { stop(): Promise<unknown> };
  private stopWatching?: () => void;
  private stopCancelWatch?: () => void;
  private graceTimer?: NodeJS.Timeout;
  private readonly stopped: Promise<void>;
  private resolveStopped!: () => void;
  private finishing?: Promise<void>;
  private removeSignalHandlers?: () => void;
  /** Counters for status and tests. */
  readonly stats: WorkerStats = { started: 0, succeeded: 0, failed: 0, cancelled: 0, skipped: 0, retried: 0, handedBack: 0, superseded: 0 };

  constructor(options: WorkerOptions) {
    this.options = compileWorkerOptions(options);
    this.consumer = this.options.consumer;
    this.store = this.options.store;
    this.logs = this.options.logs;
    this.logger = this.options.logger.child({ worker: this.options.name });
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
    const o = this.options;
    try {
      // One more delivery than maxDeliveries: the worker itself must see the last delivery of a job
      // whose workers kept dying, to record it as failed instead of leaving it `running` for ever.
      await this.consumer.ensure({ name: o.consumerName, ackWaitMs: o.ackWaitMs, maxDeliver: o.maxDeliveries + 1 });
      this.registration = await o.registry?.register(() => this.status());
    } catch (err) {
      this._state = 'STOPPED';
      this.resolveStopped();
      throw err;
    }
    this.setState('RUNNING');
    this.stopWatching = this.consumer.watch(
      { pushes: o.cancelSuperseded, isBuilding: (key) => [...this.active.values()].some((a) => a.key === key && !a.controller.signal.aborted) },
      (event) => this.onConsumerEvent(event),
    );
    // One watch for every build of this worker: a person's cancel request (POST /builds/:id/cancel).
    this.stopCancelWatch = o.cancels?.watch(
      () => [...this.active.values()].map((a) => a.job.id),
      (request) => {
        for (const a of this.active.values()) cancelOnRequest(a, request);
      },
    );
    for (let i = 0; i < o.concurrency; i++) this.slots.push(this.slot(i));
    this.logger.info({ concurrency: o.concurrency, maxDeliveries: o.maxDeliveries, consumer: o.consumerName }, 'worker started');
  }

  /**
   * Resolves when the worker has stopped. With handleSignals (the daemon), SIGTERM or SIGINT drains
   * and a second one cancels the running builds at once.
   */
  async run(options: WorkerRunOptions = {}): Promise<void> {
    if (this._state === 'INITIALIZED') await this.start();
    if (options.handleSignals ?? true) {
      this.removeSignalHandlers = onShutdownSignals({
        graceful: (signal) => {
          this.logger.info({ signal }, 'signal received: draining');
          void this.drain();
        },
        now: (signal) => {
          this.logger.info({ signal }, 'second signal: cancelling running builds');
          void this.stop();
        },
      });
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
      this.stopWatching?.();
      this.stopCancelWatch?.();
      try {
        await this.registration?.stop();
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

  /**
   * One slot: pull one job, run it to its settlement, repeat. One pull per free slot (not a
   * prefetch): a prefetched job would wait in this process while its ack_wait runs, then be
   * redelivered to another worker and built twice.
   */
  private async slot(index: number): Promise<void> {
    let failures = 0;
    while (this._state === 'RUNNING') {
      let delivery: Delivery | undefined;
      try {
        delivery = await this.consumer.next({ expiresMs: this.options.pullExpiresMs, signal: this.drainController.signal });
        failures = 0;
      } catch (err) {
        failures++;
        if (this._state !== 'RUNNING') break;
        const waitMs = backoffDelay(failures, PULL_BACKOFF);
        this.logger.warn({ slot: index, err: describeError(err), waitMs }, 'pulling a job failed; retrying');
        await sleep(waitMs, this.drainController.signal);
        continue;
      }
      if (!delivery) continue;
      try {
        await handleDelivery(this, delivery);
      } catch (err) {
        // handleDelivery() settles every outcome itself; this is a bug, but the slot must live on.
        this.logger.error({ err: describeError(err), seq: delivery.seq }, 'unexpected error while handling a job');
      }
    }
  }

  private onConsumerEvent(event: ConsumerEvent): void {
    if (event.type === 'newer-push') {
      // Draining too: a superseded build need not use up the grace period.
      for (const a of this.active.values()) if (a.key === event.push.key) this.supersedeIfOlder(a, event.push);
      return;
    }
    if (this._state !== 'RUNNING') return;
    switch (event.type) {
      case 'reconnected':
        this.logger.info({ server: event.server }, 'reconnected to NATS');
        return;
      case 'disconnected':
        this.logger.warn({ server: event.server }, 'disconnected from NATS; reconnecting');
        return;
      case 'watch-failed':
        // Meanwhile the heartbeat's check still catches superseded builds, within heartbeatMs.
        this.logger.warn({ err: describeError(event.error) }, 'watching for newer pushes failed; watching again');
        return;
    }
  }

  /** Cancels `a` when `push` is a newer job of its branch. */
  supersedeIfOlder(a: ActiveJob, push: PushMark | undefined): void {
    if (!push || push.seq <= a.seq || push.id === a.job.id || a.controller.signal.aborted) return;
    a.supersededBy = push;
    a.logger.info({ supersededBy: push.id }, 'superseded by a newer push: cancelling');
    a.controller.abort(new CancelledError(supersedeMessage(a.job, push.id)));
  }

  isRunning(): boolean {
    return this._state === 'RUNNING';
  }

  track(active: ActiveJob): void {
    this.active.set(active.seq, active);
    // A request made before the watch could see this build (it was queued then) is looked up once.
    this.options.cancels?.get(active.job.id).then(
      (request) => request && cancelOnRequest(active, request),
      () => undefined,
    );
  }

  untrack(seq: number): void {
    this.active.delete(seq);
  }

  isTracked(seq: number): boolean {
    return this.active.has(seq);
  }
}

/** Creates a worker and starts it (consumer ensured, registered, pulling). */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const worker = new Worker(options);
  await worker.start();
  return worker;
}
