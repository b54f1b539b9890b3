// POST /builds/:id/cancel and /rebuild, GET /workers, server.publicRead, ?tail= and the dashboard's
// files, through a real serve (startServer on loopback) over the fake intake and a fake control.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/config.js';
import type { CancelRequest } from '../../src/core/cancel-request.js';
import type { CommitStatusNotifier } from '../../src/core/ports.js';
import { initialRecord } from '../../src/core/pipeline.js';
import type { BuildJob, BuildRecord } from '../../src/core/types.js';
import { createLogger } from '../../src/log/logger.js';
import { jobSubject, supersedeKeyOf } from '../../src/queue/job-queue.js';
import type { BuildControl, WorkerView } from '../../src/server/build-actions.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { FakeIntake } from './server-fake-intake.js';

const TOKEN_A = 'first-api-token-0123456789';
const TOKEN_B = 'second-api-token-0123456789';
const COMMIT = 'ab'.repeat(20);
const BEFORE = 'cd'.repeat(20);

class FakeControl implements BuildControl {
  readonly requests: CancelRequest[] = [];
  readonly endedLogs: Array<{ id: string; line: string }> = [];
  workers: WorkerView[] = [];
  constructor(private readonly intake: FakeIntake) {}
  async requestCancel(request: CancelRequest): Promise<void> {
    this.requests.push(request);
  }
  async cancelQueued(request: CancelRequest): Promise<{ cancelled: boolean; record: BuildRecord | undefined }> {
    const record = this.intake.records.get(request.id);
    if (!record || record.status !== 'queued') return { cancelled: false, record };
    const cancelled: BuildRecord = { ...record, status: 'cancelled', cancelledBy: request.by, ...(request.reason ? { cancelReason: request.reason } : {}) };
    this.intake.putRecord(cancelled);
    return { cancelled: true, record: cancelled };
  }
  async endLog(id: string, line: string): Promise<void> {
    this.endedLogs.push({ id, line });
  }
  async listWorkers(): Promise<WorkerView[]> {
    return this.workers;
  }
}

