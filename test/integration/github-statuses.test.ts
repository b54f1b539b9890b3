// Commit statuses end to end, against the recording GitHub of test/helpers/github-api-server.ts
// (every request checked against GitHub's REST description): a real serve and a real worker (the
// composition root's wiring), a real nats-server, Git over HTTP, go, buildah and a registry. A signed
// push goes in; GitHub hears pending (queued) → pending (building) → success with the digest and the
// build's page, or failure naming the phase; a rate limit and a 5xx are waited out; a GitHub App
// gets its installation token first. One environment for the file.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCommitStatusNotifier, createPipelineAdapters, runWorkerDaemon } from '../../src/compose.js';
import { parseConfig, type Config } from '../../src/config/config.js';
import { maskSecrets, registerSecret } from '../../src/core/secrets.js';
import type { BuildRecord } from '../../src/core/types.js';
import { createLogger } from '../../src/log/logger.js';
import { startServer, type RunningServer } from '../../src/server/http-server.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startGithubApiServer, type GithubApiServer } from '../helpers/github-api-server.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { memoryLogger } from './fixtures/worker-harness.js';

const SECRET = 'statuses-webhook-secret';
const API_TOKEN = 'statuses-api-token-0123456789';
const GITHUB_TOKEN = 'ghp_statusesTestToken0123456789abcdef';
const PUBLIC_URL = 'https://ci.example.test';
const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, any>;

let work: TempDir;
let nats: NatsServer;
let git: GitServer;
let registry: TestRegistry;
let github: GithubApiServer;
let config: Config;
let serve: RunningServer;
let stopWorker: AbortController;
let workerDone: Promise<unknown>;
const logs = memoryLogger();
const repos: FixtureRepo[] = [];
const serveNotifierClose: Array<() => Promise<void>> = [];

beforeAll(async () => {
  work = await tempDir('oci-build-statuses-');
  [nats, git, registry, github] = await Promise.all([startNatsServer(), startGitServer(), startRegistry(), startGithubApiServer({ token: GITHUB_TOKEN })]);
  config = parseConfig({
    fileData: {
      workDir: join(work.path, 'work'),
      nats: { url: nats.url },
      server: { webhookSecret: SECRET, apiTokens: [API_TOKEN], allowedHosts: [`127.0.0.1:${git.port}`], publicUrl: `${PUBLIC_URL}/` },
      worker: { name: 'statuses-worker' },
      github: { token: GITHUB_TOKEN, apiUrl: github.url },
      image: { registry: `${registry.host}/ci`, push: true, tlsVerify: false, root: join(work.path, 'storage'), runRoot: join(work.path, 'run'), storageDriver: 'vfs', isolation: 'chroot' },
    },
    env: {},
  });
  // As `oci-build serve` and `oci-build worker` wire them (cli/commands/serve.ts, compose.ts runWorkerDaemon).
  registerSecret(GITHUB_TOKEN);
  const serveLogger = createLogger({ level: 'silent' });
  const notifier = await createCommitStatusNotifier(config, { logger: logs.child({ daemon: 'serve' }) });
  serveNotifierClose.push(() => notifier!.close(1000));
  serve = await startServer({ config, logger: serveLogger, host: '127.0.0.1', port: 0, watchRecords: false, notifier: notifier! });
  stopWorker = new AbortController();
  const { cache: _cache, ...adapters } = createPipelineAdapters(config);
  workerDone = runWorkerDaemon(config, { logger: logs.child({ daemon: 'worker' }), pipelineDeps: () => adapters, handleSignals: false, signal: stopWorker.signal });
}, 60_000);

afterAll(async () => {
  stopWorker?.abort();
  await workerDone?.catch(() => undefined);
  await serve?.close();
  for (const close of serveNotifierClose) await close();
  await Promise.allSettled([nats?.stop(), git?.dispose(), registry?.stop(), github?.close()]);
  for (const repo of repos) await repo.cleanup();
  await work?.cleanup();
});

async function served(fixture: string, name: string): Promise<FixtureRepo> {
  const repo = await fixtureRepo(fixture, { repoName: name });
  repos.push(repo);
  await git.addRepo(`acme/${name}`, repo.dir);
  return repo;
}

