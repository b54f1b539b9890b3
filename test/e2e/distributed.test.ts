// Distributed mode end to end, as operators run it: `oci-build serve` and `oci-build worker` as
// separate processes of the built CLI, a real nats-server, real Git over HTTP, real toolchains,
// real buildah and a real registry. A signed GitHub push goes in; an image comes out.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { CLI, isolatedEnv, runCli } from '../helpers/cli.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { startRegistry } from '../helpers/registry.js';
import { hasTool } from '../helpers/toolchains.js';
import { jsonLogLines, stopDaemons } from '../helpers/daemons.js';

const SECRET = 'e2e-webhook-secret';
const TOKEN = 'e2e-api-token-0123456789';
const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, unknown>;

let sandbox: TempDir;
let nats: NatsServer;
let gitServer: GitServer;
let registry: Awaited<ReturnType<typeof startRegistry>>;
let serveUrl: string;
let env: Record<string, string>;
const daemons: ChildProcess[] = [];
const repos: FixtureRepo[] = [];
let javaRepo: FixtureRepo;
let worker: ChildProcess;

/** The worker's JSON log lines so far (other output left out). */
function workerLogLines(): Array<Record<string, unknown>> {
  return jsonLogLines((worker as ChildProcess & { output: () => string }).output());
}

