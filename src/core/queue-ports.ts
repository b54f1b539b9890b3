// The job queue as the worker sees it (src/queue/job-consumer.ts implements JobConsumer over
// JetStream; tests hand in a fake): deliveries, the supersede marks of branches, the live-worker
// registry. Re-exported by ports.ts, where the pipeline's ports are.

import type { BuildJob } from './types.js';

/** A job of a branch with its place in the queue: "newer" means a higher `seq`, never a clock. */
export interface PushMark {
  /** The supersede key of the branch (see queue/job-queue.ts jobKey). */
  key: string;
  id: string;
  /** The queue's sequence of the job's message. */
  seq: number;
}

/**
 * The durable consumer every worker shares when none is named. The worker's `consumerName` and
 * serve's queue-depth metric must name the same one.
 */
export const DEFAULT_CONSUMER_NAME = 'oci-build-worker';

export interface ConsumerSettings {
  /** The durable consumer's name, shared by every worker (and by serve's queue-depth metric). */
  name: string;
  /** A delivery not heard of (ack, nak, working) for this long is redelivered. */
  ackWaitMs: number;
  /** Deliveries of one message the queue makes at most. */
  maxDeliver: number;
}

/** One delivery of a job to this worker, to be settled exactly once (ack, nak or term). */
export interface Delivery {
  /** The queue's sequence of the message. */
  readonly seq: number;
  /** 1 for the first delivery, 2 for the first redelivery, … */
  readonly attempt: number;
  /** The job; undefined when the message is not a BuildJob (`unreadable` says why: term it). */
  readonly job: BuildJob | undefined;
  readonly unreadable?: string;
  /** Acknowledges; resolves once the queue has confirmed it, rejects when it could not. */
  ack(): Promise<void>;
  /** Hands the job back for redelivery after `delayMs` (default at once). Never throws. */
  nak(delayMs?: number): void;
  /** Tells the queue the job is still being worked on (resets ack_wait). Never throws. */
  working(): void;
  /** Drops the message for good: it can never be built. Never throws. */
  term(): void;
}

/** What the consumer tells the worker while it runs; the worker decides what to log. */
export type ConsumerEvent =
  | { type: 'newer-push'; push: PushMark }
  | { type: 'disconnected'; server?: string }
  | { type: 'reconnected'; server?: string }
  | { type: 'watch-failed'; error: unknown };

export interface ConsumerWatch {
  /** Also watch for newer pushes (supersede); false: connection events only. */
  pushes: boolean;
  /** Keys of the builds running now: only pushes of these keys are worth a lookup. */
  isBuilding(key: string): boolean;
}

/** The worker's side of the job queue: one durable consumer shared by every worker. */
export interface JobConsumer {
  /** Makes sure the durable consumer exists with these settings (creates or updates it). */
  ensure(settings: ConsumerSettings): Promise<void>;
  /**
   * One pull for one free slot (never a prefetch: a prefetched job's ack_wait runs while it waits).
   * Undefined when the pull expired, was aborted, or was interrupted by a reconnect.
   */
  next(options: { expiresMs: number; signal: AbortSignal }): Promise<Delivery | undefined>;
  /** The key newer pushes of the same branch share (undefined: nothing supersedes the job, e.g. a tag). */
  supersedeKeyOf(job: BuildJob): string | undefined;
  /** The newest job of `key` known now: waiting or running in the queue, or started by a worker. */
  newestPush(key: string): Promise<PushMark | undefined>;
  /** Records that `started` is running, unless a newer job of its key already is; returns the newest after. */
  raiseLatest(started: PushMark): Promise<PushMark>;
  /** Starts telling `listener` about newer pushes and the connection; returns the stop function. */
  watch(options: ConsumerWatch, listener: (event: ConsumerEvent) => void): () => void;
}

/** A running job as the worker shows it (`status --workers`). */
export interface RunningJobInfo {
  jobId: string;
  repository: string;
  branch?: string;
  startedAt: string;
}

/** What a worker says about itself to whoever lists the workers. */
export interface WorkerStatusPayload {
  name: string;
  concurrency: number;
  state: string;
  running: RunningJobInfo[];
}

/** Where live workers announce themselves (the NATS services API). */
export interface WorkerRegistry {
  register(status: () => WorkerStatusPayload): Promise<{ stop(): Promise<unknown> }>;
}
