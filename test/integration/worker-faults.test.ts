// Faults: a worker process killed with SIGKILL mid-build, SIGTERM during a build, NATS restarted
// mid-run. Worker processes run the compiled worker through fixtures/worker-child.mjs.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeError } from '../../src/core/errors.js';
import type { BuildJob } from '../../src/core/types.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { publishJob, queueStats } from '../../src/queue/job-queue.js';
import { readLog } from '../../src/queue/log-stream.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import { createWorkerPorts, startNatsWorker } from '../../src/compose.js';
import type { Delivery, JobConsumer } from '../../src/core/ports.js';
import { startWorker, type Worker } from '../../src/worker/worker.js';
import { REPO_ROOT, tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { fakeJob, fakePipelineDeps, newEvents } from './fixtures/fake-build.js';
import { isolatedQueue, memoryLogger, waitForStatus } from './fixtures/worker-harness.js';

let server: NatsServer;
const contexts: NatsContext[] = [];
const workers: Worker[] = [];
const children: ChildProcess[] = [];

let build: TempDir;

beforeAll(async () => {
  // The child workers run the compiled code, built into a private directory: the shared dist/ may
  // be rewritten by another test run while a child loads it. schema/ and node_modules are linked
  // next to it so dist's relative paths resolve as in the repository. Other parts of the tree may
  // not type-check while they are being written; tsc still emits, so only our files are checked.
  build = await tempDir('oci-build-worker-dist-');
  await symlink(join(REPO_ROOT, 'schema'), join(build.path, 'schema'));
  await symlink(join(REPO_ROOT, 'node_modules'), join(build.path, 'node_modules'));
  try {
    execFileSync(
      process.execPath,
      [join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', join(build.path, 'dist'), '--sourceMap', 'false'],
      { cwd: REPO_ROOT, stdio: 'ignore' },
    );
  } catch {
    // type errors elsewhere; emitted anyway
  }
  for (const f of ['dist/compose.js', 'dist/worker/worker.js', 'dist/queue/nats.js', 'dist/config/config.js']) {
    if (!existsSync(join(build.path, f))) throw new Error(`${f} was not built`);
  }
  server = await startNatsServer();
});

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  await Promise.all(contexts.splice(0).map((c) => closeNats(c)));
});

afterAll(async () => {
  await server?.stop();
  await build?.cleanup();
});

async function queue(): Promise<NatsContext> {
  const ctx = await isolatedQueue(server.url, 'f');
  contexts.push(ctx);
  return ctx;
}

interface Child {
  process: ChildProcess;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function spawnWorker(ctx: NatsContext, name: string, env: Record<string, string> = {}): Promise<Child> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'test/integration/fixtures/worker-child.mjs')], {
    env: {
      ...process.env,
      DIST_DIR: join(build.path, 'dist'),
      NATS_URL: ctx.config.url,
      JOBS_STREAM: ctx.config.stream,
      JOBS_SUBJECT: ctx.config.subject,
      STATUS_BUCKET: ctx.config.statusBucket,
      WORKER_NAME: name,
      ACK_WAIT_MS: '2000',
      HEARTBEAT_MS: '500',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const output: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => output.push(...d.split('\n').filter(Boolean)));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => output.push(...d.split('\n').filter(Boolean)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await waitFor(() => output.some((l) => l.includes('child ready')) || child.exitCode !== null, { timeoutMs: 20_000, what: `worker ${name} to start` });
  if (child.exitCode !== null) throw new Error(`worker ${name} exited: ${output.join('\n')}`);
  return { process: child, output, exited };
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of iterable) out.push(line);
  return out;
}

