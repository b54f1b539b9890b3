// Cancel requests (queue/cancel-requests.ts) against a real nats-server and a real worker (the real
// runPipeline over the fake phase adapters): a running build is cancelled by its worker, which says
// who asked; a queued build cancelled by compare-and-set is acknowledged without being built; a
// request made before the worker took the job is found when the build starts.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cancelledByToken, type CancelRequest } from '../../src/core/cancel-request.js';
import { initialRecord } from '../../src/core/pipeline.js';
import { startNatsWorker } from '../../src/compose.js';
import { KvCancelRequests } from '../../src/queue/cancel-requests.js';
import { publishJob, queueStats } from '../../src/queue/job-queue.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { readLog } from '../../src/queue/log-stream.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import type { Worker } from '../../src/worker/worker.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { fakeJob, fakePipelineDeps, newEvents, type FakeBuildEvents } from './fixtures/fake-build.js';
import { isolatedQueue, memoryLogger, waitForStatus } from './fixtures/worker-harness.js';

let server: NatsServer;
const contexts: NatsContext[] = [];
const workers: Worker[] = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  await Promise.all(contexts.splice(0).map((c) => closeNats(c)));
});

afterAll(async () => {
  await server?.stop();
});

async function queue(): Promise<NatsContext> {
  const ctx = await isolatedQueue(server.url, 'cancel');
  contexts.push(ctx);
  return ctx;
}

async function worker(ctx: NatsContext, events: FakeBuildEvents): Promise<Worker> {
  const w = await startNatsWorker({ nats: ctx, pipelineDeps: fakePipelineDeps(events, 'w1'), logger: memoryLogger(), name: 'w1', retryDelayMs: 100, pullExpiresMs: 2_000 });
  workers.push(w);
  return w;
}

function request(id: string, reason?: string): CancelRequest {
  return { id, by: cancelledByToken(2), ...(reason ? { reason } : {}), requestedAt: new Date().toISOString() };
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of iterable) out.push(line);
  return out;
}

describe('cancel requests', () => {
  it('a running build is cancelled by its worker, which records who asked and why, and ends the log', async () => {
    const ctx = await queue();
    const events = newEvents();
    const w = await worker(ctx, events);
    await publishJob(ctx, fakeJob('run-1', { script: 'sleep=60000' }));
    await waitForStatus(ctx, 'run-1', 'running');
    await waitFor(() => w.runningJobs().length === 1, { what: 'the worker to run the build' });
    const follower = collect(readLog(ctx, 'run-1', { follow: true }));
    await new KvCancelRequests(ctx).request(request('run-1', 'wrong commit'));
    const record = await waitForStatus(ctx, 'run-1', ['cancelled', 'succeeded', 'failed']);
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'api:token#2', cancelReason: 'wrong commit', worker: 'w1' });
    expect(record.error?.message).toBe('Cancelled by api:token#2: wrong commit');
    expect(record.phases.at(-1)?.status).toBe('cancelled');
    // The follower stops: the worker ended the log.
    expect((await follower).join('\n')).toContain('Cancelled by api:token#2');
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the job to be acknowledged' });
  });

  it('a queued build cancelled by compare-and-set is acknowledged, never built', async () => {
    const ctx = await queue();
    const cancels = new KvCancelRequests(ctx);
    const job = fakeJob('queued-1', { script: 'sleep=10' });
    await new KvBuildStore(ctx).createIfAbsent(initialRecord(job));
    await publishJob(ctx, job);
    await cancels.request(request('queued-1'));
    const result = await cancels.cancelQueued(request('queued-1'));
    expect(result.cancelled).toBe(true);
    // Twice: the record is no longer queued, so nothing is written.
    expect((await cancels.cancelQueued(request('queued-1'))).cancelled).toBe(false);
    await cancels.endLog('queued-1', 'cancelled before it started');
    const events = newEvents();
    await worker(ctx, events);
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the job to be acknowledged' });
    expect(events.started.map((s) => s.id)).not.toContain('queued-1');
    const record = await new KvBuildStore(ctx).get('queued-1');
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'api:token#2', error: { phase: 'queue', code: 'E_CANCELLED' } });
    expect(await collect(readLog(ctx, 'queued-1', { follow: true }))).toEqual(['cancelled before it started']);
  });

  it('a request made before a worker took the job (its compare-and-set lost the race) cancels it when it starts', async () => {
    const ctx = await queue();
    await new KvCancelRequests(ctx).request(request('race-1', 'too late for the record'));
    await publishJob(ctx, fakeJob('race-1', { script: 'sleep=60000' }));
    const events = newEvents();
    await worker(ctx, events);
    const record = await waitForStatus(ctx, 'race-1', ['cancelled', 'succeeded', 'failed']);
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'api:token#2', cancelReason: 'too late for the record' });
  });
});
