// Issue 15, finding 6: NATS that stops answering. A real nats-server is SIGSTOPped for 8 s while 4
// senders post distinct signed pushes to serve (in-process, real src/queue adapters). /health must
// say so (503) while it is stopped; afterwards every webhook answered 202 has its job in the stream
// and its record, and every one answered otherwise leaves, within a minute, no record `queued` and
// no job a worker would build: its record is gone or `failed` with E_NOT_ACCEPTED (the choice made:
// settled as failed with the reason, never re-queued, since its sender was told nothing was
// accepted). A real worker then drains the stream: it builds the 202s and nothing else.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig, type Config } from '../../src/config/config.js';
import type { JobIntake } from '../../src/server/job-intake.js';
import { connectQueueIntake } from '../../src/server/queue-intake.js';
import { JOB_ID_HEADER, queueStats } from '../../src/queue/job-queue.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { createLogger } from '../../src/log/logger.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { startNatsWorker } from '../../src/compose.js';
import type { Worker } from '../../src/worker/worker.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { fakePipelineDeps, newEvents } from './fixtures/fake-build.js';
import { isolatedQueue, memoryLogger } from './fixtures/worker-harness.js';

const SECRET = 'stall-test-webhook-secret';
const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, unknown> & { head_commit: Record<string, unknown> };

let nats: NatsServer;
let ctx: NatsContext;
let serve: RunningServer;
let worker: Worker | undefined;
let config: Config;
const events = newEvents();
const workerLog = memoryLogger();
const serveLog: string[] = [];

const sha = (s: string) => createHash('sha1').update(s).digest('hex');