function job(id: string, overrides: Partial<BuildJob['repository']> = {}): BuildJob {
  return {
    id,
    trigger: 'webhook',
    deliveryId: id,
    source: { kind: 'git', url: 'https://github.com/acme/app.git', ref: COMMIT },
    repository: { fullName: 'acme/app', cloneUrl: 'https://github.com/acme/app.git', ref: 'refs/heads/main', branch: 'main', commit: COMMIT, before: BEFORE, ...overrides },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

function put(intake: FakeIntake, id: string, status: BuildRecord['status'], overrides: Partial<BuildJob['repository']> = {}): BuildRecord {
  const record = { ...initialRecord(job(id, overrides)), status };
  intake.putRecord(record);
  return record;
}

const silent = createLogger({ destination: new Writable({ write: (_c, _e, done) => done() }), level: 'info' });

/** Records what serve asks of GitHub (src/notify's port). */
class RecordingNotifier implements CommitStatusNotifier {
  readonly queuedJobs: BuildJob[] = [];
  queued(job: BuildJob): void {
    this.queuedJobs.push(job);
  }
  building(): void {}
  finished(): void {}
  async close(): Promise<void> {}
}

async function serve(env: Record<string, string> = {}) {
  const intake = new FakeIntake();
  const control = new FakeControl(intake);
  const notifier = new RecordingNotifier();
  const config = parseConfig({ env: { OCI_BUILD_SERVER_PORT: '0', OCI_BUILD_SERVER_WEBHOOK_SECRET: 'secret-for-unit-tests', OCI_BUILD_SERVER_API_TOKENS: `${TOKEN_A},${TOKEN_B}`, ...env }, home: '/tmp' });
  const server = await startServer({ config, intake, control, notifier, logger: silent, watchRecords: false, host: '127.0.0.1', port: 0 });
  return { intake, control, notifier, server };
}

function post(server: RunningServer, path: string, options: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? TOKEN_B : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${server.url}${path}`, { method: 'POST', headers, ...(options.body !== undefined ? { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) } : {}) });
}

describe('POST /builds/:id/cancel', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve({ OCI_BUILD_SERVER_PUBLIC_READ: 'true' });
  });
  afterAll(() => s.server.close());

  it('cancels a queued build at once: the record says who (the token\'s position, never the token) and why, the log is ended', async () => {
    put(s.intake, 'q-1', 'queued');
    const response = await post(s.server, '/builds/q-1/cancel', { body: { reason: '  wrong\nbranch  ' } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ jobId: 'q-1', status: 'cancelled', cancelledBy: 'api:token#2' });
    expect(s.intake.records.get('q-1')).toMatchObject({ status: 'cancelled', cancelledBy: 'api:token#2', cancelReason: 'wrong branch' });
    expect(s.control.requests.at(-1)).toMatchObject({ id: 'q-1', by: 'api:token#2', reason: 'wrong branch' });
    expect(s.control.endedLogs).toContainEqual({ id: 'q-1', line: '==> Cancelled by api:token#2: wrong branch, before it started' });
    expect(JSON.stringify([...s.intake.records.values()])).not.toContain(TOKEN_B);
  });

  it('a running build gets a request its worker acts on: 202 cancelling, the record left to the worker', async () => {
    put(s.intake, 'r-1', 'running');
    const response = await post(s.server, '/builds/r-1/cancel', { token: TOKEN_A });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ jobId: 'r-1', status: 'cancelling', cancelledBy: 'api:token#1' });
    expect(s.control.requests.at(-1)).toMatchObject({ id: 'r-1', by: 'api:token#1' });
    expect(s.control.requests.at(-1)?.reason).toBeUndefined();
    expect(s.intake.records.get('r-1')?.status).toBe('running');
  });

  it('a build that has ended: 409 saying so; unknown: 404; a bad id: 400', async () => {
    put(s.intake, 'done-1', 'succeeded');
    const ended = await post(s.server, '/builds/done-1/cancel');
    expect(ended.status).toBe(409);
    expect(((await ended.json()) as { error: string }).error).toBe('Build done-1 has already ended (succeeded): there is nothing to cancel');
    expect((await post(s.server, '/builds/nope/cancel')).status).toBe(404);
    expect((await post(s.server, '/builds/..%2Fx/cancel')).status).toBe(400);
    expect(s.control.requests.some((r) => r.id === 'done-1')).toBe(false);
  });

  it('needs a valid token even with server.publicRead; only POST; a body that is not a JSON object is 400', async () => {
    put(s.intake, 'q-2', 'queued');
    expect((await post(s.server, '/builds/q-2/cancel', { token: null })).status).toBe(401);
    expect((await post(s.server, '/builds/q-2/cancel', { token: 'not-a-valid-token-at-all' })).status).toBe(401);
    expect((await fetch(`${s.server.url}/builds/q-2/cancel`, { headers: { authorization: `Bearer ${TOKEN_A}` } })).status).toBe(405);
    expect((await post(s.server, '/builds/q-2/cancel', { body: '[1]' })).status).toBe(400);
    expect((await post(s.server, '/builds/q-2/cancel', { body: { reason: 'x'.repeat(5000) } })).status).toBe(413);
    expect(s.intake.records.get('q-2')?.status).toBe('queued');
  });
});

describe('POST /builds/:id/rebuild', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve({ OCI_BUILD_IMAGE_REGISTRY: 'registry.example/team' });
  });
  afterAll(() => s.server.close());

  it('queues a new build of the same commit and ref, with its own id and rebuildOf, through the enqueue path', async () => {
    put(s.intake, 'gh-1', 'failed');
    const response = await post(s.server, '/builds/gh-1/rebuild');
    expect(response.status).toBe(202);
    const answer = (await response.json()) as { jobId: string; status: string; rebuildOf: string };
    expect(answer).toMatchObject({ status: 'queued', rebuildOf: 'gh-1' });
    expect(answer.jobId).toMatch(/^rb-[0-9a-f]{32}$/);
    const published = s.intake.published.find((j) => j.id === answer.jobId);
    expect(published).toMatchObject({
      trigger: 'webhook',
      rebuildOf: 'gh-1',
      source: { kind: 'git', url: 'https://github.com/acme/app.git', ref: COMMIT },
      repository: { fullName: 'acme/app', ref: 'refs/heads/main', branch: 'main', commit: COMMIT, before: BEFORE },
      affectedBase: BEFORE,
      image: { registry: 'registry.example/team', push: false },
    });
    expect(s.intake.records.get(answer.jobId)).toMatchObject({ status: 'queued', rebuildOf: 'gh-1' });
    // Its commit status `pending` goes out like a webhook's.
    await expect.poll(() => s.notifier.queuedJobs.map((j) => j.id)).toContain(answer.jobId);
    // Deliberate: it neither supersedes the branch's builds nor is superseded (the plain subject).
    expect(supersedeKeyOf(published!)).toBeUndefined();
    expect(jobSubject({ subject: 'builds.webhook' }, published!)).toBe('builds.webhook');
  });

  it('is never deduplicated away as a replayed push; the same Idempotency-Key gives the same rebuild', async () => {
    put(s.intake, 'gh-2', 'succeeded');
    const first = (await (await post(s.server, '/builds/gh-2/rebuild')).json()) as { jobId: string };
    const second = (await (await post(s.server, '/builds/gh-2/rebuild')).json()) as { jobId: string };
    expect(first.jobId).not.toBe(second.jobId);
    expect(s.intake.published.filter((j) => j.rebuildOf === 'gh-2')).toHaveLength(2);
    const keyed = await post(s.server, '/builds/gh-2/rebuild', { headers: { 'idempotency-key': 'click-1' } });
    const again = await post(s.server, '/builds/gh-2/rebuild', { headers: { 'idempotency-key': 'click-1' } });
    const [a, b] = (await Promise.all([keyed.json(), again.json()])) as Array<{ jobId: string; duplicate?: boolean }>;
    expect(a!.jobId).toBe(b!.jobId);
    expect(b!.duplicate).toBe(true);
    expect(s.intake.published.filter((j) => j.rebuildOf === 'gh-2')).toHaveLength(3);
  });

  it('refuses a record without a clone URL and commit, or whose host is no longer allowed (409); unknown 404; no token 401', async () => {
    put(s.intake, 'local-1', 'succeeded', { cloneUrl: undefined });
    put(s.intake, 'evil-1', 'succeeded', { cloneUrl: 'https://evil.example/acme/app.git' });
    const local = await post(s.server, '/builds/local-1/rebuild');
    expect(local.status).toBe(409);
    expect(((await local.json()) as { error: string }).error).toContain('names no Git clone URL');
    const evil = await post(s.server, '/builds/evil-1/rebuild');
    expect(evil.status).toBe(409);
    expect(((await evil.json()) as { error: string }).error).toContain('evil.example, which is not in server.allowedHosts');
    expect((await post(s.server, '/builds/nope/rebuild')).status).toBe(404);
    expect((await post(s.server, '/builds/local-1/rebuild', { token: null })).status).toBe(401);
    expect(s.intake.published.some((j) => j.rebuildOf === 'local-1' || j.rebuildOf === 'evil-1')).toBe(false);
  });
});

describe('reads: server.publicRead, GET /workers, ?tail=', () => {
  let open: Awaited<ReturnType<typeof serve>>;
  let closed: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    [open, closed] = await Promise.all([serve({ OCI_BUILD_SERVER_PUBLIC_READ: 'true' }), serve()]);
  });
  afterAll(() => Promise.all([open.server.close(), closed.server.close()]));

  it('with publicRead the reads answer without a token; without it they need one', async () => {
    put(open.intake, 'p-1', 'running');
    put(closed.intake, 'p-1', 'running');
    open.control.workers = [{ name: 'w1', id: 'x', concurrency: 2, state: 'RUNNING', running: [{ jobId: 'p-1', repository: 'acme/app', branch: 'main', startedAt: new Date().toISOString() }] }];
    for (const path of ['/builds', '/builds/p-1', '/builds/p-1/logs', '/workers']) {
      expect((await fetch(`${open.server.url}${path}`)).status, path).toBe(200);
      expect((await fetch(`${closed.server.url}${path}`)).status, path).toBe(401);
    }
    expect(await (await fetch(`${open.server.url}/workers`)).json()).toEqual({ workers: open.control.workers });
    expect((await fetch(`${closed.server.url}/workers`, { headers: { authorization: `Bearer ${TOKEN_A}` } })).status).toBe(200);
  });

  it('?tail=BYTES answers the last whole lines and how much was left out; with follow it is 400', async () => {
    put(open.intake, 't-1', 'succeeded');
    for (let i = 1; i <= 100; i++) open.intake.appendLog('t-1', `line ${String(i).padStart(3, '0')}`);
    const response = await fetch(`${open.server.url}/builds/t-1/logs?tail=35`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('line 098\nline 099\nline 100\n');
    expect(response.headers.get('x-log-skipped-bytes')).toBe(String(97 * 9));
    expect(response.headers.get('x-log-skipped-lines')).toBe('97');
    expect((await fetch(`${open.server.url}/builds/t-1/logs?tail=36&follow=1`)).status).toBe(400);
    expect((await fetch(`${open.server.url}/builds/t-1/logs?tail=0`)).status).toBe(400);
  });
});

describe('the dashboard files', () => {
  let s: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    s = await serve();
  });
  afterAll(() => s.server.close());

  it('GET / is the page with strict security headers, and its files under /ui/; no token needed, no secret inside', async () => {
    const page = await fetch(`${s.server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/ui/app.js"></script>');
    expect(html).not.toMatch(/<script>(?!<)/);
    for (const file of ['app.js', 'ansi.js', 'app.css', 'favicon.svg']) {
      const asset = await fetch(`${s.server.url}/ui/${file}`);
      expect(asset.status, file).toBe(200);
      const text = await asset.text();
      expect(text).not.toContain(TOKEN_A);
      expect(text).not.toContain('secret-for-unit-tests');
    }
    const etag = page.headers.get('etag')!;
    expect((await fetch(`${s.server.url}/`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${s.server.url}/ui/nope.js`)).status).toBe(404);
    expect((await fetch(`${s.server.url}/ui/../package.json`)).status).toBe(404);
  });
});
