// The whole environment of deploy/compose.yaml, as processes instead of containers: nats-server
// with the compose file's command, `serve` and two `worker` replicas started from the single
// executable (dist/oci-build) with the environment `docker-compose config` resolves for them (the
// example env file included), a signed GitHub push, the image in a real registry, and `oci-build
// status --server` showing the build. What differs from the containers is only what must (local()
// and relocate() below): addresses, the directories volumes stand for, a plain-HTTP registry.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { DEFAULT_CONSUMER_NAME } from '../../src/core/ports.js';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { kubernetesObjects, resolvedCompose, type ComposeConfig, type ComposeService } from '../helpers/deploy-files.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { freePort, waitFor } from '../helpers/ports.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { ensureSeaExecutable } from '../helpers/sea-executable.js';
import { stopDaemons } from '../helpers/daemons.js';

const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, any>;

/** dist/oci-build, the single executable, rebuilt first when dist/ changed. */
let executable: string;
let compose: ComposeConfig;
let sandbox: TempDir;
let gitServer: GitServer;
let registry: TestRegistry;
let repo: FixtureRepo;
let natsPort: number;
let monitorPort: number;
let servePort: number;
let serveEnv: Record<string, string>;
const workers: ChildProcess[] = [];
const daemons: Array<{ child: ChildProcess; output: () => string }> = [];

/**
 * Where these processes must differ from the containers: the hosts and ports of NATS, serve, the
 * Git host and the registry (a plain-HTTP one here), and the directories volumes stand for.
 */
function local(env: Record<string, string>): Record<string, string> {
  const url = new URL(env.OCI_BUILD_NATS_URL!);
  expect(url.hostname).toBe('nats');
  return {
    ...env,
    OCI_BUILD_NATS_URL: `nats://127.0.0.1:${natsPort}`,
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: env.OCI_BUILD_IMAGE_REGISTRY!.replace(/^[^/]+/, registry.host),
    OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
  };
}

/**
 * A container path as this replica sees it: on a named volume (shared by the replicas), on an
 * anonymous one or the container's own filesystem (this replica's own).
 */
function relocate(path: string, service: ComposeService, replica: string): string {
  for (const volume of service.volumes ?? []) {
    const [source, target] = volume.includes(':') ? volume.split(':') : [undefined, volume];
    if (path === target || path.startsWith(`${target}/`)) {
      return source ? join(sandbox.path, 'volumes', source, path.slice(target!.length)) : join(sandbox.path, replica, path);
    }
  }
  return join(sandbox.path, replica, path);
}

function relocated(env: Record<string, string>, service: ComposeService, replica: string): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, value.startsWith('/') ? relocate(value, service, replica) : value]));
}

