// The NATS layer against a real nats-server (JetStream, temp store, free loopback port).

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetentionPolicy, StorageType } from 'nats';
import { ServiceUnavailableError } from '../../src/core/errors.js';
import { DEFAULT_CONSUMER_NAME } from '../../src/core/ports.js';
import type { BuildJob, BuildRecord } from '../../src/core/types.js';
import { DEFAULTS } from '../../src/config/config.js';
import { closeNats, connectNats, subjectToken, type NatsContext } from '../../src/queue/nats.js';
import { getLatest, jobKey, jobSubject, newestJob, newestQueuedJob, publishJob, queueDepth, queueStats, raiseLatest, supersedeKeyOf } from '../../src/queue/job-queue.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { JetStreamLogStore, readLog } from '../../src/queue/log-stream.js';
import { listWorkers, registerWorkerService } from '../../src/queue/workers.js';
import { JetStreamPublishError, JetStreamPublisher, WRONG_LAST_SEQUENCE } from '../../src/queue/js-publisher.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';

let server: NatsServer;
let ctx: NatsContext;
const natsConfig = () => ({ ...DEFAULTS.nats, url: server.url });

function job(id: string, overrides: Partial<BuildJob> = {}): BuildJob {
  return {
    id,
    trigger: 'webhook',
    deliveryId: id,
    source: { kind: 'git', url: 'http://127.0.0.1:1/acme/shop.git', ref: 'refs/heads/main' },
    repository: { fullName: 'acme/shop', branch: 'main', ref: 'refs/heads/main', commit: 'a'.repeat(40) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
    ...overrides,
  };
}

function record(id: string, overrides: Partial<BuildRecord> = {}): BuildRecord {
  return {
    id,
    status: 'queued',
    trigger: 'webhook',
    repository: { fullName: 'acme/shop', branch: 'main', commit: 'a'.repeat(40) },
    createdAt: '2026-01-01T00:00:00.000Z',
    phases: [],
    images: [],
    ...overrides,
  };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

beforeAll(async () => {
  server = await startNatsServer();
  ctx = await connectNats(natsConfig(), { name: 'queue-test' });
});

afterAll(async () => {
  if (ctx) await closeNats(ctx);
  await server?.stop();
});

describe('connectNats', () => {
  it('fails with ServiceUnavailableError naming the URL and how to start NATS', async () => {
    const port = await freePort();
    const err = await connectNats({ ...DEFAULTS.nats, url: `nats://127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).message).toContain(`nats://127.0.0.1:${port}`);
    expect((err as ServiceUnavailableError).hint).toContain('nats-server -js');
    expect((err as ServiceUnavailableError).exitCode).toBe(3);
  });

  it('creates the streams and the bucket as specified, and a second connect is idempotent', async () => {
    const again = await connectNats(natsConfig());
    try {
      const jobs = await ctx.jsm.streams.info(DEFAULTS.nats.stream);
      expect(jobs.config.retention).toBe(RetentionPolicy.Workqueue);
      expect(jobs.config.storage).toBe(StorageType.File);
      expect(jobs.config.subjects).toEqual([DEFAULTS.nats.subject, `${DEFAULTS.nats.subject}.>`]);
      expect(jobs.config.duplicate_window).toBeGreaterThanOrEqual(2 * 60 * 1e9);
      const logs = await ctx.jsm.streams.info(DEFAULTS.nats.logStream);
      expect(logs.config.subjects).toEqual(['oci-build.logs.>']);
      expect(logs.config.max_age).toBe(7 * 24 * 3600 * 1e9);
      const kv = await ctx.kv.status();
      expect(kv.bucket).toBe(DEFAULTS.nats.statusBucket);
      expect(kv.storage).toBe(StorageType.File);
    } finally {
      await closeNats(again);
    }
  });

  it('subjectToken keeps ids distinct and free of subject syntax', () => {
    expect(subjectToken('72d3162e-cc78-11e3-81ab-4c9367dc0958')).toBe('72d3162e-cc78-11e3-81ab-4c9367dc0958');
    expect(subjectToken('a.b')).not.toBe(subjectToken('a_b'));
    expect(subjectToken('a.*>b c')).toMatch(/^[A-Za-z0-9_=-]+$/);
  });
});

describe('job queue', () => {
  it('publishes a job, dedupes a redelivery by its delivery id, and counts the queue depth', async () => {
    const before = await queueDepth(ctx, DEFAULT_CONSUMER_NAME);
    const first = await publishJob(ctx, job('delivery-1'));
    expect(first.duplicate).toBe(false);
    const again = await publishJob(ctx, job('delivery-1'));
    expect(again).toEqual({ duplicate: true, seq: first.seq });
    expect(await queueDepth(ctx, DEFAULT_CONSUMER_NAME)).toBe(before + 1);
    const stored = await ctx.jsm.streams.getMessage(DEFAULTS.nats.stream, { seq: first.seq });
    expect(stored.json<BuildJob>().id).toBe('delivery-1');
    expect((await queueStats(ctx)).total).toBe(before + 1);
  });

  it('jobKey is stable, KV-safe, one token, and distinguishes repositories and branches', () => {
    const key = jobKey('Acme/Shop', 'feature/x');
    expect(key).toBe(jobKey('acme/shop', 'feature/x'));
    expect(key).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(jobKey('acme/shop', 'feature/x')).not.toBe(jobKey('acme/shop', 'feature-x'));
    expect(jobKey('acme/shop', 'main')).not.toBe(jobKey('acme/shop2', 'main'));
    expect(supersedeKeyOf(job('x'))).toBe(jobKey('acme/shop', 'main'));
    expect(supersedeKeyOf(job('x', { repository: { fullName: 'acme/shop', tag: 'v1', commit: 'a'.repeat(40) } }))).toBeUndefined();
  });

  it('a branch job goes to <subject>.<jobKey>; the newest job of a branch is found by subject and in KV', async () => {
    const repo = { fullName: 'acme/latest', branch: 'main', commit: 'b'.repeat(40) };
    const key = jobKey('acme/latest', 'main');
    expect(jobSubject(ctx.config, job('x', { repository: repo }))).toBe(`${DEFAULTS.nats.subject}.${key}`);
    expect(jobSubject(ctx.config, job('x', { repository: { fullName: 'acme/latest', tag: 'v1', commit: 'b'.repeat(40) } }))).toBe(DEFAULTS.nats.subject);
    expect(await newestQueuedJob(ctx, key)).toBeUndefined();
    const a = await publishJob(ctx, job('latest-a', { repository: repo }));
    const b = await publishJob(ctx, job('latest-b', { repository: repo }));
    await publishJob(ctx, job('latest-other', { repository: { ...repo, branch: 'dev' } }));
    expect(await newestQueuedJob(ctx, key)).toEqual({ id: 'latest-b', seq: b.seq });
    // KV `latest` (raised by workers on pickup) only moves upwards.
    expect(await raiseLatest(ctx, key, { id: 'latest-a', seq: a.seq })).toEqual({ id: 'latest-a', seq: a.seq });
    expect(await newestJob(ctx, key)).toEqual({ id: 'latest-b', seq: b.seq });
    expect(await raiseLatest(ctx, key, { id: 'latest-c', seq: b.seq + 100 })).toEqual({ id: 'latest-c', seq: b.seq + 100 });
    expect(await raiseLatest(ctx, key, { id: 'latest-b', seq: b.seq })).toEqual({ id: 'latest-c', seq: b.seq + 100 });
    expect(await getLatest(ctx, key)).toEqual({ id: 'latest-c', seq: b.seq + 100 });
    expect(await newestJob(ctx, key)).toEqual({ id: 'latest-c', seq: b.seq + 100 });
  });

  it('publishJob fails with ServiceUnavailableError when the stream is gone', async () => {
    const broken = { ...ctx, config: { ...ctx.config, subject: 'nowhere.subject', stream: 'NOWHERE' } };
    await expect(publishJob(broken, job('nowhere'))).rejects.toBeInstanceOf(ServiceUnavailableError);
  });
});

describe('KvBuildStore', () => {
  it('puts, gets, lists newest first with filters and limit, deletes', async () => {
    const store = new KvBuildStore(ctx);
    await store.put(record('r1', { createdAt: '2026-01-01T00:00:01.000Z', status: 'succeeded' }));
    await store.put(record('r2', { createdAt: '2026-01-01T00:00:03.000Z', status: 'failed' }));
    await store.put(record('r3', { createdAt: '2026-01-01T00:00:02.000Z', repository: { fullName: 'acme/other', branch: 'dev', commit: 'c'.repeat(40) } }));
    await store.put(record('r.4', { createdAt: '2026-01-01T00:00:04.000Z', repository: { fullName: 'acme/shop', branch: 'dev', commit: 'c'.repeat(40) } }));
    expect((await store.get('r1'))?.status).toBe('succeeded');
    expect(await store.get('missing')).toBeUndefined();
    const all = await store.list();
    expect(all.filter((r) => r.id.startsWith('r')).map((r) => r.id)).toEqual(['r.4', 'r2', 'r3', 'r1']);
    expect((await store.list({ repo: 'acme/shop' })).map((r) => r.id)).toEqual(['r.4', 'r2', 'r1']);
    expect((await store.list({ repo: 'acme/shop', branch: 'main' })).map((r) => r.id)).toEqual(['r2', 'r1']);
    expect((await store.list({ status: 'failed' })).map((r) => r.id)).toEqual(['r2']);
    expect((await store.list({ repo: 'acme/shop', limit: 1 })).map((r) => r.id)).toEqual(['r.4']);
    await store.delete('r1');
    expect(await store.get('r1')).toBeUndefined();
    expect((await store.list({ repo: 'acme/shop' })).map((r) => r.id)).toEqual(['r.4', 'r2']);
  });

  it('createIfAbsent never overwrites an existing record', async () => {
    const store = new KvBuildStore(ctx);
    const created = await store.createIfAbsent(record('c1'));
    expect(created.created).toBe(true);
    await store.put(record('c1', { status: 'running' }));
    const again = await store.createIfAbsent(record('c1'));
    expect(again.created).toBe(false);
    expect(again.record.status).toBe('running');
    expect((await store.get('c1'))?.status).toBe('running');
  });

  it('createIfAbsent writes over a deleted record (a delete marker is the key\'s last revision)', async () => {
    const store = new KvBuildStore(ctx);
    expect((await store.createIfAbsent(record('c2'))).created).toBe(true);
    await store.delete('c2');
    expect(await store.get('c2')).toBeUndefined();
    const again = await store.createIfAbsent(record('c2', { trigger: 'cli' }));
    expect(again.created).toBe(true);
    expect((await store.get('c2'))?.trigger).toBe('cli');
  });

  it('watch yields the current record and each update, and ends at a final status', async () => {
    const store = new KvBuildStore(ctx);
    await store.put(record('w1', { status: 'queued' }));
    const seen: string[] = [];
    const done = (async () => {
      for await (const r of store.watch('w1', new AbortController().signal)) seen.push(r.status);
    })();
    // The bucket keeps one revision per key: a write replaces the one before it, so a watcher
    // still behind (a loaded machine) never sees an update overwritten before its delivery. Each
    // update is written once the watcher has yielded the one before.
    const yielded = async (n: number) => {
      for (let waited = 0; seen.length < n; waited += 10) {
        if (waited > 10_000) throw new Error(`the watch yielded ${JSON.stringify(seen)} in 10 s`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await yielded(1);
    await store.put(record('w1', { status: 'running' }));
    await yielded(2);
    await store.put(record('w1', { status: 'succeeded' }));
    await done;
    expect(seen).toEqual(['queued', 'running', 'succeeded']);
  });

  it('watch ends when its signal aborts', async () => {
    const store = new KvBuildStore(ctx);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const seen = await collect(store.watch('never-written', controller.signal));
    expect(seen).toEqual([]);
  });
});

describe('KvBuildStore.list over recent windows', () => {
  it('reads further back when a record written earlier was created later than those of the window', async () => {
    const bucketCtx = await connectNats({ ...natsConfig(), statusBucket: `list-window-${process.pid}` }, { name: 'list-window' });
    try {
      const store = new KvBuildStore(bucketCtx, { windowsMs: [50], clockSkewMs: 5 });
      await store.put(record('early-write', { createdAt: new Date().toISOString() }));
      await new Promise((r) => setTimeout(r, 120));
      // Written now, but created (queued) long before: the window holds it, not the newest build.
      await store.put(record('late-write', { createdAt: new Date(Date.now() - 60_000).toISOString() }));
      expect((await store.list({ limit: 1 })).map((r) => r.id)).toEqual(['early-write']);
      await store.put(record('newest', { createdAt: new Date().toISOString() }));
      expect((await store.list({ limit: 2 })).map((r) => r.id)).toEqual(['newest', 'early-write']);
    } finally {
      await bucketCtx.jsm.streams.delete(`KV_${bucketCtx.config.statusBucket}`).catch(() => undefined);
      await closeNats(bucketCtx);
    }
  });

  it('property: with any writes, updates and deletes, a limited listing equals the newest records of the whole bucket', async () => {
    // Creations are weighted up, and mostly either "created just now" or "queued 3 s before its
    // first write": a late write of an old record after a pause is what tests the windows.
    const op = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant('create' as const), repo: fc.constantFrom('acme/a', 'acme/b'), offsetMs: fc.oneof(fc.constantFrom(-3_000, 0), fc.integer({ min: -3_000, max: 5 })) }), weight: 3 },
      { arbitrary: fc.record({ kind: fc.constant('update' as const), pick: fc.nat(), status: fc.constantFrom('running', 'succeeded', 'failed') }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }), weight: 1 },
      { arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.constantFrom(20, 60) }), weight: 2 },
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 6 }), async (ops, limit) => {
        run += 1;
        const bucketCtx = await connectNats({ ...natsConfig(), statusBucket: `list-prop-${process.pid}-${run}` }, { name: 'list-prop' });
        try {
          // Windows of 40 and 120 ms, a skew margin of 10 ms: the writes span several windows.
          const store = new KvBuildStore(bucketCtx, { windowsMs: [40, 120], clockSkewMs: 10 });
          const model = new Map<string, BuildRecord>();
          let n = 0;
          for (const o of ops) {
            const ids = [...model.keys()];
            if (o.kind === 'create') {
              // Created up to 3 s before it is first written, or a few ms after (clock skew).
              const created = record(`b${++n}`, {
                createdAt: new Date(Date.now() + o.offsetMs).toISOString(),
                repository: { fullName: o.repo, branch: 'main', commit: 'a'.repeat(40) },
              });
              model.set(created.id, created);
              await store.put(created);
            } else if (o.kind === 'update' && ids.length > 0) {
              const updated = { ...model.get(ids[o.pick % ids.length]!)!, status: o.status };
              model.set(updated.id, updated);
              await store.put(updated);
            } else if (o.kind === 'delete' && ids.length > 0) {
              const id = ids[o.pick % ids.length]!;
              model.delete(id);
              await store.delete(id);
            } else if (o.kind === 'pause') {
              await new Promise((r) => setTimeout(r, o.ms));
            }
          }
          const expected = (filter: (r: BuildRecord) => boolean) =>
            [...model.values()]
              .filter(filter)
              .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1))
              .map((r) => r.id);
          expect((await store.list({ limit })).map((r) => r.id)).toEqual(expected(() => true).slice(0, limit));
          expect((await store.list({ limit, repo: 'acme/b' })).map((r) => r.id)).toEqual(expected((r) => r.repository.fullName === 'acme/b').slice(0, limit));
          expect((await store.list({ limit, status: 'failed' })).map((r) => r.id)).toEqual(expected((r) => r.status === 'failed').slice(0, limit));
          expect((await store.list()).map((r) => r.id)).toEqual(expected(() => true));
          // Every listing removed its consumer.
          expect((await bucketCtx.jsm.consumers.list(`KV_${bucketCtx.config.statusBucket}`).next()).length).toBe(0);
        } finally {
          await bucketCtx.jsm.streams.delete(`KV_${bucketCtx.config.statusBucket}`).catch(() => undefined);
          await closeNats(bucketCtx);
        }
      }),
      { numRuns: 30 },
    );
  });
});

