import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig, type Config } from '../../src/config/config.js';
import { ConfigError, ServiceUnavailableError } from '../../src/core/errors.js';
import { initialRecord } from '../../src/core/pipeline.js';
import type { BuildRecord } from '../../src/core/types.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { createLogger } from '../../src/log/logger.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { FakeIntake } from './server-fake-intake.js';

const SECRET = 'webhook-secret-for-unit-tests';
const TOKEN = 'api-token-0123456789abcdef';
const PUSH = readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8');
const PING = readFileSync(join(import.meta.dirname, '../fixtures/github/ping.json'), 'utf8');
const DELETE = readFileSync(join(import.meta.dirname, '../fixtures/github/push-delete.json'), 'utf8');

function configWith(env: Record<string, string>): Config {
  // server.queueWait 0: NATS away answers 503 at once (the queueWait tests set their own).
  return parseConfig({ env: { OCI_BUILD_SERVER_PORT: '0', OCI_BUILD_SERVER_QUEUE_WAIT: '0s', ...env }, home: '/tmp' });
}

let counter = 0;
function delivery(): string {
  counter++;
  return `00000000-0000-4000-8000-${counter.toString(16).padStart(12, '0')}`;
}

let pushes = 0;
/**
 * The push fixture as another push (its own `after`): the same body under a new delivery id is a
 * replay, answered `duplicate push`.
 */
function distinctPush(body = PUSH): string {
  pushes++;
  const after = createHash('sha1').update(`push-${pushes}`).digest('hex');
  const changed = body.replace('"after": "4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938"', `"after": "${after}"`);
  if (changed === body) throw new Error('the fixture has no such "after"');
  return changed;
}

interface Captured {
  lines: Array<Record<string, unknown>>;
  text: string[];
}

function captureLogger() {
  const captured: Captured = { lines: [], text: [] };
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) {
        captured.text.push(line);
        captured.lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger({ destination, level: 'info' }), captured };
}

function sendWebhook(url: string, options: { body?: string | Buffer; event?: string; delivery?: string | null; signature?: string | null; contentType?: string } = {}) {
  const body = options.body ?? PUSH;
  const headers: Record<string, string> = { 'content-type': options.contentType ?? 'application/json', 'x-github-event': options.event ?? 'push' };
  const id = options.delivery === undefined ? delivery() : options.delivery;
  if (id !== null) headers['x-github-delivery'] = id;
  const signature = options.signature === undefined ? signWebhookBody(SECRET, body) : options.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return fetch(`${url}/webhooks/github`, { method: 'POST', headers, body });
}

describe('serve configuration', () => {
  it('refuses to start without server.webhookSecret, naming the key and its environment variable', async () => {
    const err = await startServer({ config: configWith({}), intake: new FakeIntake() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/server\.webhookSecret/);
    expect((err as Error).message).toMatch(/OCI_BUILD_SERVER_WEBHOOK_SECRET/);
  });
});

describe('listening', () => {
  it('a port in use is a ServiceUnavailableError naming the address and what to do', async () => {
    const config = configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET });
    const first = await startServer({ config, intake: new FakeIntake(), logger: createLogger({ level: 'silent' }) });
    try {
      const err = await startServer({ config, port: first.port, intake: new FakeIntake(), logger: createLogger({ level: 'silent' }) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceUnavailableError);
      expect((err as ServiceUnavailableError).message).toContain(`127.0.0.1:${first.port}`);
      expect((err as ServiceUnavailableError).hint).toMatch(/--port/);
    } finally {
      await first.close();
    }
  });
});