function start(args: string[], env: Record<string, string>): ChildProcess {
  // From a directory of its own: the checkout's oci-build.config.yaml is not the deployment's.
  const child = spawn(executable, args, { cwd: sandbox.path, env: { PATH: process.env.PATH!, HOME: join(sandbox.path, 'home'), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  daemons.push({ child, output: () => output });
  return child;
}

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    execFile(executable, args, { cwd: sandbox.path, env: { PATH: process.env.PATH!, HOME: join(sandbox.path, 'home'), CI: 'true', NO_COLOR: '1', ...env } }, (error, stdout, stderr) => {
      resolveRun({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

function token(): string {
  return serveEnv.OCI_BUILD_SERVER_API_TOKENS!.split(',')[0]!.trim();
}

async function record(id: string): Promise<BuildRecord | undefined> {
  const response = await fetch(`http://127.0.0.1:${servePort}/builds/${id}`, { headers: { authorization: `Bearer ${token()}` } });
  return response.status === 200 ? ((await response.json()) as BuildRecord) : undefined;
}

beforeAll(async () => {
  executable = ensureSeaExecutable();
  const resolved = await resolvedCompose();
  expect(resolved.code, resolved.stderr).toBe(0);
  compose = resolved.config;
  sandbox = await tempDir('oci-build-env-');
  [gitServer, registry, repo] = await Promise.all([startGitServer(), startRegistry(), fixtureRepo('sample-go-repo')]);
  await gitServer.addRepo('acme/sample-go-repo', repo.dir);
  [natsPort, monitorPort, servePort] = await Promise.all([freePort(), freePort(), freePort()]);

  // NATS as compose runs it: its arguments, the store on the volume's directory, local ports.
  const nats = compose.services.nats!;
  const args = [...nats.command!];
  const at = (flag: string) => args.indexOf(flag) + 1;
  args[at('-sd')] = relocate(args[at('-sd')]!, nats, 'nats');
  const composeMonitor = args[at('-m')]!;
  args[at('-m')] = String(monitorPort);
  const natsProcess = spawn('nats-server', [...args, '-a', '127.0.0.1', '-p', String(natsPort)], { stdio: 'ignore' });
  daemons.push({ child: natsProcess, output: () => '' });
  // The compose healthcheck's URL, pointed at this monitoring port.
  const healthUrl = nats.healthcheck!.test.find((arg) => arg.startsWith('http://'))!.replace(`127.0.0.1:${composeMonitor}`, `127.0.0.1:${monitorPort}`);
  await waitFor(async () => (await fetch(healthUrl)).ok, { timeoutMs: 20_000, what: `NATS's healthcheck ${healthUrl}` });

  serveEnv = { ...local(compose.services.serve!.environment!), OCI_BUILD_SERVER_PORT: String(servePort) };
  start(['serve'], serveEnv);

  const worker = compose.services.worker!;
  const replicas = worker.deploy!.replicas!;
  expect(replicas).toBe(2);
  for (let i = 1; i <= replicas; i++) {
    const env = relocated(local(worker.environment!), worker, `worker-${i}`);
    // The compose secret, at the path the worker reads it from: an auth file with no credentials.
    mkdirSync(dirname(env.OCI_BUILD_IMAGE_AUTH_FILE!), { recursive: true });
    writeFileSync(env.OCI_BUILD_IMAGE_AUTH_FILE!, '{"auths":{}}\n');
    workers.push(start(['worker'], env));
  }
  await waitFor(async () => (await fetch(`http://127.0.0.1:${servePort}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' }).catch((err: Error) => {
    throw new Error(`${err.message}:\n${daemons.map((d) => d.output()).join('\n----\n')}`);
  });
});

afterAll(async () => {
  await stopDaemons([...daemons].reverse().map((d) => d.child));
  await Promise.allSettled([gitServer?.dispose(), registry?.stop(), repo?.cleanup()]);
  await sandbox?.cleanup();
});

describe('the environment of deploy/compose.yaml', () => {
  it('both worker replicas are live', async () => {
    let live: Array<{ name: string }> = [];
    await waitFor(
      async () => {
        const result = await cli(['status', '--workers', '--json'], serveEnv);
        live = result.code === 0 ? (JSON.parse(result.stdout) as { workers: Array<{ name: string }> }).workers : [];
        return live.length === 2;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'two live workers' },
    ).catch((err: Error) => {
      throw new Error(`${err.message}:\n${daemons.map((d) => d.output()).join('\n----\n')}`);
    });
    expect(live.map((w) => w.name).sort()).toEqual(workers.map((w) => `${hostname()}:${w.pid}`).sort());
  });

  it('a signed push is built by one of the workers, lands in the registry, and `oci-build status --server` shows it', async () => {
    const payload = structuredClone(PUSH);
    payload.ref = 'refs/heads/main';
    payload.before = '0'.repeat(40);
    payload.after = repo.commit;
    payload.repository.name = 'sample-go-repo';
    payload.repository.full_name = 'acme/sample-go-repo';
    payload.repository.clone_url = gitServer.url('acme/sample-go-repo');
    payload.repository.html_url = `http://127.0.0.1:${gitServer.port}/acme/sample-go-repo`;
    payload.head_commit.id = repo.commit;
    const body = JSON.stringify(payload);
    const response = await fetch(`http://127.0.0.1:${servePort}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        // The secret of the example env file, as serve got it from compose.
        'x-hub-signature-256': signWebhookBody(serveEnv.OCI_BUILD_SERVER_WEBHOOK_SECRET!, body),
      },
      body,
    });
    expect(response.status).toBe(202);
    const { jobId } = (await response.json()) as { jobId: string };

    let final: BuildRecord | undefined;
    await waitFor(
      async () => {
        final = await record(jobId);
        return final !== undefined && ['succeeded', 'failed', 'cancelled'].includes(final.status);
      },
      { timeoutMs: 170_000, intervalMs: 500, what: `build ${jobId} to finish` },
    );
    expect(final!.status, JSON.stringify(final!.error)).toBe('succeeded');
    expect(workers.map((w) => `${hostname()}:${w.pid}`)).toContain(final!.worker);
    const image = final!.images[0]!;
    expect(image).toMatchObject({ repository: `${registry.host}/team/sample-go-repo`, pushed: true });
    const inspect = JSON.parse(execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${image.repository}:sha-${repo.commit.slice(0, 7)}`], { encoding: 'utf8' })) as { Digest: string };
    expect(inspect.Digest).toBe(image.digest);

    const shown = await cli(['status', '--server', `http://127.0.0.1:${servePort}`, '--token', token()], {});
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(jobId);
    expect(shown.stdout).toContain('succeeded');
    const one = await cli(['status', jobId, '--server', `http://127.0.0.1:${servePort}`, '--token', token(), '--json'], {});
    expect(one.code, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout) as BuildRecord).images[0]?.digest).toBe(image.digest);
  });

  it("NATS's monitoring shows the stream and consumer the KEDA ScaledObject scales on, drained", async () => {
    const scaled = kubernetesObjects('kubernetes/worker-scaledobject.yaml')[0]!;
    const trigger = scaled.spec.triggers[0].metadata as Record<string, string>;
    expect(trigger.consumer).toBe(DEFAULT_CONSUMER_NAME);
    const jsz = (await (await fetch(`http://127.0.0.1:${monitorPort}/jsz?acc=${encodeURIComponent(trigger.account!)}&consumers=true`)).json()) as {
      account_details: Array<{ name: string; stream_detail: Array<{ name: string; consumer_detail?: Array<{ name: string; num_pending: number; num_ack_pending: number }> }> }>;
    };
    const account = jsz.account_details.find((a) => a.name === trigger.account);
    const stream = account?.stream_detail.find((s) => s.name === trigger.stream);
    const consumer = stream?.consumer_detail?.find((c) => c.name === trigger.consumer);
    expect(consumer, JSON.stringify(jsz)).toBeDefined();
    // KEDA's lag: pending + ack-pending. The one job is built and acknowledged.
    expect(consumer!.num_pending + consumer!.num_ack_pending).toBe(0);
  });

  it("serve's /metrics counts the finished build", async () => {
    await waitFor(async () => /^oci_build_jobs_finished_total\{status="succeeded"\} 1$/m.test(await (await fetch(`http://127.0.0.1:${servePort}/metrics`)).text()), {
      timeoutMs: 10_000,
      what: 'oci_build_jobs_finished_total{status="succeeded"} 1',
    });
  });

  it('the workers drain on SIGTERM and exit 0, as the stop settings of compose, systemd and Kubernetes expect', async () => {
    const exits = workers.map((w) => new Promise<number | null>((r) => w.once('exit', (code) => r(code))));
    for (const w of workers) w.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0]);
  });
});