describe('log stream', () => {
  it('stores lines in order; a follower sees lines as they come and stops at the end marker', async () => {
    const logs = new JetStreamLogStore(ctx);
    const log = await logs.open('log-1');
    log.write('line 1');
    log.write('line 2\nline 3', 'stderr');
    const follower = collect(readLog(ctx, 'log-1', { follow: true }));
    await new Promise((r) => setTimeout(r, 150));
    for (let i = 4; i <= 500; i++) log.write(`line ${i}`);
    await log.close();
    const lines = await follower;
    expect(lines).toHaveLength(500);
    expect(lines.slice(0, 4)).toEqual(['line 1', 'line 2', 'line 3', 'line 4']);
    expect(lines.at(-1)).toBe('line 500');
    // Reading a finished log without follow gives the same lines and returns.
    expect(await collect(readLog(ctx, 'log-1', { follow: false }))).toEqual(lines);
  });

  it('without follow returns what is stored now; an unknown build has no lines', async () => {
    const logs = new JetStreamLogStore(ctx);
    const log = await logs.openLog('log-2', { endOnClose: false });
    log.write('a');
    log.write('b');
    await log.close();
    expect(await collect(readLog(ctx, 'log-2', { follow: false }))).toEqual(['a', 'b']);
    expect(await collect(readLog(ctx, 'log-unknown', { follow: false }))).toEqual([]);
    // follow on a log without end marker waits until aborted
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    expect(await collect(readLog(ctx, 'log-2', { follow: true, signal: controller.signal }))).toEqual(['a', 'b']);
    await logs.end('log-2');
    expect(await collect(readLog(ctx, 'log-2', { follow: true }))).toEqual(['a', 'b']);
  });
});