describe('POST /webhooks/github', () => {
  let intake: FakeIntake;
  let server: RunningServer;
  let captured: Captured;

  beforeEach(async () => {
    intake = new FakeIntake();
    const log = captureLogger();
    captured = log.captured;
    server = await startServer({
      config: configWith({
        OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
        OCI_BUILD_SERVER_MAX_BODY_BYTES: '16384',
        OCI_BUILD_SERVER_BRANCHES_EXCLUDE: 'wip/**',
        OCI_BUILD_IMAGE_REGISTRY: '127.0.0.1:5000/team',
      }),
      intake,
      logger: log.logger,
    });
  });
  afterEach(() => server.close());

  it('a signed push answers 202 after the queued record is stored and the job published', async () => {
    const id = delivery();
    const res = await sendWebhook(server.url, { delivery: id });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ jobId: `gh-${id}`, status: 'queued' });
    expect(intake.published).toHaveLength(1);
    expect(intake.published[0]).toMatchObject({ id: `gh-${id}`, deliveryId: id, trigger: 'webhook', image: { registry: '127.0.0.1:5000/team' } });
    expect(intake.records.get(`gh-${id}`)).toMatchObject({ id: `gh-${id}`, status: 'queued', deliveryId: id, repository: { fullName: 'octo-org/hello-service', branch: 'main' } });
  });

  it('accepts application/x-www-form-urlencoded bodies (payload=)', async () => {
    const body = new URLSearchParams({ payload: PUSH }).toString();
    const res = await sendWebhook(server.url, { body, contentType: 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(202);
    expect(intake.published).toHaveLength(1);
  });

  it('a missing or wrong signature is 401 and queues nothing', async () => {
    const missing = await sendWebhook(server.url, { signature: null });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ code: 'E_SIGNATURE', error: expect.stringMatching(/missing/) });
    const wrong = await sendWebhook(server.url, { signature: signWebhookBody('another secret', PUSH) });
    expect(wrong.status).toBe(401);
    const tampered = await sendWebhook(server.url, { signature: signWebhookBody(SECRET, PUSH), body: PUSH.replace('mona', 'eve0') });
    expect(tampered.status).toBe(401);
    expect(intake.published).toHaveLength(0);
    expect(intake.records.size).toBe(0);
  });

  it('ping, branch deletions, other events and filtered branches answer 200 ignored', async () => {
    const ping = await sendWebhook(server.url, { body: PING, event: 'ping' });
    expect(ping.status).toBe(200);
    expect(await ping.json()).toMatchObject({ ignored: 'ping' });
    const deletion = await sendWebhook(server.url, { body: DELETE });
    expect(await deletion.json()).toMatchObject({ ignored: 'deleted' });
    const other = await sendWebhook(server.url, { body: '{"action":"opened"}', event: 'issues' });
    expect(other.status).toBe(200);
    expect(await other.json()).toMatchObject({ ignored: 'event' });
    const wip = await sendWebhook(server.url, { body: PUSH.replace('"refs/heads/main"', '"refs/heads/wip/try"') });
    expect(wip.status).toBe(200);
    expect(await wip.json()).toMatchObject({ ignored: 'branch-filtered' });
    expect(intake.published).toHaveLength(0);
  });

  it('a malformed payload or a missing delivery id is 400 with a message, and queues nothing', async () => {
    const badSha = await sendWebhook(server.url, { body: PUSH.replace('"after": "4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938"', '"after": "not-a-sha"') });
    expect(badSha.status).toBe(400);
    expect(((await badSha.json()) as { error: string }).error).toMatch(/after is not a 40-hex commit SHA/);
    const badName = await sendWebhook(server.url, { body: PUSH.replace('"full_name": "octo-org/hello-service"', '"full_name": "octo-org/../etc"') });
    expect(badName.status).toBe(400);
    const noDelivery = await sendWebhook(server.url, { delivery: null });
    expect(noDelivery.status).toBe(400);
    expect(((await noDelivery.json()) as { error: string }).error).toMatch(/X-GitHub-Delivery/);
    const notJson = await sendWebhook(server.url, { body: '{"ref":' });
    expect(notJson.status).toBe(400);
    expect(intake.published).toHaveLength(0);
    expect(intake.records.size).toBe(0);
  });

  it('a redelivery answers the same job id and publishes once', async () => {
    const id = delivery();
    const first = (await (await sendWebhook(server.url, { delivery: id })).json()) as { jobId: string };
    const second = await sendWebhook(server.url, { delivery: id });
    expect(second.status).toBe(202);
    expect(await second.json()).toMatchObject({ jobId: first.jobId, duplicate: true });
    expect(intake.published).toHaveLength(1);
    // Once the build ran, a redelivery reports its status and publishes nothing.
    intake.records.get(first.jobId)!.status = 'succeeded';
    const third = await sendWebhook(server.url, { delivery: id });
    expect(await third.json()).toEqual({ jobId: first.jobId, status: 'succeeded', duplicate: true });
    expect(intake.published).toHaveLength(1);
  });

  it('NATS disconnected: 503 at once and nothing written', async () => {
    intake.connected = false;
    const res = await sendWebhook(server.url);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(intake.records.size).toBe(0);
    expect(intake.published).toHaveLength(0);
  });

  it('a failed publish settles the record as failed (not accepted) and answers 503; a redelivery queues it', async () => {
    intake.failPublish = true;
    const id = delivery();
    const res = await sendWebhook(server.url, { delivery: id });
    expect(res.status).toBe(503);
    const [record] = [...intake.records.values()];
    // Final: a worker that gets the job (its publish may have been stored after all) builds nothing.
    expect(record).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
    expect(record!.error!.message).toMatch(/answered 503/);
    intake.failPublish = false;
    const again = await sendWebhook(server.url, { delivery: id });
    expect(again.status).toBe(202);
    expect(intake.records.get(record!.id)).toMatchObject({ status: 'queued' });
    expect(intake.published).toHaveLength(1);
  });

  it('a failed create is settled as not accepted once NATS answers (the create may be stored late)', async () => {
    intake.failCreate = true;
    expect((await sendWebhook(server.url, { body: distinctPush() })).status).toBe(503);
    intake.failCreate = false;
    const deadline = Date.now() + 6000;
    while (intake.records.size === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect([...intake.records.values()]).toMatchObject([{ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } }]);
    expect(intake.published).toHaveLength(0);
  });

  it('a record whose settle failed is settled once NATS answers again', async () => {
    intake.failPublish = true;
    intake.failDiscard = true;
    expect((await sendWebhook(server.url)).status).toBe(503);
    const [id] = [...intake.records.keys()];
    expect(intake.records.get(id!)!.status).toBe('queued');
    intake.failDiscard = false;
    const deadline = Date.now() + 6000;
    while (intake.records.get(id!)!.status === 'queued' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(intake.records.get(id!)).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
  });

  it('a declared Content-Length over server.maxBodyBytes is 413 before the body is sent', async () => {
    const url = new URL(server.url);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/webhooks/github', headers: { 'content-type': 'application/json', 'content-length': '1000000', 'x-github-event': 'push' } });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      // Only the headers and 1 KB are sent: the answer must not wait for the rest.
      req.write('x'.repeat(1024));
    });
    expect(answer.status).toBe(413);
    expect(answer.body).toMatch(/server\.maxBodyBytes/);
  });

  it('a chunked body growing over server.maxBodyBytes is 413 while streaming', async () => {
    const url = new URL(server.url);
    let sent = 0;
    const status = await new Promise<number>((resolve, reject) => {
      // A well-formed signature (a malformed one is refused before the body is read).
      const headers = { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` };
      const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/webhooks/github', headers });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', (err) => (sent > 16384 ? undefined : reject(err)));
      const timer = setInterval(() => {
        if (sent > 200_000) {
          clearInterval(timer);
          return;
        }
        req.write('y'.repeat(4096));
        sent += 4096;
      }, 5);
      req.on('close', () => clearInterval(timer));
    });
    expect(status).toBe(413);
    expect(sent).toBeLessThan(200_000);
    expect(intake.records.size).toBe(0);
  });

  it('other methods are 405 with Allow; unknown paths 404', async () => {
    const get = await fetch(`${server.url}/webhooks/github`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
  });

  it('logs every request as JSON (method, path, status, durationMs) and never the secret or signature', async () => {
    await sendWebhook(server.url);
    await sendWebhook(server.url, { signature: 'sha256=00' });
    await fetch(`${server.url}/builds`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await server.close();
    const requests = captured.lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(3);
    expect(requests[0]).toMatchObject({ method: 'POST', path: '/webhooks/github', status: 202, outcome: 'queued', event: 'push' });
    expect(requests[1]).toMatchObject({ status: 401, outcome: 'unauthorized' });
    expect(requests[2]).toMatchObject({ method: 'GET', path: '/builds', status: 403 });
    for (const r of requests) expect(typeof r.durationMs).toBe('number');
    const all = captured.text.join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(TOKEN);
    expect(all).not.toMatch(/sha256=[0-9a-f]{64}/);
  });
});

describe('POST /webhooks/github: replays and what a push may make a worker fetch', () => {
  let intake: FakeIntake;
  let server: RunningServer;
  const nothingAccepted = () => {
    expect(intake.published).toHaveLength(0);
    expect(intake.records.size).toBe(0);
    expect(intake.claims.size).toBe(0);
  };

  beforeEach(async () => {
    intake = new FakeIntake();
    server = await startServer({
      // github.com (the fixture's host) by default; a loopback Git server only when listed with its port.
      config: configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET, OCI_BUILD_SERVER_ALLOWED_HOSTS: 'github.com,127.0.0.1:3000' }),
      intake,
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterEach(() => server.close());

  it('the same signed body under a fresh delivery id is 200 duplicate push and builds nothing', async () => {
    const first = delivery();
    expect((await sendWebhook(server.url, { delivery: first })).status).toBe(202);
    const replay = await sendWebhook(server.url, { delivery: delivery() });
    expect(replay.status).toBe(200);
    expect(await replay.json()).toEqual({ ignored: 'duplicate push', detail: expect.stringContaining(`build gh-${first}`) });
    expect(intake.published).toHaveLength(1);
    expect([...intake.records.keys()]).toEqual([`gh-${first}`]);
    // GitHub's own redelivery (same delivery id) still answers its job.
    const redelivery = await sendWebhook(server.url, { delivery: first });
    expect(redelivery.status).toBe(202);
    expect(await redelivery.json()).toMatchObject({ jobId: `gh-${first}`, duplicate: true });
    // Another push (its own `after`) of the same branch builds.
    expect((await sendWebhook(server.url, { body: distinctPush() })).status).toBe(202);
    expect(intake.published).toHaveLength(2);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/oci_build_webhooks_total\{event="push",outcome="duplicate"\} 2/);
  });

  it('a replay in form encoding, or with the repository name in another case, is the same push', async () => {
    expect((await sendWebhook(server.url)).status).toBe(202);
    const form = new URLSearchParams({ payload: PUSH }).toString();
    expect(await (await sendWebhook(server.url, { body: form, contentType: 'application/x-www-form-urlencoded' })).json()).toMatchObject({ ignored: 'duplicate push' });
    const upper = PUSH.replace('"full_name": "octo-org/hello-service"', '"full_name": "Octo-Org/Hello-Service"');
    expect(await (await sendWebhook(server.url, { body: upper })).json()).toMatchObject({ ignored: 'duplicate push' });
    expect(intake.published).toHaveLength(1);
  });

  it('a claim that cannot be written is 503 and nothing is accepted; after a 503 the same delivery passes', async () => {
    intake.failClaim = true;
    const res = await sendWebhook(server.url);
    expect(res.status).toBe(503);
    nothingAccepted();
    intake.failClaim = false;
    // The claim was written, then the publish failed: GitHub's redelivery is the same job and builds.
    intake.failPublish = true;
    const id = delivery();
    expect((await sendWebhook(server.url, { delivery: id })).status).toBe(503);
    intake.failPublish = false;
    const again = await sendWebhook(server.url, { delivery: id });
    expect(again.status).toBe(202);
    expect(await again.json()).toMatchObject({ jobId: `gh-${id}` });
    expect(intake.published.map((j) => j.id)).toEqual([`gh-${id}`]);
  });

  const withUrls = (clone: string, html = clone.replace(/\.git$/, '')) =>
    PUSH.replace('"clone_url": "https://github.com/octo-org/hello-service.git"', `"clone_url": ${JSON.stringify(clone)}`).replace(
      '"html_url": "https://github.com/octo-org/hello-service"',
      `"html_url": ${JSON.stringify(html)}`,
    );

  const attacks: Array<[string, string, RegExp]> = [
    ['another host than html_url', withUrls('http://127.0.0.1:3000/octo-org/hello-service.git', 'https://github.com/octo-org/hello-service'), /differs from repository\.html_url's host github\.com/],
    ['a host not allowed', withUrls('https://evil.example/octo-org/hello-service.git'), /names host evil\.example, which is not in server\.allowedHosts/],
    ['the link-local metadata address', withUrls('http://169.254.169.254/octo-org/hello-service.git'), /names host 169\.254\.169\.254, which is not in server\.allowedHosts/],
    ['127.0.0.1 on a port not listed (NATS)', withUrls('http://127.0.0.1:4222/octo-org/hello-service.git'), /names host 127\.0\.0\.1:4222/],
    ['userinfo naming github.com', withUrls('http://github.com@evil.example/octo-org/hello-service.git', 'https://github.com/octo-org/hello-service'), /must not carry credentials/],
    ['a decimal IP', withUrls('http://2130706433/octo-org/hello-service.git'), /names host 127\.0\.0\.1, which is not in server\.allowedHosts/],
    ['a path that is not full_name', withUrls('https://github.com/someone-else/hello-service.git', 'https://github.com/octo-org/hello-service'), /path "\/someone-else\/hello-service\.git" does not match repository\.full_name/],
  ];
  for (const [name, body, reason] of attacks) {
    it(`clone_url attack, ${name}: 400 with the reason, nothing queued`, async () => {
      const res = await sendWebhook(server.url, { body });
      expect(res.status).toBe(400);
      const answer = (await res.json()) as { error: string; hint: string; code: string };
      expect(answer.error).toMatch(reason);
      expect(answer.hint).toMatch(/OCI_BUILD_SERVER_ALLOWED_HOSTS/);
      nothingAccepted();
    });
  }

  it('a listed loopback Git server with a consistent html_url is accepted', async () => {
    const res = await sendWebhook(server.url, { body: withUrls('http://127.0.0.1:3000/octo-org/hello-service.git') });
    expect(res.status).toBe(202);
    expect(intake.published[0]?.source).toMatchObject({ url: 'http://127.0.0.1:3000/octo-org/hello-service.git' });
  });

  it('invalid UTF-8 in a payload field is 400, in JSON and in form bodies', async () => {
    const bytes = Buffer.from(PUSH.replace('"pusher": {\n    "name": "mona"', '"pusher": {\n    "name": "mona\u0001"'));
    expect(bytes.includes(0x01)).toBe(true);
    bytes[bytes.indexOf(0x01)] = 0xff;
    const json = await sendWebhook(server.url, { body: bytes });
    expect(json.status).toBe(400);
    expect(((await json.json()) as { error: string }).error).toMatch(/not valid UTF-8/);
    const form = await sendWebhook(server.url, { body: `payload=${encodeURIComponent('{"ref":"refs/heads/main","x":"')}%FF%22%7D`, contentType: 'application/x-www-form-urlencoded' });
    expect(form.status).toBe(400);
    expect(((await form.json()) as { error: string }).error).toMatch(/not valid UTF-8/);
    nothingAccepted();
  });
});

describe('status API, health and metrics', () => {
  let intake: FakeIntake;
  let server: RunningServer;
  const auth = { authorization: `Bearer ${TOKEN}` };
  const record = (id: string, patch: Partial<BuildRecord> & { branch?: string; repo?: string }): BuildRecord => ({
    ...initialRecord({
      id,
      trigger: 'webhook',
      source: { kind: 'git', url: 'https://example.com/x.git' },
      repository: { fullName: patch.repo ?? 'octo-org/hello-service', branch: patch.branch ?? 'main', commit: 'a'.repeat(40) },
      image: { push: false, tlsVerify: true, buildArgs: {} },
      createdAt: patch.createdAt ?? '2026-11-29T08:00:00.000Z',
    }),
    ...(patch.status ? { status: patch.status } : {}),
  });

  beforeAll(async () => {
    intake = new FakeIntake();
    intake.records.set('b1', record('b1', { createdAt: '2026-11-29T08:00:01.000Z', status: 'succeeded' }));
    intake.records.set('b2', record('b2', { createdAt: '2026-11-29T08:00:02.000Z', status: 'failed', branch: 'dev' }));
    intake.records.set('b3', record('b3', { createdAt: '2026-11-29T08:00:03.000Z', status: 'running', repo: 'octo-org/other' }));
    intake.logs.set('b1', ['==> source', 'cloned', '==> build']);
    intake.endLog('b1');
    server = await startServer({
      config: configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET, OCI_BUILD_SERVER_API_TOKENS: `other-token-0123456789,${TOKEN}` }),
      intake,
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterAll(() => server.close());

  it('a missing token is 401 with WWW-Authenticate: Bearer; a wrong one 401; a valid one 200', async () => {
    const missing = await fetch(`${server.url}/builds`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const wrong = await fetch(`${server.url}/builds/b1`, { headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/invalid_token/);
    const basic = await fetch(`${server.url}/builds`, { headers: { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` } });
    expect(basic.status).toBe(401);
    expect((await fetch(`${server.url}/builds`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${server.url}/builds`, { headers: { authorization: 'bearer other-token-0123456789' } })).status).toBe(200);
  });

  it('lists builds newest first, with filters and a limit', async () => {
    const list = async (query: string) => ((await (await fetch(`${server.url}/builds${query}`, { headers: auth })).json()) as { builds: BuildRecord[] }).builds.map((b) => b.id);
    expect(await list('')).toEqual(['b3', 'b2', 'b1']);
    expect(await list('?limit=2')).toEqual(['b3', 'b2']);
    expect(await list('?repo=octo-org/hello-service')).toEqual(['b2', 'b1']);
    expect(await list('?branch=dev')).toEqual(['b2']);
    expect(await list('?status=succeeded')).toEqual(['b1']);
    expect((await fetch(`${server.url}/builds?status=done`, { headers: auth })).status).toBe(400);
    expect((await fetch(`${server.url}/builds?limit=0`, { headers: auth })).status).toBe(400);
  });

  it('shows one build; an unknown id is 404', async () => {
    const res = await fetch(`${server.url}/builds/b2`, { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: 'b2', status: 'failed' });
    const unknown = await fetch(`${server.url}/builds/nope`, { headers: auth });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/No build with id nope/);
    expect((await fetch(`${server.url}/builds/nope/logs`, { headers: auth })).status).toBe(404);
  });

  it('an id outside the build-id grammar (core/build-id.ts) is 400: `=`, a leading dot, over 128 characters', async () => {
    for (const id of ['a=b', '.hidden', '-x', 'a'.repeat(129), '%E0%A4%A']) {
      const res = await fetch(`${server.url}/builds/${id}`, { headers: auth });
      expect(res.status, id).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'E_INPUT' });
    }
    expect((await fetch(`${server.url}/builds/${'a'.repeat(128)}`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${server.url}/builds/gh-0000_x.y-z/logs`, { headers: auth })).status).toBe(404);
  });

  it('serves a log as text/plain, and ?follow=1 streams until the build ends', async () => {
    const res = await fetch(`${server.url}/builds/b1/logs`, { headers: auth });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('==> source\ncloned\n==> build\n');

    intake.logs.set('b3', ['==> source']);
    const follow = await fetch(`${server.url}/builds/b3/logs?follow=1`, { headers: auth });
    expect(follow.status).toBe(200);
    const reader = follow.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (want: string) => {
      while (!text.includes(want)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
      }
    };
    await readUntil('==> source\n');
    intake.appendLog('b3', 'live line');
    await readUntil('live line\n');
    intake.endLog('b3');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    expect(text).toBe('==> source\nlive line\n');
  });

  it('/health reports NATS', async () => {
    const ok = await fetch(`${server.url}/health`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: 'ok', nats: 'connected' });
    intake.connected = false;
    const down = await fetch(`${server.url}/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ nats: 'disconnected' });
    expect((await fetch(`${server.url}/builds/b1`, { headers: auth })).status).toBe(503);
    intake.connected = true;
  });

  it('/metrics: webhooks by event and outcome, queue depth, jobs by final status, phase durations, in flight', async () => {
    // Seven jobs waiting in the queue, an eighth already taken by a worker.
    for (let i = 0; i < 8; i++) {
      await intake.publish({ id: `q${i}`, trigger: 'webhook', source: { kind: 'git', url: 'https://example.com/x.git' }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: '2026-11-29T08:00:00.000Z' });
    }
    intake.consume('q7');
    await sendWebhook(server.url, { body: PING, event: 'ping' });
    await sendWebhook(server.url, { signature: null });
    intake.emit({ id: 'r1', record: record('r1', { status: 'running' }), initial: true });
    intake.emit({ id: 'old', record: record('old', { status: 'succeeded' }), initial: true });
    intake.emit({ id: 'r2', record: record('r2', { status: 'running' }), initial: false });
    const finished = { ...record('r2', { status: 'failed' }), phases: [{ name: 'build' as const, status: 'failed' as const, startedAt: '', durationMs: 1500 }] };
    intake.emit({ id: 'r2', record: finished, initial: false });
    intake.emit({ id: 'r2', record: finished, initial: false });
    await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`${server.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/oci_build_webhooks_total\{event="ping",outcome="ignored"\} 1/);
    expect(text).toMatch(/oci_build_webhooks_total\{event="push",outcome="unauthorized"\} 1/);
    expect(text).toMatch(/oci_build_queue_depth 7/);
    expect(text).toMatch(/oci_build_jobs_finished_total\{status="failed"\} 1\n/);
    expect(text).not.toMatch(/oci_build_jobs_finished_total\{status="succeeded"\}/);
    expect(text).toMatch(/oci_build_phase_duration_seconds_sum\{phase="build",status="failed"\} 1\.5/);
    expect(text).toMatch(/oci_build_builds_in_flight 1/);
    expect(text).toMatch(/oci_build_http_request_duration_seconds_count\{method="POST",route="webhook",status="401"\} 1/);
    // Unknown event names (the header is read before the signature is checked) share one label.
    await sendWebhook(server.url, { event: 'made_up_event_1', signature: null });
    await sendWebhook(server.url, { event: 'made_up_event_2', signature: null });
    const after = await (await fetch(`${server.url}/metrics`)).text();
    expect(after).toMatch(/oci_build_webhooks_total\{event="other",outcome="unauthorized"\} 2/);
    expect(after).not.toContain('made_up_event');
  });
});

