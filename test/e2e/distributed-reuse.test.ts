// Result reuse across workers (README, "Result reuse"): `oci-build serve` and two `oci-build
// worker` processes with their own work directories and image stores, one NATS (one result
// bucket), real Git over HTTP and a real registry. What one worker built, the other reuses by
// tagging the image in the registry: no toolchain, no buildah, no layer uploaded.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { appendFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { fixtureRepo, git, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { hasTool } from '../helpers/toolchains.js';
import { stopDaemon } from '../helpers/daemons.js';

const SECRET = 'e2e-reuse-webhook-secret';
const TOKEN = 'e2e-reuse-api-token-0123456789';
const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, unknown>;

let sandbox: TempDir;
let nats: NatsServer;
let gitServer: GitServer;
let registry: TestRegistry;
/** The registry as the daemons reach it: through a proxy that notes every request. */
let registryHost: string;
let proxy: Server;
const registryRequests: string[] = [];
let serveUrl: string;
let env: Record<string, string>;
const daemons: Array<ChildProcess & { output: () => string }> = [];
const repos: FixtureRepo[] = [];

function startDaemon(args: string[], extraEnv: Record<string, string> = {}): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { output: () => string };
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  child.output = () => output;
  daemons.push(child);
  return child;
}

/** A worker with its own work directory and image store (another machine, as far as reuse can tell). */
function startWorker(name: string): ChildProcess & { output: () => string } {
  const own = isolatedEnv(join(sandbox.path, name));
  return startDaemon(['worker'], { ...own, OCI_BUILD_WORKER_NAME: name });
}