async function push(repo: FixtureRepo, name: string): Promise<string> {
  const payload = structuredClone(PUSH);
  payload.ref = 'refs/heads/main';
  payload.before = '0'.repeat(40);
  payload.after = repo.commit;
  payload.repository.name = name;
  payload.repository.full_name = `acme/${name}`;
  payload.repository.clone_url = git.url(`acme/${name}`);
  payload.repository.html_url = `http://127.0.0.1:${git.port}/acme/${name}`;
  const body = JSON.stringify(payload);
  const response = await fetch(`${serve.url}/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signWebhookBody(SECRET, body) },
    body,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { jobId: string }).jobId;
}

async function record(id: string): Promise<BuildRecord> {
  const response = await fetch(`${serve.url}/builds/${id}`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  return (await response.json()) as BuildRecord;
}

/** The record once it is final and holds the outcomes of its final statuses. */
async function settled(id: string, contexts: number): Promise<BuildRecord> {
  let last: BuildRecord | undefined;
  await waitFor(
    async () => {
      last = await record(id);
      return ['succeeded', 'failed', 'cancelled'].includes(last.status) && (last.notifications ?? []).filter((n) => n.state !== 'pending').length >= contexts;
    },
    { timeoutMs: 150_000, intervalMs: 250, what: `build ${id} to finish and record its statuses` },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
  return last!;
}

function statusesOf(sha: string) {
  return github.statuses().filter((s) => s.sha === sha);
}

describe('commit statuses of webhook builds', () => {
  it('a build posts pending (queued) → pending (building) → success per context, with the digest and the build page', async () => {
    const repo = await served('sample-go-repo', 'status-ok');
    const id = await push(repo, 'status-ok');
    const done = await settled(id, 2);
    expect(done.status).toBe('succeeded');
    const digest = done.images[0]!.digest!;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const page = `${PUBLIC_URL}/#/builds/${id}`;
    const posted = statusesOf(repo.commit);
    // serve posts `queued` and the worker `building` from two processes: either may land first
    // (both pending); the final states land after both.
    const order = JSON.stringify(github.requests.map((r) => [r.seq, r.status, (r.body as { description?: string } | undefined)?.description]));
    expect(posted.slice(0, 2).map((s) => [s.context, s.state, s.description]).sort(), order).toEqual([
      ['oci-build', 'pending', 'building'],
      ['oci-build', 'pending', 'queued'],
    ]);
    expect(posted.slice(2).map((s) => [s.context, s.state, s.description]).sort(), order).toEqual([
      ['oci-build', 'success', expect.stringMatching(new RegExp(`^built ${digest.slice(0, 19)} in (\\d+m )?\\d+s$`))],
      ['oci-build/status-ok', 'success', digest.slice(0, 19)],
    ]);
    for (const status of posted) expect(status).toMatchObject({ owner: 'acme', repo: 'status-ok', target_url: page, authorization: `token ${GITHUB_TOKEN}` });
    expect(github.problems).toEqual([]);
    // The worker's posts, in the record; serve's `queued` is only logged (see commit-status-notifier.ts).
    // In time order; two posts in flight together may end in either order: sorted here.
    expect(done.notifications!.map((n) => [n.context, n.state, n.error]).sort()).toEqual([
      ['oci-build', 'pending', undefined],
      ['oci-build', 'success', undefined],
      ['oci-build/status-ok', 'success', undefined],
    ]);
    expect(logs.lines.filter((l) => l.msg === 'commit status posted' && l.jobId === id)).toHaveLength(4);
    expect(JSON.stringify(logs.lines)).not.toContain(GITHUB_TOKEN);
    expect(JSON.stringify(done)).not.toContain(GITHUB_TOKEN);
  }, 180_000);

  it('a failing build posts failure naming the phase; a rate limit and a 5xx on the way are waited out', async () => {
    const repo = await served('broken-go-repo', 'status-broken');
    // The next three status posts fail: two with GitHub's rate limit (reset in a second), one with a 502.
    github.failNextStatuses({ rateLimitResetInMs: 1000 }, { rateLimitResetInMs: 1000 }, { status: 502 });
    const id = await push(repo, 'status-broken');
    const done = await settled(id, 2);
    expect(done).toMatchObject({ status: 'failed', error: { phase: 'build' } });
    const mine = github.requests.filter((r) => r.params.sha === repo.commit);
    const refused = mine.filter((r) => r.status !== 201);
    expect(refused.map((r) => r.status)).toEqual([403, 403, 502]);
    // Order, not timing: every status that landed came after the refusals, and the final ones last.
    const landed = statusesOf(repo.commit);
    expect(landed.every((s) => s.seq > refused[0]!.seq)).toBe(true);
    const last = new Map(landed.map((s) => [s.context, s]));
    expect(last.get('oci-build')).toMatchObject({ state: 'failure', description: expect.stringMatching(/^build of status-broken failed: /) });
    expect(last.get('oci-build/status-broken')).toMatchObject({ state: 'failure', description: expect.stringMatching(/^build failed: /) });
    expect(done.notifications!.filter((n) => n.state === 'failure').map((n) => [n.context, n.error]).sort()).toEqual([
      ['oci-build', undefined],
      ['oci-build/status-broken', undefined],
    ]);
    expect(github.problems).toEqual([]);
  }, 180_000);

  it('as a GitHub App: the installation token is fetched with the App\'s JWT first, then the status is posted with it', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(work.path, 'app.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    const app = await startGithubApiServer({ app: { appId: 4711, publicKey, installationId: 123 } });
    try {
      const appConfig = parseConfig({ fileData: { github: { appId: 4711, privateKeyFile: keyFile, apiUrl: app.url }, server: { publicUrl: PUBLIC_URL } }, env: {} });
      const recorded: Array<[string, unknown]> = [];
      const notifier = (await createCommitStatusNotifier(appConfig, { logger: memoryLogger(), record: async (id, n) => void recorded.push([id, n]) }))!;
      const sha = 'c0ffee'.padEnd(40, '0');
      const job = { id: 'gh-app-1', trigger: 'webhook' as const, installationId: 99, repository: { fullName: 'acme/app', commit: sha }, source: { kind: 'git' as const, url: 'https://github.com/acme/app.git' }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: new Date().toISOString() };
      notifier.building(job);
      await waitFor(() => app.statuses().length === 1, { what: 'the building status' });
      notifier.finished({ id: job.id, status: 'cancelled', cancelledBy: 'api:token#1', trigger: 'webhook', repository: { fullName: 'acme/app', commit: sha }, createdAt: job.createdAt, phases: [], images: [] });
      await notifier.close(10_000);
      expect(app.problems).toEqual([]);
      expect(app.requests.map((r) => [r.method, r.operation, r.status])).toEqual([
        ['POST', '/app/installations/{installation_id}/access_tokens', 201],
        ['POST', '/repos/{owner}/{repo}/statuses/{sha}', 201],
        ['POST', '/repos/{owner}/{repo}/statuses/{sha}', 201],
      ]);
      expect(app.requests[0]!.params.installation_id).toBe('99');
      const token = app.issuedTokens.get(99)!;
      expect(app.statuses().map((s) => [s.state, s.description, s.authorization])).toEqual([
        ['pending', 'building', `token ${token}`],
        ['error', 'cancelled by api:token#1', `token ${token}`],
      ]);
      // The installation token is a secret of the process from the moment it is known.
      expect(maskSecrets(`Authorization: token ${token}`)).toBe('Authorization: token ***');
      expect(recorded).toEqual([['gh-app-1', [expect.objectContaining({ state: 'pending' }), expect.objectContaining({ context: 'oci-build', state: 'error' })]]]);

      // A push the App did not send (no installation id on the job): its installation on the repository, looked up with the JWT.
      const other = (await createCommitStatusNotifier(appConfig, { logger: memoryLogger() }))!;
      const before = app.requests.length;
      other.finished({ id: 'gh-app-2', status: 'succeeded', trigger: 'webhook', repository: { fullName: 'acme/other', commit: sha }, createdAt: job.createdAt, phases: [], images: [] });
      await other.close(10_000);
      expect(app.requests.slice(before).map((r) => [r.method, r.operation, r.status])).toEqual([
        ['GET', '/repos/{owner}/{repo}/installation', 200],
        ['POST', '/app/installations/{installation_id}/access_tokens', 201],
        ['POST', '/repos/{owner}/{repo}/statuses/{sha}', 201],
      ]);
      expect(app.statuses().at(-1)).toMatchObject({ repo: 'other', state: 'success', authorization: `token ${app.issuedTokens.get(123)}` });
      expect(app.problems).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
