// One contract for JobIntake, run against the in-memory fake the unit tests use and against the
// real adapter over NATS JetStream (QueueIntake): the fake may not promise what NATS does not do.
// The enqueue protocol (enqueue.ts) runs over both too: what a 202 and a 503 promise is a property
// of the protocol and the intake together.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomUUID } from 'node:crypto';
import { DEFAULTS } from '../../src/config/config.js';
import { initialRecord } from '../../src/core/pipeline.js';
import { createLogger } from '../../src/log/logger.js';
import { isFinalStatus, type BuildJob, type BuildRecord } from '../../src/core/types.js';
import { JOB_ID_HEADER } from '../../src/queue/job-queue.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { JetStreamLogStore } from '../../src/queue/log-stream.js';
import { JobEnqueuer, type EnqueueResult } from '../../src/server/enqueue.js';
import type { JobIntake } from '../../src/server/job-intake.js';
import { connectQueueIntake, type QueueIntake } from '../../src/server/queue-intake.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { FakeIntake } from '../unit/server-fake-intake.js';

function job(overrides: Partial<BuildJob> = {}): BuildJob {
  const delivery = randomUUID();
  return {
    id: `gh-${delivery}`,
    trigger: 'webhook',
    deliveryId: delivery,
    source: { kind: 'git', url: 'https://example.com/acme/shop.git', ref: 'c'.repeat(40) },
    repository: { fullName: 'acme/shop', branch: 'main', ref: 'refs/heads/main', commit: 'c'.repeat(40) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
    ...overrides,
  };
}

interface Subject {
  intake: JobIntake;
  /** Appends log lines and ends the log, the way a worker does. */
  writeLog(id: string, lines: string[]): Promise<void>;
  /** The job's messages waiting in the queue (published, not yet taken by a worker). */
  waiting(jobId: string): Promise<number>;
  /** A worker takes the job's waiting messages and acknowledges them. */
  consume(jobId: string): Promise<void>;
  /** A worker writes the record (it started the build): a new revision, as a worker's put. */
  putRecord(record: BuildRecord): Promise<void>;
}

/**
 * The intake with a publish that fails: `refused` before anything is sent; `unacknowledged` after
 * the job is stored (its acknowledgement lost, as when nats-server stalls), `beforeThrow` run first.
 */
function failingPublish(intake: JobIntake, mode: 'refused' | 'unacknowledged', beforeThrow?: () => Promise<void>): JobIntake {
  return new Proxy(intake, {
    get(target, prop, receiver) {
      if (prop === 'publish') {
        return async (...args: Parameters<JobIntake['publish']>) => {
          if (mode === 'unacknowledged') await target.publish(...args);
          await beforeThrow?.();
          throw new Error('test: publish timed out');
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const silent = createLogger({ level: 'silent' });
const pushKey = () => createHash('sha256').update(randomUUID()).digest('hex');

function contract(name: string, setup: () => Promise<Subject>, teardown: () => Promise<void>) {
  describe(`JobIntake contract: ${name}`, () => {
    let subject: Subject;
    beforeAll(async () => {
      subject = await setup();
    });
    afterAll(teardown);

    it('reports itself connected', () => {
      expect(subject.intake.health()).toEqual({ nats: 'connected' });
    });

    it('createQueued creates once; a second call returns the existing record', async () => {
      const j = job();
      const first = await subject.intake.createQueued(initialRecord(j));
      expect(first.created).toBe(true);
      const second = await subject.intake.createQueued({ ...initialRecord(j), createdAt: '2000-01-01T00:00:00.000Z' });
      expect(second.created).toBe(false);
      expect(second.record.createdAt).toBe(j.createdAt);
      expect(await subject.intake.get(j.id)).toMatchObject({ id: j.id, status: 'queued' });
    });

    it('publish is deduplicated by delivery id', async () => {
      const j = job();
      expect(await subject.intake.publish(j)).toEqual({ duplicate: false });
      expect(await subject.intake.publish({ ...j, createdAt: new Date().toISOString() })).toEqual({ duplicate: true });
    });

    it('claimPush: the first job keeps the claim; that job claims it again, any other is told who holds it', async () => {
      const key = createHash('sha256').update(randomUUID()).digest('hex');
      const first = job();
      const replay = job();
      const listed = (await subject.intake.list({})).length;
      expect(await subject.intake.claimPush(key, first.id)).toEqual({ jobId: first.id, claimed: true });
      expect(await subject.intake.claimPush(key, replay.id)).toEqual({ jobId: first.id, claimed: false });
      expect(await subject.intake.claimPush(key, first.id)).toEqual({ jobId: first.id, claimed: true });
      // Claims live beside the records and never show in a listing.
      expect((await subject.intake.list({})).length).toBe(listed);
      const other = createHash('sha256').update(randomUUID()).digest('hex');
      expect(await subject.intake.claimPush(other, replay.id)).toEqual({ jobId: replay.id, claimed: true });
    });

    it('claimPush under concurrency: exactly one of many jobs gets the claim', async () => {
      const key = createHash('sha256').update(randomUUID()).digest('hex');
      const jobs = Array.from({ length: 20 }, () => job());
      const answers = await Promise.all(jobs.map((j) => subject.intake.claimPush(key, j.id)));
      const winners = answers.filter((a) => a.claimed);
      expect(winners).toHaveLength(1);
      expect(new Set(answers.map((a) => a.jobId))).toEqual(new Set([winners[0]!.jobId]));
    });

    it('discard removes a record; get of an unknown id is undefined', async () => {
      const j = job();
      await subject.intake.createQueued(initialRecord(j));
      await subject.intake.discard(j.id);
      expect(await subject.intake.get(j.id)).toBeUndefined();
      expect((await subject.intake.list({})).map((r) => r.id)).not.toContain(j.id);
    });

    it('list filters by repository, branch and status, newest first, up to the limit', async () => {
      const repo = `acme/list-${randomUUID().slice(0, 8)}`;
      const a = job({ repository: { fullName: repo, branch: 'main', commit: 'a'.repeat(40) }, createdAt: '2026-01-01T00:00:01.000Z' });
      const b = job({ repository: { fullName: repo, branch: 'dev', commit: 'b'.repeat(40) }, createdAt: '2026-01-01T00:00:02.000Z' });
      await subject.intake.createQueued(initialRecord(a));
      await subject.intake.createQueued(initialRecord(b));
      expect((await subject.intake.list({ repo })).map((r) => r.id)).toEqual([b.id, a.id]);
      expect((await subject.intake.list({ repo, branch: 'main' })).map((r) => r.id)).toEqual([a.id]);
      expect((await subject.intake.list({ repo, limit: 1 })).map((r) => r.id)).toEqual([b.id]);
      expect(await subject.intake.list({ repo, status: 'running' })).toEqual([]);
    });

    it('readLog returns the stored lines; follow ends when the log ends; an unknown log is empty', async () => {
      const id = `log-${randomUUID()}`;
      await subject.writeLog(id, ['one', 'two']);
      const read = async (follow: boolean) => {
        const lines: string[] = [];
        for await (const line of subject.intake.readLog(id, { follow, signal: AbortSignal.timeout(10_000) })) lines.push(line);
        return lines;
      };
      expect(await read(false)).toEqual(['one', 'two']);
      expect(await read(true)).toEqual(['one', 'two']);
      const none: string[] = [];
      for await (const line of subject.intake.readLog(`none-${randomUUID()}`, { follow: false, signal: AbortSignal.timeout(10_000) })) none.push(line);
      expect(none).toEqual([]);
    });

    it('list matches the repository name in any case, as GitHub does', async () => {
      const name = `Acme/Case-${randomUUID().slice(0, 8)}`;
      const mixed = job({ repository: { fullName: name, branch: 'main', commit: 'a'.repeat(40) } });
      const lower = job({ repository: { fullName: name.toLowerCase(), branch: 'main', commit: 'b'.repeat(40) } });
      await subject.intake.createQueued(initialRecord(mixed));
      await subject.intake.createQueued(initialRecord(lower));
      for (const repo of [name, name.toLowerCase(), name.toUpperCase()]) {
        expect(new Set((await subject.intake.list({ repo })).map((r) => r.id)), repo).toEqual(new Set([mixed.id, lower.id]));
      }
    });

    it('queueDepth counts the jobs published and not yet taken by a worker', async () => {
      const before = await subject.intake.queueDepth();
      const jobs = Array.from({ length: 3 }, () => job());
      for (const j of jobs) await subject.intake.publish(j);
      // A redelivery within the duplicate window is not a job more.
      await subject.intake.publish(jobs[0]!);
      expect(await subject.intake.queueDepth()).toBe(before + 3);
      await subject.consume(jobs[1]!.id);
      expect(await subject.intake.queueDepth()).toBe(before + 2);
    });

    describe('the enqueue protocol (enqueue.ts) over this intake', () => {
      const enqueuers: JobEnqueuer[] = [];
      const enqueuer = (intake = subject.intake) => {
        const e = new JobEnqueuer({ intake, logger: silent, settleRetryMs: 100 });
        enqueuers.push(e);
        return e;
      };
      afterAll(() => enqueuers.forEach((e) => e.stop()));

      it('202 (queued) ⇒ the job waits in the queue and its queued record is stored; a redelivery is the same job', async () => {
        const j = job();
        const key = pushKey();
        expect(await enqueuer().enqueue(j, key)).toEqual({ kind: 'queued', jobId: j.id, duplicate: false });
        expect(await subject.intake.get(j.id)).toMatchObject({ id: j.id, status: 'queued', deliveryId: j.deliveryId });
        expect(await subject.waiting(j.id)).toBe(1);
        expect(await enqueuer().enqueue(j, key)).toEqual({ kind: 'queued', jobId: j.id, duplicate: true });
        expect(await subject.waiting(j.id)).toBe(1);
      });

      it('a publish refused ⇒ 503 (not accepted), the record settled not accepted, no job in the queue', async () => {
        const j = job();
        const decided: EnqueueResult[] = [];
        const result = await enqueuer(failingPublish(subject.intake, 'refused')).enqueue(j, pushKey(), (r) => decided.push(r));
        expect(result).toMatchObject({ kind: 'not-accepted', jobId: j.id, cause: expect.any(Error) });
        expect(decided).toEqual([result]);
        expect(await subject.intake.get(j.id)).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED', phase: 'queue' } });
        expect(await subject.waiting(j.id)).toBe(0);
      });

      it('a publish stored but unacknowledged ⇒ 503, and the job that waits builds nothing (its record is final)', async () => {
        const j = job();
        expect(await enqueuer(failingPublish(subject.intake, 'unacknowledged')).enqueue(j, pushKey())).toMatchObject({ kind: 'not-accepted' });
        const record = await subject.intake.get(j.id);
        expect(record).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
        // What a worker that gets the message decides by (worker: "already finished").
        expect(isFinalStatus(record!.status)).toBe(true);
        expect(await subject.waiting(j.id)).toBe(1);
      });

      it('a publish unacknowledged after a worker already started the job ⇒ 202: it was accepted after all', async () => {
        const j = job();
        const startBuild = async () => subject.putRecord({ ...initialRecord(j), status: 'running', startedAt: new Date().toISOString() });
        expect(await enqueuer(failingPublish(subject.intake, 'unacknowledged', startBuild)).enqueue(j, pushKey())).toEqual({ kind: 'queued', jobId: j.id, duplicate: false });
        expect(await subject.intake.get(j.id)).toMatchObject({ status: 'running' });
      });

      it('a replay (the same push under a fresh delivery id) ⇒ 200 replay: its record forgotten, nothing queued', async () => {
        const key = pushKey();
        const first = job();
        const replay = job();
        await enqueuer().enqueue(first, key);
        expect(await enqueuer().enqueue(replay, key)).toEqual({ kind: 'replay', jobId: replay.id, holder: first.id });
        expect(await subject.intake.get(replay.id)).toBeUndefined();
        expect((await subject.intake.list({})).map((r) => r.id)).not.toContain(replay.id);
        expect(await subject.waiting(replay.id)).toBe(0);
        expect(await subject.waiting(first.id)).toBe(1);
      });

      it('revive after 503: a redelivery queues the job once, whether its first message still waits or a worker took it', async () => {
        for (const taken of [false, true]) {
          const j = job();
          const key = pushKey();
          expect(await enqueuer(failingPublish(subject.intake, 'unacknowledged')).enqueue(j, key)).toMatchObject({ kind: 'not-accepted' });
          // A worker took the stored message, found the record final and acknowledged it.
          if (taken) await subject.consume(j.id);
          expect(await enqueuer().enqueue(j, key), `taken: ${taken}`).toEqual({ kind: 'queued', jobId: j.id, duplicate: false });
          expect(await subject.intake.get(j.id)).toMatchObject({ status: 'queued' });
          expect(await subject.waiting(j.id), `taken: ${taken}`).toBe(1);
          // And once only: a further redelivery is the same job.
          expect(await enqueuer().enqueue(j, key)).toMatchObject({ kind: 'queued', duplicate: true });
          expect(await subject.waiting(j.id)).toBe(1);
        }
      });

      it('a redelivery after the build started publishes nothing and reports the status', async () => {
        const j = job();
        const key = pushKey();
        await enqueuer().enqueue(j, key);
        await subject.consume(j.id);
        await subject.putRecord({ ...initialRecord(j), status: 'succeeded', finishedAt: new Date().toISOString() });
        expect(await enqueuer().enqueue(j, key)).toEqual({ kind: 'known', jobId: j.id, status: 'succeeded' });
        expect(await subject.waiting(j.id)).toBe(0);
      });
    });
  });
}

const fake = new FakeIntake();
contract(
  'in-memory fake',
  async () => ({
    intake: fake,
    writeLog: async (id, lines) => {
      for (const line of lines) fake.appendLog(id, line);
      fake.endLog(id);
    },
    waiting: async (jobId) => fake.waiting.filter((j) => j.id === jobId).length,
    consume: async (jobId) => void fake.consume(jobId),
    putRecord: async (record) => fake.putRecord(record),
  }),
  async () => undefined,
);

let nats: NatsServer;
let real: QueueIntake;
contract(
  'QueueIntake over nats-server',
  async () => {
    nats = await startNatsServer();
    real = await connectQueueIntake({ ...DEFAULTS.nats, url: nats.url });
    const logs = new JetStreamLogStore(real.ctx);
    const records = new KvBuildStore(real.ctx);
    /** The sequences of the job's messages in the jobs stream (a work queue: taken ones are gone). */
    const sequencesOf = async (jobId: string) => {
      const { stream } = real.ctx.config;
      const { state } = await real.ctx.jsm.streams.info(stream);
      const found: number[] = [];
      for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
        const m = await real.ctx.jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
        if (m?.header.get(JOB_ID_HEADER) === jobId) found.push(seq);
      }
      return found;
    };
    return {
      intake: real,
      writeLog: async (id, lines) => {
        const log = await logs.open(id);
        for (const line of lines) log.write(line);
        await log.close();
      },
      waiting: async (jobId) => (await sequencesOf(jobId)).length,
      // What an acknowledgement does on a work-queue stream.
      consume: async (jobId) => {
        for (const seq of await sequencesOf(jobId)) await real.ctx.jsm.streams.deleteMessage(real.ctx.config.stream, seq);
      },
      putRecord: (record) => records.put(record),
    };
  },
  async () => {
    await real?.close();
    await nats?.stop();
  },
);
