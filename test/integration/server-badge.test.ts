// GET /badge/:owner/:name.svg against a real serve and its JetStream KV status bucket: the latest
// final build of the repository (and branch) as an SVG, grey "unknown" for a repository without
// one, no token needed unless server.badgeAuth, never cached by the client.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../../src/config/config.js';
import type { BuildRecord, JobStatus } from '../../src/core/types.js';
import { createLogger } from '../../src/log/logger.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { escapeXml, renderBadge } from '../../src/server/badge-route.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

const TOKEN = 'badge-api-token-0123456789';
let nats: NatsServer;
let ctx: NatsContext;
let open: RunningServer;
let guarded: RunningServer;

function config(server: Record<string, unknown> = {}): Config {
  return parseConfig({ fileData: { nats: { url: nats.url, statusBucket: 'badge-status', stream: 'BADGE_JOBS', subject: 'badge.jobs' }, server: { webhookSecret: 'badge-secret', apiTokens: [TOKEN], ...server } }, env: {} });
}

function record(id: string, repo: string, branch: string, status: JobStatus, minute: number, extra: Partial<BuildRecord> = {}): BuildRecord {
  return { id, status, trigger: 'webhook', repository: { fullName: repo, branch, commit: 'a'.repeat(40) }, createdAt: `2026-12-01T10:${String(minute).padStart(2, '0')}:00.000Z`, phases: [], images: [], ...extra };
}

beforeAll(async () => {
  nats = await startNatsServer();
  ctx = await connectNats(config().nats);
  const store = new KvBuildStore(ctx);
  for (const r of [
    record('b-old-fail', 'acme/app', 'main', 'failed', 1, { error: { phase: 'build', code: 'E_COMMAND_FAILED', message: 'exit 1' } }),
    record('b-ok', 'acme/app', 'main', 'succeeded', 2),
    // Newer, not final: the badge shows the last final build.
    record('b-running', 'acme/app', 'main', 'running', 3),
    record('b-dev', 'acme/app', 'dev', 'failed', 4, { error: { phase: 'build', code: 'E_COMMAND_FAILED', message: 'exit 1' } }),
    record('b-infra', 'acme/infra', 'main', 'failed', 5, { error: { phase: 'queue', code: 'E_SERVICE_UNAVAILABLE', message: 'gave up' } }),
    record('b-cancel', 'acme/gone', 'main', 'cancelled', 6),
  ]) {
    await store.put(r);
  }
  const logger = createLogger({ level: 'silent' });
  [open, guarded] = await Promise.all([
    startServer({ config: config(), logger, host: '127.0.0.1', port: 0, watchRecords: false }),
    startServer({ config: config({ badgeAuth: true }), logger, host: '127.0.0.1', port: 0, watchRecords: false }),
  ]);
});

afterAll(async () => {
  await Promise.allSettled([open?.close(), guarded?.close()]);
  if (ctx) await closeNats(ctx);
  await nats?.stop();
});

async function badge(server: RunningServer, path: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, { headers });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

describe('GET /badge/:owner/:name.svg', () => {
  it('shows the latest final build of the repository, of a branch when asked, as an uncached SVG', async () => {
    const main = await badge(open, '/badge/acme/app.svg');
    expect(main.status).toBe(200);
    expect(main.headers.get('content-type')).toBe('image/svg+xml; charset=utf-8');
    expect(main.headers.get('cache-control')).toBe('no-cache');
    expect(main.body).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    // Any branch: the newest final one is dev's failure; main's is its success.
    expect(main.body).toContain('<title>oci-build: failing</title>');
    expect((await badge(open, '/badge/acme/app.svg?branch=main')).body).toContain('<title>oci-build: passing</title>');
    expect((await badge(open, '/badge/ACME/App.svg?branch=dev')).body).toContain('<title>oci-build: failing</title>');
    expect((await badge(open, '/badge/acme/infra.svg')).body).toContain('<title>oci-build: error</title>');
    expect((await badge(open, '/badge/acme/gone.svg')).body).toContain('<title>oci-build: cancelled</title>');
  });

  it('a repository or branch without a final build is a grey "unknown", 200; a malformed name is 400', async () => {
    for (const path of ['/badge/nobody/nothing.svg', '/badge/acme/app.svg?branch=feature%2Fx']) {
      const answer = await badge(open, path);
      expect(answer.status, path).toBe(200);
      expect(answer.body).toContain('<title>oci-build: unknown</title>');
      expect(answer.body).toContain('fill="#9f9f9f"');
    }
    expect((await badge(open, '/badge/acme/..%2F..%2Fetc.svg')).status).toBe(400);
    expect((await badge(open, '/badge/acme/a%20b.svg')).status).toBe(400);
    expect((await fetch(`${open.url}/badge/acme/app.svg`, { method: 'POST' })).status).toBe(405);
  });

  it('with server.badgeAuth, only with an API token', async () => {
    expect((await badge(guarded, '/badge/acme/app.svg')).status).toBe(401);
    expect((await badge(guarded, '/badge/acme/app.svg', { authorization: 'Bearer wrong-token-0123456789' })).status).toBe(401);
    const allowed = await badge(guarded, '/badge/acme/app.svg?branch=main', { authorization: `Bearer ${TOKEN}` });
    expect(allowed.status).toBe(200);
    expect(allowed.body).toContain('oci-build: passing');
  });

  it('escapes what it writes into the SVG', () => {
    const svg = renderBadge('a<b', { message: `"x" & <y> 'z'`, color: 'red;evil' });
    expect(svg).not.toMatch(/<b|<y>/);
    expect(svg).toContain(escapeXml(`"x" & <y> 'z'`));
    expect(svg).toContain('fill="#9f9f9f"');
  });
});
