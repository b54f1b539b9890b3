// Live workers, through the NATS services API (request/reply, no registry of our own): each worker
// registers a service named `oci-build-worker` whose stats carry its running jobs; listWorkers()
// asks every instance at once (scatter-gather) and collects the answers.

import { nuid, RequestStrategy, type Service } from 'nats';
import type { RunningJobInfo, WorkerRegistry, WorkerStatusPayload } from '../core/ports.js';
import { isNoResponders } from './nats-errors.js';
import { natsUnavailable, type NatsContext } from './nats.js';

export type { RunningJobInfo, WorkerStatusPayload };

export const WORKER_SERVICE_NAME = 'oci-build-worker';
export const WORKER_SERVICE_VERSION = '1.0.0';

export interface WorkerInfo {
  name: string;
  /** The service instance id (unique per worker process). */
  id: string;
  concurrency: number;
  running: RunningJobInfo[];
  /** INITIALIZED, RUNNING, DRAINING, STOPPED. */
  state?: string;
}

/**
 * Registers this worker. The `status` endpoint (subject `oci-build.worker.<instance>.status`)
 * answers the same payload as the stats data, for a direct look at one worker.
 */
export async function registerWorkerService(ctx: NatsContext, status: () => WorkerStatusPayload): Promise<Service> {
  const instance = nuid.next();
  const initial = status();
  try {
    const service = await ctx.nc.services.add({
      name: WORKER_SERVICE_NAME,
      version: WORKER_SERVICE_VERSION,
      description: 'oci-build worker: builds jobs from the JetStream queue',
      metadata: { worker: initial.name, concurrency: String(initial.concurrency) },
      statsHandler: async () => status(),
    });
    service.addEndpoint('status', {
      subject: `oci-build.worker.${instance}.status`,
      handler: (err, msg) => {
        if (err) return;
        msg.respond(JSON.stringify(status()));
      },
    });
    // A round trip to the server: once it answers, it holds the service's subscriptions, so a
    // `status --workers` from any connection sees this worker as soon as this returns.
    await ctx.nc.flush();
    return service;
  } catch (err) {
    throw natsUnavailable('Cannot register the worker with the NATS services API', err, ctx.config);
  }
}

/** The services API as the worker's registry. */
export function natsWorkerRegistry(ctx: NatsContext): WorkerRegistry {
  return { register: (status) => registerWorkerService(ctx, status) };
}

/**
 * Every live worker with its running jobs. Answers are collected until none has come for
 * `quietMs` after the last (workers answer from memory, within milliseconds), at most `maxWaitMs`.
 */
export async function listWorkers(ctx: NatsContext, options: { maxWaitMs?: number; quietMs?: number } = {}): Promise<WorkerInfo[]> {
  const workers: WorkerInfo[] = [];
  try {
    const client = ctx.nc.services.client({ strategy: RequestStrategy.JitterTimer, maxWait: options.maxWaitMs ?? 2_000, jitter: options.quietMs ?? 300 });
    for await (const stats of await client.stats(WORKER_SERVICE_NAME)) {
      const data = stats.endpoints?.find((e) => e.name === 'status')?.data as WorkerStatusPayload | undefined;
      workers.push({
        name: data?.name ?? stats.metadata?.worker ?? stats.id,
        id: stats.id,
        concurrency: data?.concurrency ?? Number(stats.metadata?.concurrency ?? 1),
        running: data?.running ?? [],
        ...(data?.state ? { state: data.state } : {}),
      });
    }
  } catch (err) {
    // Nobody is subscribed, i.e. no worker is running.
    if (isNoResponders(err)) return [];
    throw natsUnavailable('Cannot list the workers', err, ctx.config);
  }
  return workers.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}
