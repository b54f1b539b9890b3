// Worker options: what callers pass (most keys optional) and what the worker runs with
// (every default filled in, validated once), the way Temporal's worker compiles its options.

import { hostname } from 'node:os';
import { createLogger } from '../log/logger.js';
import { UsageError } from '../core/errors.js';
import type { PipelineOptions, PipelineResult } from '../core/pipeline.js';
import { DEFAULT_CONSUMER_NAME, type BuildStore, type CommitStatusNotifier, type JobConsumer, type JobLogStore, type PipelineDeps, type Reporter, type WorkerRegistry } from '../core/ports.js';
import { backoffDelay } from '../core/retry.js';
import type { BuildJob, ImageOptions } from '../core/types.js';
import type { Config } from '../config/config.js';
import type { CancelRequestWatch } from '../core/cancel-request.js';

/** The subset of pino the worker uses; tests hand in their own. */
export interface WorkerLogger {
  debug?(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): WorkerLogger;
}

/** The phase adapters of one job; the worker adds the store (KV), the logs (JetStream) and the reporter. */
export type WorkerPipelineDeps = Omit<PipelineDeps, 'store' | 'logs' | 'reporter' | 'workerName'> & {
  /** Also told about progress (the worker's own reporter logs it and publishes status). */
  reporter?: Reporter;
};

export type PipelineDepsFactory = (
  job: BuildJob,
  ctx: { signal: AbortSignal; logger: WorkerLogger },
) => WorkerPipelineDeps | Promise<WorkerPipelineDeps>;

export type PipelineRunner = (job: BuildJob, deps: PipelineDeps, options: PipelineOptions) => Promise<PipelineResult>;

/** What the worker talks to, handed in by the composition root (src/compose.ts) or a test. */
export interface WorkerPorts {
  consumer: JobConsumer;
  /** The records (JetStream KV). */
  store: BuildStore;
  /** The build logs (a JetStream stream). */
  logs: JobLogStore;
  /** Where the worker announces itself (`status --workers`); none: it is not listed. */
  registry?: WorkerRegistry;
  /** Where people's cancel requests arrive (POST /builds/:id/cancel); none: only supersede and shutdown cancel. */
  cancels?: CancelRequestWatch;
}

export interface WorkerOptions extends WorkerPorts {
  pipelineDeps: PipelineDepsFactory;
  /** Commit statuses of webhook builds (building, final); none: no statuses. Never waited for. */
  notifier?: CommitStatusNotifier;
  /** Builds at once (default 1). */
  concurrency?: number;
  /** Deliveries of one job before an infrastructure failure becomes final (default 5). */
  maxDeliveries?: number;
  /** How long running builds may take to finish after SIGTERM (default 5 min). */
  shutdownGraceMs?: number;
  /** A newer push to the same repository and branch cancels older builds (default true). */
  cancelSuperseded?: boolean;
  /** Shown in records and in `status --workers` (default hostname:pid). */
  name?: string;
  /** build.timeout (default 30 min; 0 for none). */
  timeoutMs?: number;
  logger?: WorkerLogger;
  /** The pipeline (default core runPipeline); tests inject a fake. */
  runPipeline?: PipelineRunner;
  /** The consumer's ack_wait (default 30 s): a job not heard of for this long is redelivered. */
  ackWaitMs?: number;
  /** How often a running job tells JetStream it is in progress (default ackWait / 3). */
  heartbeatMs?: number;
  /** First retry delay after an infrastructure failure, doubled per delivery (default 2 s). */
  retryDelayMs?: number;
  retryMaxDelayMs?: number;
  /** How long one pull request waits on the server for a job (default 10 s). */
  pullExpiresMs?: number;
  /** The durable consumer's name (default DEFAULT_CONSUMER_NAME, shared by every worker and by serve's metric). */
  consumerName?: string;
  /** How long the worker retries a status write while NATS is away (default 60 s). */
  storeRetryMs?: number;
  /**
   * image.* settings given to the worker itself (flags, environment, file; not defaults). A job
   * carries serve's; these win over them, so a worker's own settings are never silently ignored.
   */
  imageOverrides?: ImageOverrides;
}

export type ImageOverrides = Partial<Pick<ImageOptions, 'registry' | 'push' | 'tlsVerify'>>;

/** The job as this worker builds it: its own image.* settings over the ones serve put in the job. */
export function withImageOverrides(job: BuildJob, overrides: ImageOverrides): BuildJob {
  if (Object.keys(overrides).length === 0) return job;
  return { ...job, image: { ...job.image, ...overrides } };
}

