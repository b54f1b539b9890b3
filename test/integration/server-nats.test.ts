// `serve` against a real nats-server (JetStream, temp store, free loopback port) and the real
// src/queue adapters: what a webhook leaves in the jobs stream and the status bucket.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type Config } from '../../src/config/config.js';
import type { BuildJob, BuildRecord } from '../../src/core/types.js';
import { jobKey, newestQueuedJob } from '../../src/queue/job-queue.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { JetStreamLogStore } from '../../src/queue/log-stream.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { pushClaimKey } from '../../src/server/github-payload.js';
import { createLogger } from '../../src/log/logger.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';

const SECRET = 'integration-webhook-secret';
const TOKEN = 'integration-api-token-0123456789';
const PUSH = readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8');

let nats: NatsServer;
let serve: RunningServer;
let ctx: NatsContext;
let store: KvBuildStore;
let config: Config;

const FIXTURE_AFTER = '4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938';

/**
 * The push fixture as a push of its own (a random `after`): the bucket's push claims outlive each
 * test, and the same push under a new delivery id is a replay (200 duplicate push).
 */
function distinctPush(body = PUSH): { body: string; after: string } {
  const after = randomBytes(20).toString('hex');
  return { body: body.replaceAll(FIXTURE_AFTER, after), after };
}

function sendWebhook(options: { delivery?: string; body?: string; signature?: string | null } = {}) {
  const body = options.body ?? PUSH;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-github-event': 'push',
    'x-github-delivery': options.delivery ?? randomUUID(),
  };
  const signature = options.signature === undefined ? signWebhookBody(SECRET, body) : options.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return fetch(`${serve.url}/webhooks/github`, { method: 'POST', headers, body });
}

async function streamMessages(): Promise<number> {
  return (await ctx.jsm.streams.info(config.nats.stream)).state.messages;
}

/** The job published for a delivery, read back from the stream by its message. */
async function jobsInStream(): Promise<BuildJob[]> {
  const info = await ctx.jsm.streams.info(config.nats.stream);
  const jobs: BuildJob[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    try {
      const m = await ctx.jsm.streams.getMessage(config.nats.stream, { seq });
      jobs.push(JSON.parse(new TextDecoder().decode(m.data)) as BuildJob);
    } catch {
      // deleted (work-queue: acknowledged)
    }
  }
  return jobs;
}

async function purgeJobs(): Promise<void> {
  await ctx.jsm.streams.purge(config.nats.stream);
}

beforeAll(async () => {
  nats = await startNatsServer();
  config = parseConfig({
    env: {
      OCI_BUILD_NATS_URL: nats.url,
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_API_TOKENS: TOKEN,
      OCI_BUILD_SERVER_PORT: '0',
      // The protocol when NATS is away for longer than server.queueWait: 503 at once here.
      OCI_BUILD_SERVER_QUEUE_WAIT: '0s',
    },
    home: '/tmp',
  });
  serve = await startServer({ config, logger: createLogger({ level: 'silent' }) });
  ctx = await connectNats(config.nats, { name: 'server-test-inspector' });
  store = new KvBuildStore(ctx);
});

afterAll(async () => {
  await serve?.close();
  if (ctx) await closeNats(ctx);
  await nats?.stop();
});

