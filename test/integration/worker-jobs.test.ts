// The worker against a real nats-server, with the real runPipeline over fake phase adapters
// (fixtures/fake-build.ts): concurrency, heartbeats, retries, failures, drain, hand-back, supersede.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { jobKey, publishJob, queueStats, raiseLatest } from '../../src/queue/job-queue.js';
import { readLog } from '../../src/queue/log-stream.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import { listWorkers } from '../../src/queue/workers.js';
import { startNatsWorker, type NatsWorkerOptions } from '../../src/compose.js';
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
  const ctx = await isolatedQueue(server.url, 'w');
  contexts.push(ctx);
  return ctx;
}

async function worker(ctx: NatsContext, events: FakeBuildEvents, options: Partial<NatsWorkerOptions> = {}): Promise<Worker> {
  const name = options.name ?? `worker-${workers.length + 1}`;
  const w = await startNatsWorker({
    nats: ctx,
    pipelineDeps: fakePipelineDeps(events, name),
    logger: memoryLogger(),
    name,
    retryDelayMs: 100,
    pullExpiresMs: 2_000,
    ...options,
  });
  workers.push(w);
  return w;
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of iterable) out.push(line);
  return out;
}

describe('worker', () => {
  it('runs N builds at once, records each, logs JSON with jobId/phase/durationMs/commit, and ends each log', async () => {
    const ctx = await queue();
    const events = newEvents();
    const logger = memoryLogger();
    const w = await worker(ctx, events, { concurrency: 3, logger });
    const ids = Array.from({ length: 6 }, (_, i) => `par-${i}`);
    for (const id of ids) await publishJob(ctx, fakeJob(id, { branch: `b${id}`, script: 'sleep=700 lines=3' }));
    const follower = collect(readLog(ctx, 'par-0', { follow: true }));
    const records = await Promise.all(ids.map((id) => waitForStatus(ctx, id, ['succeeded', 'failed', 'cancelled'])));
    expect(records.map((r) => r.status)).toEqual(ids.map(() => 'succeeded'));
    expect(events.maxRunning).toBe(3);
    expect(records[0]).toMatchObject({ worker: w.name, trigger: 'webhook' });
    expect(records[0]?.phases.map((p) => `${p.name}:${p.status}`)).toEqual(['source:succeeded', 'detect:succeeded', 'build:succeeded']);
    const lines = await follower;
    expect(lines).toContain('build line 3');
    expect(lines.at(-1)).toBe('==> succeeded');
    const phaseLine = logger.lines.find((l) => l.msg === 'phase ended' && l.phase === 'build' && l.jobId === 'par-0');
    expect(phaseLine).toMatchObject({ jobId: 'par-0', phase: 'build', commit: 'c0ffee'.padEnd(40, '0'), worker: w.name });
    expect(typeof phaseLine?.durationMs).toBe('number');
    expect(logger.lines.find((l) => l.msg === 'job finished' && l.jobId === 'par-0')).toMatchObject({ status: 'succeeded' });
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the stream to be empty (every job acknowledged)' });
  });

  it('a long build keeps telling JetStream it is in progress: never redelivered past ack_wait', async () => {
    const ctx = await queue();
    const events = newEvents();
    // Heartbeats 5× per ack_wait: a loaded machine's event-loop delays do not make it flaky.
    const options = { ackWaitMs: 2_000, heartbeatMs: 400 };
    await worker(ctx, events, options);
    await worker(ctx, events, options);
    await publishJob(ctx, fakeJob('long-1', { script: 'sleep=6000' }));
    const record = await waitForStatus(ctx, 'long-1', ['succeeded', 'failed', 'cancelled']);
    expect(record.status).toBe('succeeded');
    // 6 s of build with a 2 s ack_wait: without heartbeats the other worker would have started it too.
    expect(events.started.map((s) => s.id)).toEqual(['long-1']);
    expect(events.attempts.get('long-1')).toBe(1);
  });

  it('a transient failure is retried with backoff, then ends failed after maxDeliveries with the reason', async () => {
    const ctx = await queue();
    const events = newEvents();
    await worker(ctx, events, { maxDeliveries: 3, retryDelayMs: 150 });
    await publishJob(ctx, fakeJob('flaky-always', { script: 'result=transient' }));
    await publishJob(ctx, fakeJob('flaky-once', { branch: 'other', script: 'result=transient-once' }));
    const failed = await waitForStatus(ctx, 'flaky-always', ['failed', 'succeeded', 'cancelled']);
    expect(failed.status).toBe('failed');
    expect(events.attempts.get('flaky-always')).toBe(3);
    expect(failed.error).toMatchObject({ phase: 'source', code: 'E_SERVICE_UNAVAILABLE' });
    expect(failed.error?.message).toContain('unreachable (fake)');
    expect(failed.error?.message).toContain('gave up after 3 attempts');
    expect(failed.warnings?.filter((w) => /^delivery \d of 3 failed/.test(w))).toHaveLength(2);
    const log = await collect(readLog(ctx, 'flaky-always', { follow: true }));
    expect(log.filter((l) => /^==> delivery \d of 3 failed on/.test(l))).toHaveLength(2);
    expect(log.filter((l) => /^==> delivery [23] of 3 on worker-\d+$/.test(l))).toHaveLength(2);
    expect(log.at(-1)).toBe('==> failed');

    const ok = await waitForStatus(ctx, 'flaky-once', ['failed', 'succeeded', 'cancelled']);
    expect(ok.status).toBe('succeeded');
    expect(events.attempts.get('flaky-once')).toBe(2);
    expect(ok.warnings?.[0]).toMatch(/^delivery 1 of 3 failed on worker-\d+ \(E_SERVICE_UNAVAILABLE/);
    expect(ok.error).toBeUndefined();
  });

  it('a job whose workers keep dying ends failed after maxDeliveries instead of staying running', async () => {
    const ctx = await queue();
    const events = newEvents();
    // The first worker sets up the consumer (max_deliver = maxDeliveries + 1) and is gone.
    const first = await worker(ctx, events, { maxDeliveries: 1, ackWaitMs: 1_000, heartbeatMs: 250 });
    await first.stop();
    await publishJob(ctx, fakeJob('doomed', { script: 'sleep=100' }));
    // A "worker" takes it and dies without a word: no ack, no nak, no heartbeat.
    const consumer = await ctx.js.consumers.get(ctx.config.stream, 'oci-build-worker');
    const taken = await consumer.next({ expires: 5_000 });
    expect(taken?.info.deliveryCount).toBe(1);
    await worker(ctx, events, { maxDeliveries: 1, ackWaitMs: 1_000, heartbeatMs: 250 });
    const record = await waitForStatus(ctx, 'doomed', ['failed', 'succeeded', 'cancelled']);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ phase: 'queue', code: 'E_SERVICE_UNAVAILABLE' });
    expect(record.error?.message).toContain('Gave up after 1 delivery: the workers running this build stopped before it ended');
    expect(events.attempts.get('doomed')).toBeUndefined();
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the job to be acknowledged' });
  });

  it('a build failure ends the job: failed, acknowledged once, not redelivered', async () => {
    const ctx = await queue();
    const events = newEvents();
    await worker(ctx, events, { ackWaitMs: 1_000, heartbeatMs: 250 });
    await publishJob(ctx, fakeJob('broken', { script: 'result=fail' }));
    const record = await waitForStatus(ctx, 'broken', ['failed', 'succeeded', 'cancelled']);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ phase: 'build', code: 'E_BUILD_FAILED' });
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the failed job to be acknowledged' });
    await new Promise((r) => setTimeout(r, 1_800)); // past ack_wait
    expect(events.attempts.get('broken')).toBe(1);
    expect((await new KvBuildStore(ctx).get('broken'))?.status).toBe('failed');
  });

  it('drain() lets the running build finish, pulls nothing more, and stops', async () => {
    const ctx = await queue();
    const events = newEvents();
    const w = await worker(ctx, events);
    await publishJob(ctx, fakeJob('drain-1', { script: 'sleep=1500' }));
    await waitForStatus(ctx, 'drain-1', 'running');
    const drained = w.drain();
    expect(w.state).toBe('DRAINING');
    await publishJob(ctx, fakeJob('drain-2', { branch: 'later' }));
    await drained;
    expect(w.state).toBe('STOPPED');
    expect((await new KvBuildStore(ctx).get('drain-1'))?.status).toBe('succeeded');
    expect(events.attempts.get('drain-2')).toBeUndefined();
    expect((await queueStats(ctx)).total).toBe(1);
    // The job left in the queue is built by the next worker.
    await worker(ctx, events);
    expect((await waitForStatus(ctx, 'drain-2', ['succeeded', 'failed'])).status).toBe('succeeded');
  });

  it('drain() past shutdownGrace, or stop(), cancels at once and hands the job back to another worker', async () => {
    const ctx = await queue();
    const events = newEvents();
    const a = await worker(ctx, events, { shutdownGraceMs: 300 });
    await publishJob(ctx, fakeJob('handback', { script: 'sleep=30000' }));
    await waitForStatus(ctx, 'handback', 'running');
    const t0 = Date.now();
    await a.drain();
    expect(Date.now() - t0).toBeLessThan(5_000);
    const queued = await new KvBuildStore(ctx).get('handback');
    expect(queued?.status).toBe('queued');
    expect(queued?.warnings?.at(-1)).toMatch(/handed back by worker-\d+ at shutdown/);

    const b = await worker(ctx, events, { name: 'worker-b' });
    await waitForStatus(ctx, 'handback', 'running');
    const t1 = Date.now();
    await b.stop();
    expect(Date.now() - t1).toBeLessThan(5_000);
    expect((await new KvBuildStore(ctx).get('handback'))?.status).toBe('queued');
    expect(events.attempts.get('handback')).toBe(2);
  });

  it('a newer push to the same branch cancels the running and the queued older builds', async () => {
    const ctx = await queue();
    const events = newEvents();
    await worker(ctx, events, { concurrency: 1 });
    await publishJob(ctx, fakeJob('sup-1', { repo: 'acme/sup', script: 'sleep=20000' }));
    await waitForStatus(ctx, 'sup-1', 'running');
    await publishJob(ctx, fakeJob('sup-2', { repo: 'acme/sup', script: 'sleep=100' }));
    await publishJob(ctx, fakeJob('other-branch', { repo: 'acme/sup', branch: 'dev', script: 'sleep=100' }));
    await publishJob(ctx, fakeJob('sup-3', { repo: 'acme/sup', script: 'sleep=100' }));

    const first = await waitForStatus(ctx, 'sup-1', ['cancelled', 'succeeded', 'failed'], 10_000);
    expect(first.status).toBe('cancelled');
    // The first newer push cancels the running build at once; the next one supersedes that one.
    expect(first.cancelledBy).toBe('sup-2');
    expect(first.error?.message).toBe('Superseded by build sup-2, a newer push to acme/sup main');
    expect(first.phases.find((p) => p.name === 'build')?.status).toBe('cancelled');
    const second = await waitForStatus(ctx, 'sup-2', ['cancelled', 'succeeded', 'failed']);
    expect(second).toMatchObject({ status: 'cancelled', cancelledBy: 'sup-3', error: { phase: 'queue', code: 'E_CANCELLED' } });
    expect((await waitForStatus(ctx, 'sup-3', ['cancelled', 'succeeded', 'failed'])).status).toBe('succeeded');
    expect((await waitForStatus(ctx, 'other-branch', ['cancelled', 'succeeded', 'failed'])).status).toBe('succeeded');
    // sup-2 never built; its log says why and is ended.
    expect(events.attempts.get('sup-2')).toBeUndefined();
    expect(await collect(readLog(ctx, 'sup-2', { follow: true }))).toEqual(['error: Superseded by build sup-3, a newer push to acme/sup main']);
  });

  it('a running build is cancelled as soon as latest.<jobKey> moves past it (KV watch), whatever subject it came on', async () => {
    const ctx = await queue();
    const events = newEvents();
    // heartbeatMs long: the cancel must come from the watch, not from the heartbeat's poll.
    await worker(ctx, events, { heartbeatMs: 20_000, ackWaitMs: 60_000 });
    // Published on the plain subject, as a publisher that does not use publishJob might.
    const j = fakeJob('watched-old', { repo: 'acme/watched', script: 'sleep=20000' });
    const ack = await ctx.js.publish(ctx.config.subject, JSON.stringify(j), { msgID: j.id });
    await waitForStatus(ctx, 'watched-old', 'running');
    const t0 = Date.now();
    await raiseLatest(ctx, jobKey('acme/watched', 'main'), { id: 'watched-new', seq: ack.seq + 1 });
    const record = await waitForStatus(ctx, 'watched-old', ['cancelled', 'succeeded', 'failed'], 5_000);
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'watched-new' });
    expect(Date.now() - t0).toBeLessThan(4_000);
  });

  it('an older job reaching a worker after a newer one already started (KV latest) is cancelled without building', async () => {
    const ctx = await queue();
    const events = newEvents();
    const old = await publishJob(ctx, fakeJob('late-old', { repo: 'acme/late', script: 'sleep=100' }));
    // A worker elsewhere already started a newer build of the branch and it has finished (acked).
    await raiseLatest(ctx, jobKey('acme/late', 'main'), { id: 'late-new', seq: old.seq + 1 });
    await worker(ctx, events);
    const record = await waitForStatus(ctx, 'late-old', ['cancelled', 'succeeded', 'failed']);
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'late-new' });
    expect(events.attempts.get('late-old')).toBeUndefined();
  });

  it('with cancelSuperseded off, older builds run to the end', async () => {
    const ctx = await queue();
    const events = newEvents();
    await worker(ctx, events, { concurrency: 2, cancelSuperseded: false });
    await publishJob(ctx, fakeJob('keep-1', { repo: 'acme/keep', script: 'sleep=800' }));
    await publishJob(ctx, fakeJob('keep-2', { repo: 'acme/keep', script: 'sleep=100' }));
    expect((await waitForStatus(ctx, 'keep-1', ['cancelled', 'succeeded', 'failed'])).status).toBe('succeeded');
    expect((await waitForStatus(ctx, 'keep-2', ['cancelled', 'succeeded', 'failed'])).status).toBe('succeeded');
  });

  it('registers with the services API: listWorkers shows the running jobs', async () => {
    const ctx = await queue();
    const events = newEvents();
    await worker(ctx, events, { name: 'listed', concurrency: 2 });
    await publishJob(ctx, fakeJob('listed-1', { repo: 'acme/listed', script: 'sleep=3000' }));
    await waitForStatus(ctx, 'listed-1', 'running');
    const listed = (await listWorkers(ctx, { maxWaitMs: 500 })).filter((w) => w.name === 'listed');
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ concurrency: 2, state: 'RUNNING', running: [{ jobId: 'listed-1', repository: 'acme/listed', branch: 'main' }] });
  });
});