function stop(child: ChildProcess): Promise<void> {
  return stopDaemon(child, 20_000);
}

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${serveUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function push(repo: FixtureRepo, name: string, ref: string, commit: string): Promise<string> {
  const payload = structuredClone(PUSH) as Record<string, any>;
  payload.ref = ref;
  payload.before = '0'.repeat(40);
  payload.after = commit;
  payload.repository.name = name;
  payload.repository.full_name = `acme/${name}`;
  payload.repository.clone_url = gitServer.url(`acme/${name}`);
  payload.repository.html_url = `http://127.0.0.1:${gitServer.port}/acme/${name}`;
  payload.head_commit.id = commit;
  const body = JSON.stringify(payload);
  const response = await fetch(`${serveUrl}/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signWebhookBody(SECRET, body) },
    body,
  });
  expect(response.status).toBe(202);
  return ((await response.json()) as { jobId: string }).jobId;
}

async function finished(id: string): Promise<BuildRecord> {
  let record: BuildRecord | undefined;
  await waitFor(
    async () => {
      const { status, body } = await api<BuildRecord>(`/builds/${id}`);
      record = status === 200 ? body : undefined;
      return record !== undefined && ['succeeded', 'failed', 'cancelled', 'skipped'].includes(record.status);
    },
    { timeoutMs: 400_000, intervalMs: 250, what: `build ${id} to finish` },
  );
  expect(record!.status, JSON.stringify(record!.error)).toBe('succeeded');
  return record!;
}

async function logOf(id: string): Promise<string> {
  const response = await fetch(`${serveUrl}/builds/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return response.text();
}

function registryDigest(reference: string): string {
  return execFileSync('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${reference}`], { encoding: 'utf8' }).trim();
}

/** Forwards every request to the registry as it is, noting `METHOD path`. */
async function startRegistryProxy(target: string): Promise<string> {
  const [host, port] = target.split(':') as [string, string];
  proxy = createServer((req, res) => {
    registryRequests.push(`${req.method} ${req.url}`);
    const upstream = httpRequest({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const listenPort = await freePort();
  await new Promise<void>((r) => proxy.listen(listenPort, '127.0.0.1', r));
  return `127.0.0.1:${listenPort}`;
}

function gitPush(repo: FixtureRepo, name: string, refspec: string): void {
  execFileSync('git', ['push', '-q', '--force', gitServer.repoPath(`acme/${name}`), refspec], { cwd: repo.dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fixture served as `acme/<name>` (by default the fixture's own name). */
async function served(fixture: string, name = fixture): Promise<FixtureRepo> {
  const repo = await fixtureRepo(fixture);
  repos.push(repo);
  await gitServer.addRepo(`acme/${name}`, repo.dir);
  return repo;
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-dist-reuse-');
  [nats, gitServer, registry] = await Promise.all([startNatsServer(), startGitServer(), startRegistry()]);
  registryHost = await startRegistryProxy(registry.host);
  const port = await freePort();
  serveUrl = `http://127.0.0.1:${port}`;
  env = {
    ...isolatedEnv(join(sandbox.path, 'serve')),
    OCI_BUILD_NATS_URL: nats.url,
    OCI_BUILD_NATS_RESULT_BUCKET: 'e2e-results',
    OCI_BUILD_SERVER_PORT: String(port),
    OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
    OCI_BUILD_SERVER_API_TOKENS: TOKEN,
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: `${registryHost}/ci`,
    OCI_BUILD_IMAGE_PUSH: 'true',
    OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
  };
  startDaemon(['serve']);
  await waitFor(async () => (await fetch(`${serveUrl}/health`).catch(() => undefined))?.ok === true, { timeoutMs: 30_000, what: 'serve to answer /health' });
}, 60_000);

afterAll(async () => {
  for (const child of daemons) await stop(child);
  await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
  await Promise.allSettled([nats?.stop(), gitServer?.dispose(), registry?.stop()]);
  for (const repo of repos) await repo.cleanup();
  await sandbox?.cleanup();
});

describe('a commit one worker built', () => {
  let repo: FixtureRepo;
  let built: BuildRecord;

  beforeAll(async () => {
    repo = await served('sample-go-repo');
    const first = startWorker('worker-a');
    built = await finished(await push(repo, 'sample-go-repo', 'refs/heads/main', repo.commit));
    await stop(first);
  }, 400_000);

  it('was built and pushed by worker A', () => {
    expect(built.worker).toBe('worker-a');
    expect(built.images[0]).toMatchObject({ pushed: true });
    expect(built.images[0]?.reusedFrom).toBeUndefined();
  });

  it('a tag pushed on it is built by worker B, which reuses the image: only the new tag reaches the registry, same digest', async () => {
    const second = startWorker('worker-b');
    try {
      git(repo.dir, ['tag', 'v1.0.0']);
      gitPush(repo, 'sample-go-repo', 'refs/tags/v1.0.0');
      registryRequests.length = 0;
      const id = await push(repo, 'sample-go-repo', 'refs/tags/v1.0.0', repo.commit);
      const record = await finished(id);
      expect(record.worker).toBe('worker-b');
      const image = record.images[0]!;
      expect(image).toMatchObject({ reusedFrom: built.id, digest: built.images[0]!.digest, pushed: true });
      expect(image.tags).toContain('v1.0.0');
      expect(record.phases.find((p) => p.name === 'build')?.status).toBe('skipped');
      expect(record.phases.some((p) => p.name === 'push')).toBe(false);
      expect(registryDigest(`${image.repository.replace(registryHost, registry.host)}:v1.0.0`)).toBe(built.images[0]!.digest);
      const log = await logOf(id);
      expect(log).not.toMatch(/buildah (bud|push)|go build/);
      // The registry saw manifests written under the tags and no blob upload: every layer was there.
      const repoPath = `/v2/ci/sample-go-repo`;
      expect(registryRequests).toContain(`PUT ${repoPath}/manifests/v1.0.0`);
      expect(registryRequests.filter((r) => r.includes('/blobs/uploads'))).toEqual([]);
      expect(registryRequests.filter((r) => /^(PUT|POST|PATCH) /.test(r) && !r.includes('/manifests/'))).toEqual([]);
    } finally {
      await stop(second);
    }
  }, 400_000);
});

describe('one commit pushed to two branches at once, two workers', () => {
  it('is built once: the build that came second waits for the first one\'s image and reuses it', async () => {
    // Served under a name of its own: its images (and so its result key) are new to the bucket.
    const repo = await served('sample-go-repo', 'twin-go-repo');
    gitPush(repo, 'twin-go-repo', 'HEAD:refs/heads/left');
    gitPush(repo, 'twin-go-repo', 'HEAD:refs/heads/right');
    const workers = [startWorker('twin-worker-c'), startWorker('twin-worker-d')];
    try {
      const ids = await Promise.all([push(repo, 'twin-go-repo', 'refs/heads/left', repo.commit), push(repo, 'twin-go-repo', 'refs/heads/right', repo.commit)]);
      const records = await Promise.all(ids.map((id) => finished(id)));
      const made = records.filter((r) => r.images[0]?.reusedFrom === undefined);
      expect(made, JSON.stringify(records.map((r) => r.images))).toHaveLength(1);
      const maker = made[0]!;
      const waiter = records.find((r) => r !== maker)!;
      expect(waiter.images[0]).toMatchObject({ reusedFrom: maker.id, digest: maker.images[0]!.digest, pushed: true });
      expect(waiter.images[0]!.tags).toContain(waiter.repository.branch);
      expect(waiter.phases.find((p) => p.name === 'build')?.status).toBe('skipped');
      expect(waiter.phases.some((p) => p.name === 'push')).toBe(false);
      const log = await logOf(waiter.id);
      expect(log).toMatch(new RegExp(`is being built by build ${maker.id}.*: waiting for its image`));
      expect(log).not.toMatch(/buildah (bud|push)|go build/);
      for (const r of records) {
        expect(registryDigest(`${r.images[0]!.repository.replace(registryHost, registry.host)}:${r.repository.branch}`)).toBe(maker.images[0]!.digest);
      }
    } finally {
      for (const w of workers) await stop(w);
    }
  }, 400_000);
});

// The monorepo holds Maven and .NET apps: without them its build fails.
describe.runIf(hasTool('dotnet') && hasTool('mvn', ['-v']))('an Nx workspace across workers', () => {
  it('a change in one app rebuilds that app; the others are reused from what the other worker built', async () => {
    const repo = await served('sample-nx-monorepo');
    const a = startWorker('nx-worker-a');
    const first = await finished(await push(repo, 'sample-nx-monorepo', 'refs/heads/main', repo.commit));
    await stop(a);
    expect(first.images.map((i) => i.project).sort()).toEqual(['dotnet-app', 'go-app', 'java-app']);

    await appendFile(join(repo.dir, 'apps/java-app/pom.xml'), '\n<!-- changed -->\n');
    const commit = repo.commitAll('java-app: change', '2026-01-05T00:00:00Z');
    gitPush(repo, 'sample-nx-monorepo', 'HEAD:main');
    const b = startWorker('nx-worker-b');
    try {
      const second = await finished(await push(repo, 'sample-nx-monorepo', 'refs/heads/main', commit));
      expect(second.worker).toBe('nx-worker-b');
      const byProject = Object.fromEntries(second.images.map((i) => [i.project, i]));
      expect(byProject['java-app']?.reusedFrom).toBeUndefined();
      for (const app of ['go-app', 'dotnet-app']) {
        const before = first.images.find((i) => i.project === app)!;
        expect(byProject[app]).toMatchObject({ reusedFrom: first.id, digest: before.digest, pushed: true });
        expect(registryDigest(`${before.repository.replace(registryHost, registry.host)}:sha-${commit.slice(0, 7)}`)).toBe(before.digest);
      }
      // The reused apps' toolchains did not run; projects with no image (a library, a CLI) have no result to reuse.
      const buildOf = (project: string) => second.phases.find((p) => p.name === 'build' && p.project === project)?.status;
      expect([buildOf('java-app'), buildOf('go-app'), buildOf('dotnet-app')]).toEqual(['succeeded', 'skipped', 'skipped']);
      expect(second.phases.filter((p) => p.name === 'image').map((p) => p.project).sort()).toEqual(['dotnet-app', 'go-app', 'java-app']);
    } finally {
      await stop(b);
    }
  }, 800_000);
});