/** A distinct push (its own before, after and delivery id), signed. */
function post(signal: AbortSignal, delivery = randomUUID(), url = serve.url): Promise<{ delivery: string; status: number }> {
  const after = sha(`after-${delivery}`);
  const body = JSON.stringify({ ...PUSH, before: sha(`before-${delivery}`), after, head_commit: { ...PUSH.head_commit, id: after, message: 'sleep=10' } });
  return fetch(`${url}/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': signWebhookBody(SECRET, body) },
    body,
    signal,
  }).then(
    async (res) => {
      await res.arrayBuffer();
      return { delivery, status: res.status };
    },
    () => ({ delivery, status: 0 }),
  );
}

async function jobIdsInStream(): Promise<Set<string>> {
  const info = await ctx.jsm.streams.info(ctx.config.stream);
  const ids = new Set<string>();
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    try {
      const m = await ctx.jsm.streams.getMessage(ctx.config.stream, { seq });
      ids.add(m.header.get(JOB_ID_HEADER));
    } catch {
      // acknowledged (work queue)
    }
  }
  return ids;
}

/** A real worker (fake phases) taking the jobs of the stream; every push of the test is its own. */
async function drainingWorker(): Promise<Worker> {
  worker ??= await startNatsWorker({ nats: ctx, pipelineDeps: fakePipelineDeps(events, 'w1'), logger: workerLog, name: 'w1', concurrency: 4, cancelSuperseded: false, retryDelayMs: 100, pullExpiresMs: 2_000 });
  return worker;
}

beforeAll(async () => {
  nats = await startNatsServer();
  ctx = await isolatedQueue(nats.url, 'stall');
  config = parseConfig({
    env: {
      OCI_BUILD_NATS_URL: nats.url,
      OCI_BUILD_NATS_STREAM: ctx.config.stream,
      OCI_BUILD_NATS_SUBJECT: ctx.config.subject,
      OCI_BUILD_NATS_STATUS_BUCKET: ctx.config.statusBucket,
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_PORT: '0',
      // The protocol when NATS is away for longer than server.queueWait: 503 at once here.
      OCI_BUILD_SERVER_QUEUE_WAIT: '0s',
    },
    home: '/tmp',
  });
  const destination = new Writable({
    write(chunk, _enc, done) {
      serveLog.push(String(chunk));
      done();
    },
  });
  serve = await startServer({ config, logger: createLogger({ destination, level: 'info' }), settleRetryMs: 500, probeIntervalMs: 1000, watchRecords: false });
}, 60_000);

afterAll(async () => {
  nats?.resume();
  await worker?.stop();
  await serve?.close();
  if (ctx) await closeNats(ctx);
  await nats?.stop();
});

describe('NATS that stops answering (SIGSTOP for 8 s under 4 senders)', () => {
  it('/health says so; a 202 has its job and record; anything else leaves nothing queued and builds nothing', async () => {
    const results: Array<{ delivery: string; status: number }> = [];
    const health: number[] = [];
    let sending = true;
    const senders = Array.from({ length: 4 }, async () => {
      while (sending) results.push(await post(AbortSignal.timeout(20_000)));
    });
    await new Promise((r) => setTimeout(r, 1000));
    nats.pause();
    const pausedUntil = Date.now() + 8000;
    try {
      while (Date.now() < pausedUntil) {
        const res = await fetch(`${serve.url}/health`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
        health.push(res?.status ?? 0);
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      nats.resume();
    }
    await new Promise((r) => setTimeout(r, 2000));
    sending = false;
    await Promise.all(senders);
    await waitFor(async () => (await fetch(`${serve.url}/health`)).status === 200, { timeoutMs: 20_000, what: '/health to say ok again' });

    expect(health).toContain(503);
    const accepted = results.filter((r) => r.status === 202);
    const refused = results.filter((r) => r.status !== 202);
    expect(accepted.length).toBeGreaterThan(0);
    // The stall must have refused some, or this test shows nothing.
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(refused.map((r) => r.status))).toEqual(new Set([503]));

    const store = new KvBuildStore(ctx);
    const idOf = (r: { delivery: string }) => `gh-${r.delivery}`;
    // Within a minute of NATS answering again, nothing refused is left `queued`.
    await waitFor(async () => (await Promise.all(refused.map((r) => store.get(idOf(r))))).every((rec) => rec?.status !== 'queued'), {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: 'the records of refused webhooks to be settled',
    });
    const inStream = await jobIdsInStream();
    for (const r of accepted) {
      expect(inStream.has(idOf(r)), `202 ${idOf(r)} has its job`).toBe(true);
      expect((await store.get(idOf(r)))?.status, `202 ${idOf(r)} has its record`).toBe('queued');
    }
    for (const r of refused) {
      const record = await store.get(idOf(r));
      // Gone, or failed with the reason: a worker acknowledges a job whose record is final without building it.
      if (record) expect(record, `refused ${idOf(r)}`).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
      else expect(inStream.has(idOf(r)), `refused ${idOf(r)} without a record has no job`).toBe(false);
    }

    // A real worker drains the stream: it builds exactly the accepted ones.
    await drainingWorker();
    await waitFor(async () => (await queueStats(ctx)).total === 0, { timeoutMs: 60_000, intervalMs: 250, what: 'the worker to drain the stream' });
    const built = new Set(events.attempts.keys());
    expect([...built].sort()).toEqual(accepted.map(idOf).sort());
    console.log(`${results.length} webhooks: ${accepted.length} answered 202, ${refused.length} answered 503; /health during the stop: ${health.join(' ')}; built ${built.size}`);
  }, 180_000);

  it('a publish whose acknowledgement is lost in the stop: 503; the job, stored after all, builds nothing; a redelivery builds it once', async () => {
    // The stop begins right after the record is created: the publish goes out and waits, unanswered.
    const real = await connectQueueIntake(config.nats, { probeIntervalMs: 1000 });
    let stopAfterCreate = true;
    const intake = new Proxy(real, {
      get(target, property) {
        if (property === 'createQueued') {
          return async (record: Parameters<JobIntake['createQueued']>[0]) => {
            const created = await target.createQueued(record);
            if (stopAfterCreate) {
              stopAfterCreate = false;
              nats.pause();
              setTimeout(() => nats.resume(), 8000);
              // SIGSTOP takes effect at the server's next scheduling: let it, before the publish goes.
              await new Promise((r) => setTimeout(r, 200));
            }
            return created;
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as JobIntake;
    await drainingWorker();
    const second = await startServer({ config, intake, settleRetryMs: 500, watchRecords: false, logger: createLogger({ level: 'silent' }) });
    try {
      const delivery = randomUUID();
      const id = `gh-${delivery}`;
      const first = await post(AbortSignal.timeout(20_000), delivery, second.url);
      expect(first.status).toBe(503);
      const store = new KvBuildStore(ctx);
      // NATS runs again: the publish it had read is stored, and the settle behind it too.
      await waitFor(async () => (await store.get(id))?.status === 'failed', { timeoutMs: 60_000, intervalMs: 250, what: 'the record to be settled' });
      expect(await store.get(id)).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
      await waitFor(async () => (await queueStats(ctx)).total === 0, { timeoutMs: 30_000, intervalMs: 250, what: 'the worker to take every job' });
      expect(events.attempts.has(id)).toBe(false);
      // The publish did reach the stream after all: the worker got the job, found it final, built nothing.
      expect(workerLog.lines.some((l) => l.jobId === id && /already finished/.test(String(l.msg)))).toBe(true);
      // GitHub's "Redeliver": the same delivery id is queued now, and built once.
      const again = await post(AbortSignal.timeout(20_000), delivery, second.url);
      expect(again.status).toBe(202);
      await waitFor(async () => events.attempts.has(id) && ['succeeded', 'failed'].includes((await store.get(id))?.status ?? ''), { timeoutMs: 60_000, intervalMs: 250, what: 'the redelivered job to be built' });
      expect(events.attempts.get(id)).toBe(1);
    } finally {
      nats.resume();
      await second.close();
      await real.close();
    }
  }, 120_000);
});