describe('lifecycle: INITIALIZED → RUNNING → DRAINING → STOPPED', () => {
  /** A publish that waits for the test: a webhook held in progress. */
  class HeldPublish extends FakeIntake {
    release: () => void = () => undefined;
    readonly held = new Promise<void>((resolve) => (this.release = resolve));
    entered = false;
    override async publish(...args: Parameters<FakeIntake['publish']>) {
      this.entered = true;
      await this.held;
      return super.publish(...args);
    }
  }

  it('RUNNING once listening; close() drains (log streams end, a request in progress is answered) to STOPPED; each change is logged', async () => {
    const intake = new HeldPublish();
    intake.records.set('b1', initialRecord({ id: 'b1', trigger: 'cli', source: { kind: 'local', path: '/src' }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: '2026-11-29T08:00:00.000Z' }));
    intake.logs.set('b1', ['==> source']);
    const { logger, captured } = captureLogger();
    const server = await startServer({ config: configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET, OCI_BUILD_SERVER_API_TOKENS: TOKEN }), intake, logger });
    expect(server.state).toBe('RUNNING');
    const follower = await fetch(`${server.url}/builds/b1/logs?follow=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(follower.status).toBe(200);
    const webhook = sendWebhook(server.url);
    while (!intake.entered) await new Promise((r) => setTimeout(r, 5));

    const closed = server.close();
    expect(server.state).toBe('DRAINING');
    // The follower's stream ends although the build's log never does.
    expect(await follower.text()).toBe('==> source\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(server.state).toBe('DRAINING');
    intake.release();
    expect((await webhook).status).toBe(202);
    // Its keep-alive sockets closed once answered, not after the 10 s grace.
    const answered = Date.now();
    await closed;
    expect(Date.now() - answered).toBeLessThan(2000);
    expect(server.state).toBe('STOPPED');
    expect(intake.published).toHaveLength(1);
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
    expect(server.close()).toBe(closed);

    const changes = captured.lines.filter((l) => typeof l.msg === 'string' && /^serve (running|draining|stopped)$/.test(l.msg));
    expect(changes.map((l) => [l.from, l.to, l.msg])).toEqual([
      ['INITIALIZED', 'RUNNING', 'serve running'],
      ['RUNNING', 'DRAINING', 'serve draining'],
      ['DRAINING', 'STOPPED', 'serve stopped'],
    ]);
    expect(changes[0]).toMatchObject({ url: server.url });
  });

  it('a listen that fails goes to STOPPED and closes nothing it was handed', async () => {
    const config = configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET });
    const first = await startServer({ config, intake: new FakeIntake(), logger: createLogger({ level: 'silent' }) });
    try {
      const intake = new FakeIntake();
      let closes = 0;
      intake.close = async () => void closes++;
      await expect(startServer({ config, port: first.port, intake, logger: createLogger({ level: 'silent' }) })).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(closes).toBe(0);
    } finally {
      await first.close();
    }
  });
});

describe('status API without tokens', () => {
  it('refuses every request, saying how to enable it', async () => {
    const server = await startServer({ config: configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET }), intake: new FakeIntake(), logger: createLogger({ level: 'silent' }) });
    try {
      const res = await fetch(`${server.url}/builds`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toMatch(/OCI_BUILD_SERVER_API_TOKENS/);
    } finally {
      await server.close();
    }
  });
});

describe('server.queueWait: a webhook waits for NATS (a cluster electing a leader) before a 503', () => {
  let intake: FakeIntake;
  let server: RunningServer;

  beforeEach(async () => {
    intake = new FakeIntake();
    server = await startServer({
      config: configWith({ OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET, OCI_BUILD_SERVER_QUEUE_WAIT: '5s' }),
      intake,
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterEach(() => server.close());

  it('transient failures of the record create and the publish are retried: 202, one record, one job', async () => {
    intake.electionFailures = 4;
    const res = await sendWebhook(server.url);
    expect(res.status).toBe(202);
    expect(intake.electionFailures).toBe(0);
    expect(intake.records.size).toBe(1);
    expect([...intake.records.values()][0]!.status).toBe('queued');
    expect(intake.published).toHaveLength(1);
  });

  it('NATS disconnected and back within queueWait: 202', async () => {
    intake.connected = false;
    const answer = sendWebhook(server.url);
    setTimeout(() => (intake.connected = true), 300);
    const res = await answer;
    expect(res.status).toBe(202);
    expect(intake.published).toHaveLength(1);
  });

  it('a failure that is not transient is not retried: 503 with the record settled', async () => {
    intake.failPublish = true;
    const res = await sendWebhook(server.url);
    expect(res.status).toBe(503);
    expect([...intake.records.values()][0]).toMatchObject({ status: 'failed', error: { code: 'E_NOT_ACCEPTED' } });
  });
});