export interface CompiledWorkerOptions extends Required<Omit<WorkerOptions, 'runPipeline' | 'registry' | 'notifier' | 'cancels'>> {
  runPipeline?: PipelineRunner;
  registry?: WorkerRegistry;
  notifier?: CommitStatusNotifier;
  cancels?: CancelRequestWatch;
}

export function defaultWorkerName(): string {
  return `${hostname()}:${process.pid}`;
}

/** The worker's JSON logs: the same logger as serve's (secrets redacted, stdout buffered). */
export function createWorkerLogger(options: { level?: string; name?: string } = {}): WorkerLogger {
  return createLogger({ name: options.name ?? 'oci-build-worker', ...(options.level ? { level: options.level } : {}) });
}

export function compileWorkerOptions(options: WorkerOptions): CompiledWorkerOptions {
  const problems: string[] = [];
  const int = (key: keyof WorkerOptions, value: number, min: number) => {
    if (!Number.isInteger(value) || value < min) problems.push(`${key} must be an integer ≥ ${min} (got ${value})`);
    return value;
  };
  const ackWaitMs = int('ackWaitMs', options.ackWaitMs ?? 30_000, 1_000);
  const compiled: CompiledWorkerOptions = {
    consumer: options.consumer,
    store: options.store,
    logs: options.logs,
    ...(options.registry ? { registry: options.registry } : {}),
    ...(options.notifier ? { notifier: options.notifier } : {}),
    ...(options.cancels ? { cancels: options.cancels } : {}),
    pipelineDeps: options.pipelineDeps,
    concurrency: int('concurrency', options.concurrency ?? 1, 1),
    maxDeliveries: int('maxDeliveries', options.maxDeliveries ?? 5, 1),
    shutdownGraceMs: int('shutdownGraceMs', options.shutdownGraceMs ?? 5 * 60_000, 0),
    cancelSuperseded: options.cancelSuperseded ?? true,
    name: options.name ?? defaultWorkerName(),
    timeoutMs: int('timeoutMs', options.timeoutMs ?? 30 * 60_000, 0),
    logger: options.logger ?? createWorkerLogger(),
    ackWaitMs,
    heartbeatMs: int('heartbeatMs', options.heartbeatMs ?? Math.floor(ackWaitMs / 3), 100),
    retryDelayMs: int('retryDelayMs', options.retryDelayMs ?? 2_000, 0),
    retryMaxDelayMs: int('retryMaxDelayMs', options.retryMaxDelayMs ?? 60_000, 0),
    pullExpiresMs: int('pullExpiresMs', options.pullExpiresMs ?? 10_000, 1_000),
    consumerName: options.consumerName ?? DEFAULT_CONSUMER_NAME,
    storeRetryMs: int('storeRetryMs', options.storeRetryMs ?? 60_000, 0),
    imageOverrides: options.imageOverrides ?? {},
    ...(options.runPipeline ? { runPipeline: options.runPipeline } : {}),
  };
  if (compiled.heartbeatMs >= ackWaitMs) problems.push(`heartbeatMs (${compiled.heartbeatMs}) must be shorter than ackWaitMs (${ackWaitMs})`);
  if (problems.length > 0) {
    throw new UsageError(`Invalid worker options: ${problems.join('; ')}`, { hint: 'Check worker.* in the configuration.' });
  }
  return compiled;
}

/** The worker.* and build.timeout settings of a configuration as worker options. */
export function workerOptionsFromConfig(config: Config): Pick<WorkerOptions, 'concurrency' | 'maxDeliveries' | 'shutdownGraceMs' | 'cancelSuperseded' | 'name' | 'timeoutMs'> {
  return {
    concurrency: config.worker.concurrency,
    maxDeliveries: config.worker.maxDeliveries,
    shutdownGraceMs: config.worker.shutdownGraceMs,
    cancelSuperseded: config.worker.cancelSuperseded,
    ...(config.worker.name ? { name: config.worker.name } : {}),
    timeoutMs: config.build.timeoutMs,
  };
}

/**
 * Delay before delivery `delivery + 1` after a transient failure: retryDelayMs × 2^(delivery−1),
 * at most retryMaxDelayMs, with ±20 % jitter so workers that failed together do not retry together.
 */
export function retryBackoffMs(delivery: number, options: RetryBackoff, random: () => number = Math.random): number {
  // backoffDelay jitters below its delay d (d × (1 − j) … d): ±20 % around d is 1.2 d with j = 1/3.
  return backoffDelay(delivery - 1, { baseMs: options.retryDelayMs * 1.2, maxMs: options.retryMaxDelayMs * 1.2, jitter: 1 / 3, random });
}

export type RetryBackoff = Pick<CompiledWorkerOptions, 'retryDelayMs' | 'retryMaxDelayMs'>;