describe('webhook → JetStream', () => {
  it('a valid push is queued: the job in the stream and the queued record in the KV bucket', async () => {
    await purgeJobs();
    const delivery = randomUUID();
    const push = distinctPush();
    const res = await sendWebhook({ delivery, body: push.body });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { jobId: string; status: string };
    expect(body).toEqual({ jobId: `gh-${delivery}`, status: 'queued' });
    const jobs = await jobsInStream();
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ id: body.jobId, deliveryId: delivery, repository: { fullName: 'octo-org/hello-service', commit: push.after } });
    expect(await store.get(body.jobId)).toMatchObject({ id: body.jobId, status: 'queued', trigger: 'webhook', deliveryId: delivery });
  });

  it('a bad or missing signature is 401 and queues nothing', async () => {
    await purgeJobs();
    const before = (await store.list()).length;
    const missing = randomUUID();
    const bad = randomUUID();
    expect((await sendWebhook({ delivery: missing, signature: null })).status).toBe(401);
    expect((await sendWebhook({ delivery: bad, signature: signWebhookBody('wrong', PUSH) })).status).toBe(401);
    expect(await streamMessages()).toBe(0);
    expect(await store.get(`gh-${missing}`)).toBeUndefined();
    expect(await store.get(`gh-${bad}`)).toBeUndefined();
    expect((await store.list()).length).toBe(before);
  });

  it('50 concurrent webhooks are all queued, each once', async () => {
    await purgeJobs();
    const deliveries = Array.from({ length: 50 }, () => randomUUID());
    const answers = await Promise.all(deliveries.map((delivery) => sendWebhook({ delivery, body: distinctPush().body })));
    expect(answers.map((a) => a.status)).toEqual(deliveries.map(() => 202));
    const ids = await Promise.all(answers.map(async (a) => ((await a.json()) as { jobId: string }).jobId));
    expect(new Set(ids).size).toBe(50);
    expect(await streamMessages()).toBe(50);
    const jobs = await jobsInStream();
    expect(new Set(jobs.map((j) => j.id))).toEqual(new Set(ids));
    for (const id of ids) expect((await store.get(id))?.status).toBe('queued');
  });

  it('a redelivered webhook answers the same id and leaves one message', async () => {
    await purgeJobs();
    const delivery = randomUUID();
    const { body } = distinctPush();
    const first = (await (await sendWebhook({ delivery, body })).json()) as { jobId: string };
    const again = await Promise.all([sendWebhook({ delivery, body }), sendWebhook({ delivery, body })]);
    for (const res of again) {
      expect(res.status).toBe(202);
      expect(((await res.json()) as { jobId: string }).jobId).toBe(first.jobId);
    }
    expect(await streamMessages()).toBe(1);
  });
});