describe('listWorkers', () => {
  it('lists registered workers with their running jobs, over request/reply', async () => {
    const other = await connectNats(natsConfig());
    try {
      const running = [{ jobId: 'j1', repository: 'acme/shop', branch: 'main', startedAt: '2026-01-01T00:00:00.000Z' }];
      const service = await registerWorkerService(other, () => ({ name: 'w-a', concurrency: 2, state: 'RUNNING', running }));
      const idle = await registerWorkerService(other, () => ({ name: 'w-b', concurrency: 1, state: 'DRAINING', running: [] }));
      const workers = await listWorkers(ctx);
      expect(workers).toHaveLength(2);
      expect(workers[0]).toMatchObject({ name: 'w-a', concurrency: 2, running, state: 'RUNNING' });
      expect(workers[1]).toMatchObject({ name: 'w-b', concurrency: 1, running: [], state: 'DRAINING' });
      expect(workers[0]?.id).not.toBe(workers[1]?.id);
      await service.stop();
      await idle.stop();
      const t0 = Date.now();
      expect(await listWorkers(ctx)).toEqual([]);
      // No worker: "no responders" answers at once instead of a wait.
      expect(Date.now() - t0).toBeLessThan(500);
    } finally {
      await closeNats(other);
    }
  });
});

describe('JetStreamPublisher', () => {
  it('stores a message and answers its sequence; the same Nats-Msg-Id again is a duplicate of it', async () => {
    const subject = `${DEFAULTS.nats.subject}.publisher-test`;
    const first = await ctx.publisher.publish(subject, 'one', { msgId: 'pub-1' });
    expect(first).toMatchObject({ stream: DEFAULTS.nats.stream, duplicate: false });
    const again = await ctx.publisher.publish(subject, 'one', { msgId: 'pub-1' });
    expect(again).toEqual({ stream: DEFAULTS.nats.stream, seq: first.seq, duplicate: true });
    const stored = await ctx.jsm.streams.getMessage(DEFAULTS.nats.stream, { seq: first.seq });
    expect(new TextDecoder().decode(stored.data)).toBe('one');
    expect(stored.header.get('Nats-Msg-Id')).toBe('pub-1');
  });

  it('a failed expected-sequence check is the stream\'s error, with its code', async () => {
    const subject = `$KV.${DEFAULTS.nats.statusBucket}.publisher-seq`;
    await ctx.publisher.publish(subject, 'v1', { expectLastSubjectSequence: 0 });
    const err = await ctx.publisher.publish(subject, 'v2', { expectLastSubjectSequence: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JetStreamPublishError);
    expect((err as JetStreamPublishError).errCode).toBe(WRONG_LAST_SEQUENCE);
  });

  it('a subject no stream holds fails at once (no responders); one nobody acknowledges times out', async () => {
    const t0 = Date.now();
    await expect(ctx.publisher.publish('nobody.listens.here', 'x')).rejects.toThrow(/no responders/);
    expect(Date.now() - t0).toBeLessThan(1_000);

    const silent = ctx.nc.subscribe('silent.subject');
    const publisher = new JetStreamPublisher(ctx.nc, 200);
    try {
      await expect(publisher.publish('silent.subject', 'x')).rejects.toThrow(/no acknowledgement within 200 ms/);
    } finally {
      publisher.close();
      silent.unsubscribe();
    }
  });

  it('close() fails what is still waiting, and later publishes', async () => {
    const silent = ctx.nc.subscribe('silent.close');
    const publisher = new JetStreamPublisher(ctx.nc, 60_000);
    const waiting = publisher.publish('silent.close', 'x');
    publisher.close();
    await expect(waiting).rejects.toThrow(/closing/);
    await expect(publisher.publish('silent.close', 'y')).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });
});
