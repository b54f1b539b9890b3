// One contract for JobIntake, run against the in-memory fake the unit tests use and against the
// real adapter over NATS JetStream (QueueIntake): the fake may not promise what NATS does not do.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomUUID } from 'node:crypto';
import { DEFAULTS } from '../../src/config/config.js';
import { initialRecord } from '../../src/core/pipeline.js';
import type { BuildJob } from '../../src/core/types.js';
import { JetStreamLogStore } from '../../src/queue/log-stream.js';
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
}

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

    it('queueDepth is a number', async () => {
      expect(typeof (await subject.intake.queueDepth())).toBe('number');
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
    return {
      intake: real,
      writeLog: async (id, lines) => {
        const log = await logs.open(id);
        for (const line of lines) log.write(line);
        await log.close();
      },
    };
  },
  async () => {
    await real?.close();
    await nats?.stop();
  },
);