describe('replays and what a push may make a worker fetch (issue 15, findings 3 and 4)', () => {
  it('an attacker replaying a signed push under a fresh delivery id gets 200 duplicate push, and nothing more is queued', async () => {
    await purgeJobs();
    // A real push as GitHub signed it, seen by the attacker (a proxy log, a leaked delivery).
    const { body, after } = distinctPush();
    const signature = signWebhookBody(SECRET, body);
    const original = randomUUID();
    const first = await sendWebhook({ delivery: original, body, signature });
    expect(first.status).toBe(202);
    expect(await first.json()).toEqual({ jobId: `gh-${original}`, status: 'queued' });

    // The same bytes and the same signature; only X-GitHub-Delivery (not signed) is new.
    const replayed = randomUUID();
    const replay = await sendWebhook({ delivery: replayed, body, signature });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toEqual({ ignored: 'duplicate push', detail: expect.stringContaining(`gh-${original}`) });

    // Also through another serve replica: the claim is in NATS, not in one process.
    const replica = await startServer({ config, logger: createLogger({ level: 'silent' }), watchRecords: false });
    try {
      const again = await fetch(`${replica.url}/webhooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signature },
        body,
      });
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ ignored: 'duplicate push' });
    } finally {
      await replica.close();
    }

    const jobs = await jobsInStream();
    expect(jobs.map((j) => j.id)).toEqual([`gh-${original}`]);
    const records = (await store.list({ repo: 'octo-org/hello-service' })).filter((r) => r.repository.commit === after);
    expect(records.map((r) => r.id)).toEqual([`gh-${original}`]);
    expect(await store.get(`gh-${replayed}`)).toBeUndefined();
    const claim = await ctx.kv.get(`push.${pushClaimKey({ fullName: 'octo-org/hello-service', ref: 'refs/heads/main', before: '6113728f27ae82c7b1a177c8d03f9e96e0adf246', commit: after })}`);
    expect(claim?.string()).toBe(`gh-${original}`);

    // GitHub's own redelivery (the original delivery id) still answers its job, once.
    const redelivered = await sendWebhook({ delivery: original, body, signature });
    expect(redelivered.status).toBe(202);
    expect(await redelivered.json()).toMatchObject({ jobId: `gh-${original}`, duplicate: true });
    expect(await streamMessages()).toBe(1);
  });

  it('a signed push whose clone_url is the link-local metadata address is 400 and leaves nothing in NATS', async () => {
    await purgeJobs();
    const { body, after } = distinctPush(
      PUSH.replace('"clone_url": "https://github.com/octo-org/hello-service.git"', '"clone_url": "http://169.254.169.254/octo-org/hello-service.git"'),
    );
    const delivery = randomUUID();
    const res = await sendWebhook({ delivery, body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/names host 169\.254\.169\.254, which is not in server\.allowedHosts \(github\.com\)/);
    expect(await streamMessages()).toBe(0);
    expect(await store.get(`gh-${delivery}`)).toBeUndefined();
    const claim = await ctx.kv.get(`push.${pushClaimKey({ fullName: 'octo-org/hello-service', ref: 'refs/heads/main', before: '6113728f27ae82c7b1a177c8d03f9e96e0adf246', commit: after })}`);
    expect(claim).toBeNull();
  });
});

describe('supersede bookkeeping', () => {
  it('after a burst of pushes to one branch, the newest job of that branch is the last one JetStream accepted', async () => {
    await purgeJobs();
    const branch = `burst-${randomUUID().slice(0, 8)}`;
    const body = PUSH.replace('"refs/heads/main"', `"refs/heads/${branch}"`);
    const answers = await Promise.all(Array.from({ length: 20 }, () => sendWebhook({ body: distinctPush(body).body })));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 202));
    const info = await ctx.jsm.streams.info(config.nats.stream);
    const last = await ctx.jsm.streams.getMessage(config.nats.stream, { seq: info.state.last_seq });
    const lastJob = JSON.parse(new TextDecoder().decode(last.data)) as BuildJob;
    const key = jobKey('octo-org/hello-service', branch);
    // Workers find the newest push of a branch by its subject in the stream (supersede).
    expect(await newestQueuedJob(ctx, key)).toEqual({ id: lastJob.id, seq: info.state.last_seq });
  });
});

describe('status API over the KV bucket', () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const record = (id: string, patch: Partial<BuildRecord>, branch = 'main', fullName = 'acme/api'): BuildRecord => ({
    id,
    status: 'succeeded',
    trigger: 'webhook',
    repository: { fullName, branch, commit: 'b'.repeat(40) },
    createdAt: '2026-11-29T07:00:00.000Z',
    phases: [{ name: 'source', status: 'succeeded', startedAt: '2026-11-29T07:00:00.000Z', durationMs: 120 }],
    images: [],
    ...patch,
  });

  beforeAll(async () => {
    await store.put(record('api-1', { createdAt: '2026-11-29T07:00:01.000Z' }));
    await store.put(record('api-2', { createdAt: '2026-11-29T07:00:02.000Z', status: 'failed' }, 'dev'));
    await store.put(record('api-3', { createdAt: '2026-11-29T07:00:03.000Z', status: 'running' }, 'main', 'acme/other'));
    const logs = new JetStreamLogStore(ctx);
    const log = await logs.open('api-1');
    log.write('==> source');
    log.write('fetched 3 objects');
    await log.close();
  });

  it('shows an existing build; an unknown one is 404', async () => {
    const res = await fetch(`${serve.url}/builds/api-2`, { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: 'api-2', status: 'failed', repository: { branch: 'dev' } });
    expect((await fetch(`${serve.url}/builds/no-such-build`, { headers: auth })).status).toBe(404);
  });

  it('lists with filters', async () => {
    const ids = async (query: string) => ((await (await fetch(`${serve.url}/builds${query}`, { headers: auth })).json()) as { builds: BuildRecord[] }).builds.map((b) => b.id);
    expect(await ids('?repo=acme/api')).toEqual(['api-2', 'api-1']);
    expect(await ids('?repo=acme/api&branch=dev')).toEqual(['api-2']);
    expect(await ids('?status=running')).toEqual(['api-3']);
    expect(await ids('?repo=acme/api&limit=1')).toEqual(['api-2']);
  });

  it('serves the log of a build', async () => {
    const res = await fetch(`${serve.url}/builds/api-1/logs`, { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('==> source\nfetched 3 objects\n');
    const follow = await fetch(`${serve.url}/builds/api-1/logs?follow=1`, { headers: auth });
    expect(await follow.text()).toBe('==> source\nfetched 3 objects\n');
  });

  it('follows the log of a running build until it ends', async () => {
    await store.put(record('api-live', { status: 'running', phases: [] }));
    const log = await new JetStreamLogStore(ctx).open('api-live');
    log.write('first line');
    const res = await fetch(`${serve.url}/builds/api-live/logs?follow=1`, { headers: auth });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('first line\n')) text += decoder.decode((await reader.read()).value);
    log.write('second line');
    await log.close();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value);
    expect(text).toBe('first line\nsecond line\n');
    await store.put(record('api-live', { status: 'succeeded', phases: [] }));
  });

  it('a valid token is let in, an invalid one is 401', async () => {
    expect((await fetch(`${serve.url}/builds`, { headers: auth })).status).toBe(200);
    const invalid = await fetch(`${serve.url}/builds`, { headers: { authorization: 'Bearer not-the-token-at-all' } });
    expect(invalid.status).toBe(401);
    expect(invalid.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('/metrics counts webhooks, and jobs finished after it started watching (not the ones before)', async () => {
    const text = await (await fetch(`${serve.url}/metrics`)).text();
    expect(text).toMatch(/oci_build_webhooks_total\{event="push",outcome="queued"\} \d+/);
    expect(text).toMatch(/oci_build_webhooks_total\{event="push",outcome="unauthorized"\} 2/);
    expect(text).toMatch(/oci_build_queue_depth \d+/);
    // Written after this serve started: counted, with their phases.
    expect(text).toMatch(/oci_build_jobs_finished_total\{status="failed"\} 1\n/);
    expect(text).toMatch(/oci_build_phase_duration_seconds_count\{phase="source",status="succeeded"\} 2\n/);
    expect(text).toMatch(/oci_build_builds_in_flight 1\n/);

    // A second replica started now sees the same records as history: nothing finished yet, one running.
    const replica = await startServer({ config, logger: createLogger({ level: 'silent' }) });
    try {
      const metricsOf = async () => (await fetch(`${replica.url}/metrics`)).text();
      await waitFor(async () => /oci_build_builds_in_flight 1\n/.test(await metricsOf()), { what: 'the replica to read the bucket' });
      expect(await metricsOf()).not.toMatch(/oci_build_jobs_finished_total\{/);
      await store.put(record('api-4', { status: 'running' }));
      await store.put(record('api-4', { status: 'cancelled' }));
      await waitFor(async () => /oci_build_jobs_finished_total\{status="cancelled"\} 1\n/.test(await metricsOf()), { what: 'the cancelled build in /metrics' });
      expect(await metricsOf()).not.toMatch(/oci_build_jobs_finished_total\{status="(succeeded|failed)"\}/);
    } finally {
      await replica.close();
    }
  });
});

describe('NATS going away and coming back', () => {
  it('/health is ok, 503 while NATS is down (webhooks too, nothing written), ok again after it restarts', async () => {
    expect((await fetch(`${serve.url}/health`)).status).toBe(200);
    await purgeJobs();
    const recordsBefore = (await store.list()).length;
    await nats.kill();
    await waitFor(async () => (await fetch(`${serve.url}/health`)).status === 503, { what: '/health to turn 503' });
    expect(await (await fetch(`${serve.url}/health`)).json()).toEqual({ status: 'unavailable', nats: 'disconnected' });

    const delivery = randomUUID();
    const started = Date.now();
    const res = await sendWebhook({ delivery, body: distinctPush().body });
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await fetch(`${serve.url}/builds`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(503);

    await nats.start();
    await waitFor(async () => (await fetch(`${serve.url}/health`)).status === 200, { what: '/health to recover', timeoutMs: 30_000 });
    await waitFor(async () => !ctx.nc.isClosed() && (await streamMessages()) >= 0, { what: 'the inspector to reconnect', timeoutMs: 30_000 });
    expect(await streamMessages()).toBe(0);
    expect(await store.get(`gh-${delivery}`)).toBeUndefined();
    expect((await store.list()).length).toBe(recordsBefore);

    // And it queues again.
    expect((await sendWebhook({ body: distinctPush().body })).status).toBe(202);
    expect(await streamMessages()).toBe(1);
  });
});