/** Publishes like `serve` would on a webhook redelivery: retry while NATS comes back. */
async function publishRetrying(ctx: NatsContext, job: BuildJob): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await publishJob(ctx, job);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`could not publish ${job.id}: ${describeError(err)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe('worker faults', () => {
  it('a worker killed with SIGKILL mid-build: the job is redelivered and succeeds on another worker', async () => {
    const ctx = await queue();
    const a = await spawnWorker(ctx, 'child-a');
    await publishJob(ctx, fakeJob('killed-1', { script: 'sleep=5000' }));
    const running = await waitForStatus(ctx, 'killed-1', 'running');
    expect(running.worker).toBe('child-a');
    // Mid-build: killed once its build step has begun and said so in the stored log (a CI run
    // under load killed it after `running` was recorded, before the line was published).
    await waitFor(async () => (await collect(readLog(ctx, 'killed-1', { follow: false }))).includes('child child-a building'), { timeoutMs: 10_000, what: 'child-a to be building' });
    a.process.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');

    const events = newEvents();
    const b = await startNatsWorker({
      nats: ctx,
      name: 'worker-b',
      pipelineDeps: fakePipelineDeps(events, 'worker-b'),
      logger: memoryLogger(),
      ackWaitMs: 2_000,
      heartbeatMs: 500,
      pullExpiresMs: 2_000,
    });
    workers.push(b);
    const done = await waitForStatus(ctx, 'killed-1', ['succeeded', 'failed', 'cancelled'], 30_000);
    expect(done).toMatchObject({ status: 'succeeded', worker: 'worker-b' });
    expect(done.warnings).toEqual(['delivery 1 of 5 was interrupted on child-a (it stopped without settling the job); redelivered']);
    expect(events.attempts.get('killed-1')).toBe(1);
    const log = await collect(readLog(ctx, 'killed-1', { follow: true }));
    expect(log).toContain('child child-a building');
    expect(log).toContain('==> delivery 2 of 5 on worker-b');
    expect(log.at(-1)).toBe('==> succeeded');
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'the job to be acknowledged' });
  });

  it('SIGTERM during a build: the build finishes, then the worker exits 0', async () => {
    const ctx = await queue();
    const a = await spawnWorker(ctx, 'child-term');
    await publishJob(ctx, fakeJob('term-1', { script: 'sleep=2500' }));
    await waitForStatus(ctx, 'term-1', 'running');
    a.process.kill('SIGTERM');
    const exit = await a.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    // By the time it exited the build had finished and been recorded.
    const record = await new KvBuildStore(ctx).get('term-1');
    expect(record).toMatchObject({ status: 'succeeded', worker: 'child-term' });
    expect((await queueStats(ctx)).total).toBe(0);
    expect(a.output.some((l) => l.includes('"msg":"worker stopped"'))).toBe(true);
  });

  it('a second signal cancels the running build at once and hands it back; the worker still exits 0', async () => {
    const ctx = await queue();
    const a = await spawnWorker(ctx, 'child-twice');
    await publishJob(ctx, fakeJob('twice-1', { script: 'sleep=60000' }));
    await waitForStatus(ctx, 'twice-1', 'running');
    a.process.kill('SIGTERM');
    await waitFor(() => a.output.some((l) => l.includes('waiting for running builds')), { what: 'the worker to drain' });
    const t0 = Date.now();
    a.process.kill('SIGINT');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(5_000);
    const record = await new KvBuildStore(ctx).get('twice-1');
    expect(record?.status).toBe('queued');
    expect(record?.warnings?.at(-1)).toMatch(/handed back by child-twice at shutdown/);
    expect((await queueStats(ctx)).total).toBe(1);
  });

  it('NATS restarted mid-run: nothing accepted is lost, every job ends succeeded once', async () => {
    const ctx = await queue();
    const events = newEvents();
    const logger = memoryLogger();
    const w = await startNatsWorker({
      nats: ctx,
      name: 'worker-r',
      concurrency: 2,
      pipelineDeps: fakePipelineDeps(events, 'worker-r'),
      logger,
      pullExpiresMs: 2_000,
      retryDelayMs: 200,
    });
    workers.push(w);
    const before = Array.from({ length: 8 }, (_, i) => `before-${i}`);
    for (const id of before) await publishJob(ctx, fakeJob(id, { branch: id, script: 'sleep=600 lines=20' }));
    await waitForStatus(ctx, 'before-1', ['succeeded']);
    // The restart meets running builds: right after one ends the next may not be pulled yet (a CI
    // run under load saw none running at that instant).
    await waitFor(() => w.runningJobs().length > 0, { timeoutMs: 10_000, what: 'the worker to run the next jobs' });
    const runningAtRestart = w.runningJobs().length;
    await server.restart();
    const after = Array.from({ length: 4 }, (_, i) => `after-${i}`);
    for (const id of after) await publishRetrying(ctx, fakeJob(id, { branch: id, script: 'sleep=200' }));
    const records = await Promise.all([...before, ...after].map((id) => waitForStatus(ctx, id, ['succeeded', 'failed', 'cancelled'], 60_000)));
    expect(records.map((r) => `${r.id}:${r.status}`)).toEqual([...before, ...after].map((id) => `${id}:succeeded`));
    await waitFor(async () => (await queueStats(ctx)).total === 0, { timeoutMs: 20_000, what: 'every job to be acknowledged' });
    expect(runningAtRestart).toBeGreaterThan(0);
    expect(logger.lines.some((l) => l.msg === 'reconnected to NATS')).toBe(true);
    // Built once each: a redelivery of a finished job is recognised, not rebuilt.
    const builds = events.started.map((s) => s.id).sort();
    expect(builds).toEqual([...before, ...after].sort());
  });

  it('the final record written but its ack lost: the redelivery is recognised and acknowledged, never built again', async () => {
    const ctx = await queue();
    const events = newEvents();
    const logger = memoryLogger();
    const ports = await createWorkerPorts(ctx);
    // The test hook: the first acknowledgement of the job never reaches JetStream, as when the
    // connection drops between the record's write and the ack. JetStream redelivers after ack_wait.
    const attempts: number[] = [];
    const real = ports.consumer;
    const consumer: JobConsumer = {
      ensure: (s) => real.ensure(s),
      supersedeKeyOf: (j) => real.supersedeKeyOf(j),
      newestPush: (k) => real.newestPush(k),
      raiseLatest: (p) => real.raiseLatest(p),
      watch: (o, l) => real.watch(o, l),
      async next(options) {
        const d = await real.next(options);
        if (!d || d.job?.id !== 'lost-ack-1') return d;
        attempts.push(d.attempt);
        if (d.attempt > 1) return d;
        const lost: Delivery = Object.create(d);
        lost.ack = async () => {
          throw new Error('TIMEOUT (the connection dropped before the ack was confirmed)');
        };
        return lost;
      },
    };
    const w = await startWorker({
      ...ports,
      consumer,
      name: 'worker-lost',
      pipelineDeps: fakePipelineDeps(events, 'worker-lost'),
      logger,
      ackWaitMs: 1_000,
      heartbeatMs: 250,
      pullExpiresMs: 1_000,
    });
    workers.push(w);
    await publishJob(ctx, fakeJob('lost-ack-1', { script: 'sleep=100' }));
    const record = await waitForStatus(ctx, 'lost-ack-1', ['succeeded', 'failed', 'cancelled']);
    expect(record).toMatchObject({ status: 'succeeded', worker: 'worker-lost' });
    // Redelivered once ack_wait is over, then acknowledged for good.
    await waitFor(async () => (await queueStats(ctx)).total === 0, { timeoutMs: 15_000, what: 'the redelivery to be acknowledged' });
    expect(attempts).toEqual([1, 2]);
    expect(logger.lines.filter((l) => l.msg === 'acknowledgement not confirmed')).toHaveLength(1);
    expect(logger.lines.filter((l) => l.msg === 'job already finished (its acknowledgement was lost): acknowledging' && l.jobId === 'lost-ack-1')).toHaveLength(1);
    // Built once: one checkout, one build phase; the record is the first delivery's, untouched.
    expect(events.attempts.get('lost-ack-1')).toBe(1);
    expect(events.started.map((s) => s.id)).toEqual(['lost-ack-1']);
    expect(await new KvBuildStore(ctx).get('lost-ack-1')).toEqual(record);
    expect(w.stats).toMatchObject({ started: 1, succeeded: 1 });
  });
});