function startDaemon(args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  (child as ChildProcess & { output: () => string }).output = () => output;
  daemons.push(child);
  return child;
}

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${serveUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Sends a signed push of `repo` (served as acme/<name>) and returns the job id. */
async function push(repo: FixtureRepo, name: string, before = '0'.repeat(40)): Promise<string> {
  const payload = structuredClone(PUSH) as Record<string, any>;
  payload.ref = 'refs/heads/main';
  payload.before = before;
  payload.after = repo.commit;
  payload.repository.name = name;
  payload.repository.full_name = `acme/${name}`;
  payload.repository.clone_url = gitServer.url(`acme/${name}`);
  payload.repository.html_url = `http://127.0.0.1:${gitServer.port}/acme/${name}`;
  payload.head_commit.id = repo.commit;
  const body = JSON.stringify(payload);
  const response = await fetch(`${serveUrl}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': randomUUID(),
      'x-hub-signature-256': signWebhookBody(SECRET, body),
    },
    body,
  });
  expect(response.status).toBe(202);
  const answer = (await response.json()) as { jobId: string; status: string };
  expect(answer.status).toBe('queued');
  return answer.jobId;
}

async function finished(id: string): Promise<BuildRecord> {
  let record: BuildRecord | undefined;
  await waitFor(
    async () => {
      const { status, body } = await api<BuildRecord>(`/builds/${id}`);
      record = status === 200 ? body : undefined;
      return record !== undefined && ['succeeded', 'failed', 'cancelled'].includes(record.status);
    },
    { timeoutMs: 170_000, intervalMs: 250, what: `build ${id} to finish` },
  );
  return record!;
}

/** Copies an image out of the registry (skopeo, an OCI layout), unpacks its layers into one root and runs `check` on it. */
async function withPulledImage(reference: string, check: (root: string) => void): Promise<void> {
  const dir = await tempDir('oci-build-pulled-');
  try {
    const layout = join(dir.path, 'layout');
    const root = join(dir.path, 'root');
    mkdirSync(root);
    execFileSync('skopeo', ['copy', '--src-tls-verify=false', `docker://${reference}`, `dir:${layout}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    const manifest = JSON.parse(readFileSync(join(layout, 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string }> };
    expect(manifest.layers.length).toBeGreaterThan(0);
    for (const layer of manifest.layers) execFileSync('tar', ['-x', '-C', root, '-f', join(layout, layer.digest.replace(/^sha256:/, ''))]);
    check(root);
  } finally {
    await dir.cleanup();
  }
}

async function served(name: string): Promise<FixtureRepo> {
  const repo = await fixtureRepo(name);
  repos.push(repo);
  await gitServer.addRepo(`acme/${name}`, repo.dir);
  return repo;
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-dist-');
  [nats, gitServer, registry] = await Promise.all([startNatsServer(), startGitServer(), startRegistry()]);
  const port = await freePort();
  serveUrl = `http://127.0.0.1:${port}`;
  env = {
    ...isolatedEnv(sandbox.path),
    OCI_BUILD_NATS_URL: nats.url,
    OCI_BUILD_SERVER_PORT: String(port),
    OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
    OCI_BUILD_SERVER_API_TOKENS: TOKEN,
    // The loopback Git server is where these pushes come from: serve refuses any host not listed.
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: `${registry.host}/ci`,
    OCI_BUILD_IMAGE_PUSH: 'true',
    OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
    OCI_BUILD_WORKER_CONCURRENCY: '2',
    OCI_BUILD_WORKER_NAME: 'e2e-worker',
  };
  startDaemon(['serve']);
  worker = startDaemon(['worker']);
  await waitFor(async () => (await fetch(`${serveUrl}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' });
});

afterAll(async () => {
  if (process.env.OCI_BUILD_E2E_DAEMON_LOG) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(process.env.OCI_BUILD_E2E_DAEMON_LOG, daemons.map((d) => (d as ChildProcess & { output: () => string }).output()).join('\n----\n'));
  }
  await stopDaemons(daemons);
  await Promise.allSettled([nats?.stop(), gitServer?.dispose(), registry?.stop()]);
  for (const repo of repos) await repo.cleanup();
  await sandbox?.cleanup();
});

describe('webhook → worker → registry', () => {
  it('the worker logs its effective settings at start, secrets masked, and the image settings it was given itself', async () => {
    // The daemons' logs are written in blocks, a quarter of a second apart.
    // Both start lines: the overrides line may come in the next block.
    await waitFor(
      () => workerLogLines().some((line) => line.msg === 'effective settings') && workerLogLines().some((line) => String(line.msg).includes('override what jobs carry')),
      { timeoutMs: 10_000, intervalMs: 50, what: 'the worker to log its settings' },
    );
    const start = workerLogLines().find((line) => line.msg === 'effective settings') as
      | { settings: { values: Record<string, unknown>; setBy: Record<string, string> } }
      | undefined;
    expect(start).toBeDefined();
    expect(start!.settings.values['image.registry']).toBe(env.OCI_BUILD_IMAGE_REGISTRY);
    expect(start!.settings.setBy['image.registry']).toBe('OCI_BUILD_IMAGE_REGISTRY');
    expect(start!.settings.values['build.timeout']).toBe('30m');
    expect(start!.settings.values['server.webhookSecret']).toBe('***');
    expect((worker as ChildProcess & { output: () => string }).output()).not.toContain(SECRET);
    expect(start!.settings.values['nats.user']).toBeNull();
    expect(start!.settings.setBy['nats.user']).toBeUndefined();
    const overrides = workerLogLines().find((line) => String(line.msg).includes('override what jobs carry')) as { imageOverrides: Record<string, unknown> } | undefined;
    expect(overrides?.imageOverrides).toEqual({ registry: env.OCI_BUILD_IMAGE_REGISTRY, push: true, tlsVerify: false });
  });

  it('builds a Go repository pushed to GitHub and pushes its image with both tags', async () => {
    const repo = await served('sample-go-repo');
    const id = await push(repo, 'sample-go-repo');
    const record = await finished(id);
    expect(record.status, JSON.stringify(record.error)).toBe('succeeded');
    expect(record).toMatchObject({ trigger: 'webhook', worker: 'e2e-worker' });
    expect(record.repository).toMatchObject({ fullName: 'acme/sample-go-repo', branch: 'main', commit: repo.commit });
    expect(record.phases.map((p) => p.name)).toEqual(['source', 'detect', 'build', 'image', 'push']);
    const image = record.images[0]!;
    expect(image).toMatchObject({ repository: `${registry.host}/ci/sample-go-repo`, pushed: true });
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${image.repository}:main`], { encoding: 'utf8' })) as { Digest: string; RepoTags: string[]; Labels: Record<string, string> };
    expect(inspect.Digest).toBe(image.digest);
    expect(inspect.RepoTags.sort()).toEqual(['main', `sha-${repo.commit.slice(0, 7)}`].sort());
    expect(inspect.Labels['org.opencontainers.image.source']).toBe(gitServer.url('acme/sample-go-repo'));

    // the log is kept and served
    const log = await fetch(`${serveUrl}/builds/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(log.status).toBe(200);
    expect(await log.text()).toContain('==> build');
  });

  it('builds the Java repository', async () => {
    javaRepo = await served('sample-java-repo');
    const record = await finished(await push(javaRepo, 'sample-java-repo'));
    expect(record.status, JSON.stringify(record.error)).toBe('succeeded');
    expect(record.images[0]?.pushed).toBe(true);
    expect(record.projects?.[0]?.language).toBe('java');
    // What the registry holds: the jar, and it runs (the image is FROM scratch: the host's java).
    await withPulledImage(`${record.images[0]!.repository}:main`, (root) => {
      const jar = join(root, 'app', 'sample-java-repo-1.0.0.jar');
      expect(execFileSync('java', ['-cp', jar, 'dev.ocibuild.sample.App'], { encoding: 'utf8' }).trim()).toBe('Hello from sample-java-repo');
    });
  });

  it.skipIf(!hasTool('dotnet'))('builds the .NET repository', async () => {
    const dotnet = await served('sample-dotnet-repo');
    const record = await finished(await push(dotnet, 'sample-dotnet-repo'));
    expect(record.status, JSON.stringify(record.error)).toBe('succeeded');
    expect(record.images[0]?.pushed).toBe(true);
    expect(record.projects?.[0]?.language).toBe('dotnet');
    await withPulledImage(`${record.images[0]!.repository}:main`, (root) => {
      const dll = join(root, 'app', 'sample-dotnet-repo.dll');
      const output = execFileSync('dotnet', [dll], { encoding: 'utf8', env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' } });
      expect(output.trim()).toBe('Hello from sample-dotnet-repo');
    });
  });

  it('a second Maven build on the same worker reuses the dependency cache', async () => {
    // The Maven repository is seeded once (marker written), then every build runs offline from it.
    const marker = join(env.OCI_BUILD_WORK_DIR!, 'cache', 'maven', '.oci-build-seeded');
    expect(existsSync(marker)).toBe(true);
    const seededAt = statSync(marker).mtimeMs;
    // A change to the sources: a commit of the same tree would reuse the first image (result reuse).
    await appendFile(join(javaRepo.dir, 'pom.xml'), '\n<!-- second commit -->\n');
    const commit = javaRepo.commitAll('second commit', '2026-01-02T00:00:00Z');
    execFileSync('git', ['push', '-q', '--force', gitServer.repoPath('acme/sample-java-repo'), 'HEAD:main'], { cwd: javaRepo.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const id = await push({ ...javaRepo, commit }, 'sample-java-repo', javaRepo.commit);
    const record = await finished(id);
    expect(record.status, JSON.stringify(record.error)).toBe('succeeded');
    expect(record.repository.commit).toBe(commit);
    expect(statSync(marker).mtimeMs).toBe(seededAt);
    const log = await (await fetch(`${serveUrl}/builds/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(log).toMatch(/BUILD SUCCESS/);
    expect(log).not.toMatch(/Downloading from/);
  });

  // The monorepo holds a .NET app: without dotnet its build would fail.
  it.skipIf(!hasTool('dotnet'))('an Nx monorepo: a new branch images every app, the next push only what its before..after affects', async () => {
    const apps = ['dotnet-app', 'go-app', 'java-app'];
    const repo = await served('sample-nx-monorepo');
    // before = all zeros (a new branch): every project builds.
    const full = await finished(await push(repo, 'sample-nx-monorepo'));
    expect(full.status, JSON.stringify(full.error)).toBe('succeeded');
    expect(full.images.filter((i) => i.pushed).map((i) => i.repository).sort()).toEqual(apps.map((a) => `${registry.host}/ci/sample-nx-monorepo/${a}`));
    expect(full.phases.filter((p) => p.name === 'build').map((p) => p.project).sort()).toEqual(['cli-tool', 'dotnet-app', 'go-app', 'java-app', 'shared']);

    // A change to the Go app alone, pushed with before = the previous head.
    await appendFile(join(repo.dir, 'apps/go-app/main.go'), '\n// a change to the Go app only\n');
    const commit = repo.commitAll('go-app: comment', '2026-01-03T00:00:00Z');
    execFileSync('git', ['push', '-q', gitServer.repoPath('acme/sample-nx-monorepo'), 'HEAD:main'], { cwd: repo.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const id = await push({ ...repo, commit }, 'sample-nx-monorepo', repo.commit);
    const affected = await finished(id);
    expect(affected.status, JSON.stringify(affected.error)).toBe('succeeded');
    expect(affected.repository).toMatchObject({ commit, before: repo.commit, branch: 'main' });
    expect(affected.phases.filter((p) => p.name === 'build').map((p) => p.project)).toEqual(['go-app']);
    expect(affected.images.map((i) => i.repository)).toEqual([`${registry.host}/ci/sample-nx-monorepo/go-app`]);
    const tags = JSON.parse(
      execFileSync('skopeo', ['list-tags', '--tls-verify=false', `docker://${registry.host}/ci/sample-nx-monorepo/go-app`], { encoding: 'utf8' }),
    ) as { Tags: string[] };
    expect(tags.Tags).toContain(`sha-${commit.slice(0, 7)}`);
    const log = await (await fetch(`${serveUrl}/builds/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(log).toMatch(/nx run go-app:build/);
  });

  it('a repository that does not compile ends failed in the build phase, once', async () => {
    const repo = await served('broken-go-repo');
    const id = await push(repo, 'broken-go-repo');
    const record = await finished(id);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ phase: 'build' });
    expect(record.error?.message).toMatch(/undefined: /);
    expect(record.images).toEqual([]);

    // Once: one delivery built it. A retry would leave a delivery note in the record
    // ("delivery 1 of 5 failed on …; retrying"), `==> delivery` lines and a second source phase in
    // the log, and a second "job started" line in the worker's own log.
    expect((record.warnings ?? []).filter((w) => /^delivery \d+ of \d+/.test(w))).toEqual([]);
    const log = await (await fetch(`${serveUrl}/builds/${id}/logs`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(log.match(/^==> source$/gm)).toHaveLength(1);
    expect(log.match(/^==> build\b/gm)).toHaveLength(1);
    expect(log).not.toMatch(/^==> delivery /m);
    // The worker's lines reach its stdout in blocks at most 250 ms apart: wait for the settlement's.
    const jobLines = () => workerLogLines().filter((line) => line.jobId === id);
    await waitFor(() => jobLines().some((line) => line.msg === 'job finished'), { timeoutMs: 10_000, what: `the worker to log the end of ${id}` });
    expect(jobLines().filter((line) => line.msg === 'job started')).toHaveLength(1);
    expect(jobLines().filter((line) => line.msg === 'job finished')).toHaveLength(1);
  });

  it('a repository without a Dockerfile ends failed in the image phase, naming the paths', async () => {
    const repo = await served('no-dockerfile-repo');
    const id = await push(repo, 'no-dockerfile-repo');
    const record = await finished(id);
    expect(record.status).toBe('failed');
    expect(record.error?.phase).toBe('image');
    expect(record.error?.message).toMatch(/Dockerfile/);
    expect(record.error?.message).toMatch(/Containerfile/);
  });
});

describe('oci-build status against the server', () => {
  it('lists, filters and shows builds, and lists the live worker', async () => {
    const list = await runCli(['status', '--server', serveUrl, '--token', TOKEN, '--json', '--repo', 'acme/sample-go-repo'], { env });
    expect(list.code, list.stderr).toBe(0);
    const builds = (JSON.parse(list.stdout) as { builds: BuildRecord[] }).builds;
    expect(builds.length).toBeGreaterThan(0);
    expect(builds.every((b) => b.repository.fullName === 'acme/sample-go-repo')).toBe(true);

    const one = await runCli(['status', builds[0]!.id, '--server', serveUrl, '--token', TOKEN], { env });
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(builds[0]!.id);

    const followed = await runCli(['status', builds[0]!.id, '--server', serveUrl, '--token', TOKEN, '--follow'], { env });
    expect(followed.code).toBe(0);
    expect(followed.stdout).toContain('==> succeeded');

    const badToken = await runCli(['status', '--server', serveUrl, '--token', 'wrong-token-wrong-token'], { env });
    expect(badToken.code).toBe(2);
    expect(badToken.stderr).toMatch(/refused the API token/);

    const unknown = await runCli(['status', 'gh-no-such-build', '--server', serveUrl, '--token', TOKEN], { env });
    expect(unknown.code).toBe(2);

    const workers = await runCli(['status', '--workers', '--json'], { env });
    expect(workers.code, workers.stderr).toBe(0);
    const live = (JSON.parse(workers.stdout) as { workers: Array<{ name: string; concurrency: number }> }).workers;
    expect(live).toEqual([expect.objectContaining({ name: 'e2e-worker', concurrency: 2 })]);
  });

  it('/health reports NATS', async () => {
    const health = await fetch(`${serveUrl}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', nats: 'connected' });
  });
});
