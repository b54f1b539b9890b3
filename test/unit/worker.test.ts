// The worker driven through its ports: an in-memory queue (helpers/fake-consumer.ts), the memory
// store and log, the real runPipeline over fake phase adapters. No nats-server: crash, drain,
// supersede, retry limits and a redelivered finished job, each settled as the worker promises.

import { afterEach, describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '../../src/core/errors.js';
import { initialRecord, runPipeline } from '../../src/core/pipeline.js';
import { parseConfigWithSources } from '../../src/config/config.js';
import { imageOverridesOf } from '../../src/cli/commands/worker.js';
import type { CodeBuilder, SourceProvider } from '../../src/core/ports.js';
import type { BuildJob, BuildRecord, JobStatus } from '../../src/core/types.js';
import { Worker, startWorker } from '../../src/worker/worker.js';
import type { WorkerOptions } from '../../src/worker/worker-options.js';
import { FakeJobQueue, MemoryJobLogStore, type FakeConsumerSession } from '../helpers/fake-consumer.js';
import { FakeImageBuilder, MemoryBuildStore, fakeDetector, fakeSource } from '../helpers/fakes.js';
import { waitFor } from '../helpers/ports.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

function job(id: string, options: { branch?: string; repo?: string } = {}): BuildJob {
  return {
    id,
    trigger: 'webhook',
    source: { kind: 'git', url: `http://127.0.0.1:9/${options.repo ?? 'acme/app'}.git`, ref: `refs/heads/${options.branch ?? 'main'}` },
    repository: { fullName: options.repo ?? 'acme/app', branch: options.branch ?? 'main', ref: `refs/heads/${options.branch ?? 'main'}`, commit: 'c'.repeat(40) },
    noImage: true,
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

/** A builder that counts builds and, per job, succeeds, waits for a release or an abort, or throws. */
function scriptedBuilder(script: (jobId: string) => 'ok' | 'block' | 'transient' = () => 'ok') {
  const builds: string[] = [];
  const releases = new Map<string, () => void>();
  let current = '';
  const builder: CodeBuilder = {
    async build(workspace, ctx) {
      const id = current;
      builds.push(id);
      const what = script(id);
      if (what === 'transient') throw new ServiceUnavailableError(`the registry is away (fake, ${id})`);
      if (what === 'block') {
        await new Promise<void>((resolve, reject) => {
          releases.set(id, resolve);
          const onAbort = () => reject(ctx.signal.reason);
          if (ctx.signal.aborted) onAbort();
          ctx.signal.addEventListener('abort', onAbort, { once: true });
        });
      }
      return workspace.selected.map((project) => ({ project, status: 'succeeded' as const, startedAt: new Date().toISOString(), durationMs: 1 }));
    },
  };
  const source: SourceProvider = {
    async checkout(s, j, ctx) {
      current = j.id;
      return fakeSource().checkout(s, j, ctx);
    },
  };
  return { builder, source, builds, release: (id: string) => releases.get(id)?.(), isBlocked: (id: string) => releases.has(id) };
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

function setup(script?: Parameters<typeof scriptedBuilder>[0], options: Partial<WorkerOptions> = {}) {
  const queue = new FakeJobQueue();
  const store = new MemoryBuildStore();
  const logs = new MemoryJobLogStore();
  const b = scriptedBuilder(script);
  const images = new FakeImageBuilder();
  const start = async (name: string, extra: Partial<WorkerOptions> = {}): Promise<{ worker: Worker; consumer: FakeConsumerSession }> => {
    const consumer = queue.session();
    const worker = await startWorker({
      consumer,
      store,
      logs,
      name,
      logger: silent,
      pipelineDeps: () => ({ source: b.source, detector: fakeDetector(), builder: b.builder, images }),
      ackWaitMs: 1_000,
      heartbeatMs: 100,
      pullExpiresMs: 1_000,
      retryDelayMs: 20,
      ...options,
      ...extra,
    });
    workers.push(worker);
    return { worker, consumer };
  };
  const statusOf = async (id: string, wanted: JobStatus[]): Promise<BuildRecord> => {
    await waitFor(async () => wanted.includes((await store.get(id))?.status ?? ('none' as JobStatus)), { timeoutMs: 5_000, intervalMs: 5, what: `${id} to be ${wanted.join('|')}` });
    return (await store.get(id))!;
  };
  return { queue, store, logs, ...b, start, statusOf };
}

const FINAL: JobStatus[] = ['succeeded', 'failed', 'cancelled'];

describe('Worker (fake consumer)', () => {
  it('builds a job, writes the final record before the ack, and ends the log', async () => {
    const t = setup();
    const { worker } = await t.start('w1');
    expect(worker.state).toBe('RUNNING');
    expect(t.queue.settings).toEqual({ name: 'oci-build-worker', ackWaitMs: 1_000, maxDeliver: 6 });
    t.queue.publish(job('ok-1'));
    const record = await t.statusOf('ok-1', FINAL);
    expect(record).toMatchObject({ status: 'succeeded', worker: 'w1' });
    await waitFor(() => t.queue.stateOf('ok-1') === 'acked', { timeoutMs: 2_000, intervalMs: 5 });
    expect(t.queue.settlementsOf('ok-1')).toEqual([{ op: 'ack', seq: 1, attempt: 1 }]);
    expect(t.logs.ended.has('ok-1')).toBe(true);
    expect(t.builds).toEqual(['ok-1']);
  });

  it('an unreadable message is terminated, never built', async () => {
    const t = setup();
    await t.start('w1');
    const seq = t.queue.publishGarbage();
    await waitFor(() => t.queue.settlements.some((s) => s.seq === seq), { timeoutMs: 2_000, intervalMs: 5 });
    expect(t.queue.settlements).toEqual([{ op: 'term', seq, attempt: 1 }]);
    expect(t.builds).toEqual([]);
  });

  it('crash: a worker dies mid-build (record running); the redelivery notes it and builds once more on another worker', async () => {
    const t = setup((id) => (id === 'crash-1' && t.builds.length === 1 ? 'block' : 'ok'));
    const a = await t.start('worker-a');
    t.queue.publish(job('crash-1'));
    await t.statusOf('crash-1', ['running']);
    await waitFor(() => t.isBlocked('crash-1'), { timeoutMs: 2_000, intervalMs: 5 });
    // SIGKILL: nothing more from worker-a reaches the queue; JetStream redelivers after ack_wait.
    a.consumer.die();
    await t.start('worker-b');
    const done = await t.statusOf('crash-1', FINAL);
    expect(done).toMatchObject({ status: 'succeeded', worker: 'worker-b' });
    expect(done.warnings).toEqual(['delivery 1 of 5 was interrupted on worker-a (it stopped without settling the job); redelivered']);
    expect(t.builds).toEqual(['crash-1', 'crash-1']);
    expect(t.logs.lines.get('crash-1')).toContain('==> delivery 2 of 5 on worker-b');
    await waitFor(() => t.queue.stateOf('crash-1') === 'acked', { timeoutMs: 2_000, intervalMs: 5 });
  });

  it('crash, every time: a delivery past maxDeliveries ends failed without building', async () => {
    const t = setup();
    await t.store.put({ ...initialRecord(job('doomed')), status: 'running', worker: 'gone' });
    t.queue.publish(job('doomed'), { delivered: 3 });
    await t.start('w1', { maxDeliveries: 3 });
    const record = await t.statusOf('doomed', FINAL);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ phase: 'queue', code: 'E_SERVICE_UNAVAILABLE' });
    expect(record.error?.message).toContain('Gave up after 3 deliveries: the workers running this build stopped before it ended');
    expect(t.builds).toEqual([]);
    await waitFor(() => t.queue.stateOf('doomed') === 'acked', { timeoutMs: 2_000, intervalMs: 5 });
  });

  it('drain: the running build finishes, nothing more is pulled, the worker stops', async () => {
    const t = setup((id) => (id === 'drain-1' ? 'block' : 'ok'));
    const { worker } = await t.start('w1');
    t.queue.publish(job('drain-1'));
    await waitFor(() => t.isBlocked('drain-1'), { timeoutMs: 2_000, intervalMs: 5 });
    const drained = worker.drain();
    expect(worker.state).toBe('DRAINING');
    t.queue.publish(job('drain-2', { branch: 'later' }));
    await new Promise((r) => setTimeout(r, 50));
    expect(worker.state).toBe('DRAINING');
    t.release('drain-1');
    await drained;
    expect(worker.state).toBe('STOPPED');
    expect((await t.store.get('drain-1'))?.status).toBe('succeeded');
    expect(t.queue.deliveriesOf('drain-2')).toBe(0);
    expect(t.queue.stateOf('drain-2')).toBe('ready');
  });

  it('drain past the grace period: the build is cancelled and handed back (nak at once), not counted as a failure', async () => {
    const t = setup((id) => (id === 'grace-1' ? 'block' : 'ok'));
    const { worker } = await t.start('w1', { shutdownGraceMs: 50 });
    t.queue.publish(job('grace-1'));
    await waitFor(() => t.isBlocked('grace-1'), { timeoutMs: 2_000, intervalMs: 5 });
    const t0 = Date.now();
    await worker.drain();
    expect(Date.now() - t0).toBeLessThan(2_000);
    const record = await t.store.get('grace-1');
    expect(record?.status).toBe('queued');
    expect(record?.warnings?.at(-1)).toBe('delivery 1 of 5 handed back by w1 at shutdown');
    expect(t.queue.settlementsOf('grace-1')).toEqual([{ op: 'nak', seq: 1, attempt: 1, delayMs: 0 }]);
    expect(worker.stats).toMatchObject({ handedBack: 1, failed: 0, retried: 0 });
    expect(t.logs.ended.has('grace-1')).toBe(false);
  });

  it('supersede: a newer push of the branch cancels the running build (cancelledBy), and the newer one builds', async () => {
    const t = setup((id) => (id === 'old' ? 'block' : 'ok'));
    await t.start('w1', { concurrency: 1 });
    t.queue.publish(job('old'));
    await waitFor(() => t.isBlocked('old'), { timeoutMs: 2_000, intervalMs: 5 });
    t.queue.publish(job('new'));
    const old = await t.statusOf('old', FINAL);
    expect(old).toMatchObject({ status: 'cancelled', cancelledBy: 'new' });
    expect(old.error?.message).toBe('Superseded by build new, a newer push to acme/app main');
    expect((await t.statusOf('new', FINAL)).status).toBe('succeeded');
    expect(t.builds).toEqual(['old', 'new']);
    expect(t.queue.settlementsOf('old')).toEqual([{ op: 'ack', seq: 1, attempt: 1 }]);
  });

  it('supersede before the start: an older job reaching a worker after a newer one started is cancelled unbuilt', async () => {
    const t = setup();
    const seq = t.queue.publish(job('late-old'));
    t.queue.raise({ key: t.queue.session().supersedeKeyOf(job('x'))!, id: 'late-new', seq: seq + 1 });
    await t.start('w1');
    const record = await t.statusOf('late-old', FINAL);
    expect(record).toMatchObject({ status: 'cancelled', cancelledBy: 'late-new', error: { phase: 'queue', code: 'E_CANCELLED' } });
    expect(record.worker).toBeUndefined();
    expect(t.builds).toEqual([]);
  });

  it('retry limits: a transient failure is retried with growing delays up to maxDeliveries, then failed', async () => {
    const t = setup(() => 'transient');
    await t.start('w1', { maxDeliveries: 4, retryDelayMs: 20 });
    t.queue.publish(job('flaky'));
    const record = await t.statusOf('flaky', ['failed', 'succeeded', 'cancelled']);
    await waitFor(() => t.queue.stateOf('flaky') === 'acked', { timeoutMs: 2_000, intervalMs: 5 });
    expect(record.status).toBe('failed');
    expect(record.error?.message).toContain('gave up after 4 attempts');
    expect(t.builds).toHaveLength(4);
    const naks = t.queue.settlementsOf('flaky').filter((s) => s.op === 'nak');
    expect(naks.map((n) => n.attempt)).toEqual([1, 2, 3]);
    const delays = naks.map((n) => (n as { delayMs: number }).delayMs);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(Math.floor(20 * 2 ** i * 0.8));
      expect(d).toBeLessThanOrEqual(Math.ceil(20 * 2 ** i * 1.2));
    });
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    expect(delays[2]!).toBeGreaterThan(delays[1]!);
    expect(t.queue.settlementsOf('flaky').at(-1)).toEqual({ op: 'ack', seq: 1, attempt: 4 });
    expect(record.warnings?.filter((w) => /^delivery \d of 4 failed on w1 \(E_SERVICE_UNAVAILABLE/.test(w))).toHaveLength(3);
  });

  it('a redelivered job that already finished (its ack was lost) is acknowledged, not rebuilt', async () => {
    const t = setup();
    t.queue.loseNextAck('lost-ack');
    await t.start('w1');
    t.queue.publish(job('lost-ack'));
    await t.statusOf('lost-ack', FINAL);
    await waitFor(() => t.queue.stateOf('lost-ack') === 'acked', { timeoutMs: 2_000, intervalMs: 5 });
    expect(t.queue.settlementsOf('lost-ack')).toEqual([
      { op: 'ack', seq: 1, attempt: 1, lost: true },
      { op: 'ack', seq: 1, attempt: 2 },
    ]);
    expect(t.builds).toEqual(['lost-ack']);
    expect((await t.store.get('lost-ack'))?.status).toBe('succeeded');
  });
});

describe('image settings: the job carries serve\'s, the worker\'s own win', () => {
  it('builds with the registry, push and TLS settings given to the worker, over the job\'s', async () => {
    const seen: Array<BuildJob['image']> = [];
    const t = setup(undefined, {
      imageOverrides: { registry: 'worker.example:5000/team', tlsVerify: false },
      runPipeline: (j, deps, o) => {
        seen.push(j.image);
        return runPipeline(j, deps, o);
      },
    });
    await t.start('w1');
    t.queue.publish({ ...job('img-1'), image: { registry: 'serve.example/team', push: true, tlsVerify: true, buildArgs: { A: '1' } } });
    await t.statusOf('img-1', FINAL);
    expect(seen).toEqual([{ registry: 'worker.example:5000/team', push: true, tlsVerify: false, buildArgs: { A: '1' } }]);
  });

  it('leaves the job as serve queued it when the worker was given none', async () => {
    const seen: Array<BuildJob['image']> = [];
    const t = setup(undefined, { runPipeline: (j, deps, o) => (seen.push(j.image), runPipeline(j, deps, o)) });
    await t.start('w1');
    t.queue.publish({ ...job('img-2'), image: { registry: 'serve.example/team', push: true, tlsVerify: true, buildArgs: {} } });
    await t.statusOf('img-2', FINAL);
    expect(seen).toEqual([{ registry: 'serve.example/team', push: true, tlsVerify: true, buildArgs: {} }]);
  });

  it('only keys set on the worker (flag, environment, file) override, never its defaults', () => {
    const overrides = (sources: { env?: Record<string, string>; fileData?: unknown }) => {
      const { config, entries } = parseConfigWithSources({ ...sources, home: '/home/w' });
      return imageOverridesOf(config, entries);
    };
    expect(overrides({ env: { OCI_BUILD_IMAGE_REGISTRY: '127.0.0.1:5000/ci', OCI_BUILD_IMAGE_TLS_VERIFY: 'false' } })).toEqual({ registry: '127.0.0.1:5000/ci', tlsVerify: false });
    expect(overrides({})).toEqual({});
    expect(overrides({ fileData: { image: { push: true } } })).toEqual({ push: true });
    // Set to its default value is still set: the worker's word.
    expect(overrides({ env: { OCI_BUILD_IMAGE_TLS_VERIFY: 'true' } })).toEqual({ tlsVerify: true });
  });
});
