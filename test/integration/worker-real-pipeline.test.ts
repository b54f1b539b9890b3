// The worker with the real phase adapters (src/compose.ts) on local sources: a Go build that
// succeeds, one that does not compile (failed, acknowledged once), and a shutdown that cancels a
// running build command: its process group is killed and the job is handed back.

import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPipelineAdapters, startNatsWorker } from '../../src/compose.js';
import { parseConfig, type Config } from '../../src/config/config.js';
import type { BuildJob } from '../../src/core/types.js';
import { publishJob, queueStats } from '../../src/queue/job-queue.js';
import { readLog } from '../../src/queue/log-stream.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import type { Worker } from '../../src/worker/worker.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { isolatedQueue, memoryLogger, waitForStatus } from './fixtures/worker-harness.js';

let server: NatsServer;
let work: TempDir;
const repos: FixtureRepo[] = [];
const contexts: NatsContext[] = [];
const workers: Worker[] = [];

beforeAll(async () => {
  server = await startNatsServer();
  work = await tempDir('oci-build-worker-work-');
});

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
  await Promise.all(contexts.splice(0).map((c) => closeNats(c)));
});

afterAll(async () => {
  await server?.stop();
  await Promise.all(repos.map((r) => r.cleanup()));
  await work?.cleanup();
});

function config(fileData: Record<string, unknown> = {}): Config {
  return parseConfig({ fileData: { workDir: work.path, ...fileData }, env: {} });
}

async function setup(cfg: Config): Promise<NatsContext> {
  const ctx = await isolatedQueue(server.url, 'r');
  contexts.push(ctx);
  const adapters = createPipelineAdapters(cfg);
  workers.push(await startNatsWorker({ nats: ctx, name: 'real', pipelineDeps: () => adapters, logger: memoryLogger(), timeoutMs: 120_000 }));
  return ctx;
}

function localJob(id: string, dir: string): BuildJob {
  return {
    id,
    trigger: 'cli',
    source: { kind: 'local', path: dir },
    noImage: true,
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of iterable) out.push(line);
  return out;
}

function processRunning(pattern: string): boolean {
  try {
    execFileSync('pgrep', ['-f', pattern], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('worker with the real pipeline', () => {
  it('builds a Go repository, and records a build that does not compile as failed, once', async () => {
    const ctx = await setup(config());
    const good = await fixtureRepo('sample-go-repo');
    const bad = await fixtureRepo('broken-go-repo');
    repos.push(good, bad);
    await publishJob(ctx, localJob('real-go', good.dir));
    await publishJob(ctx, localJob('real-broken', bad.dir));
    const ok = await waitForStatus(ctx, 'real-go', ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(ok.error).toBeUndefined();
    expect(ok).toMatchObject({ status: 'succeeded', worker: 'real', repository: { commit: good.commit } });
    expect(ok.projects?.[0]).toMatchObject({ language: 'go', built: true });
    const failed = await waitForStatus(ctx, 'real-broken', ['succeeded', 'failed', 'cancelled'], 120_000);
    expect(failed).toMatchObject({ status: 'failed', error: { phase: 'build' } });
    expect((await collect(readLog(ctx, 'real-broken', { follow: true }))).at(-1)).toBe('==> failed');
    await waitFor(async () => (await queueStats(ctx)).total === 0, { what: 'both jobs to be acknowledged' });
  });

  it('stop() kills the running build command (its process group) and hands the job back', async () => {
    const marker = `${60 + Math.floor(Math.random() * 1000) / 1000}`;
    const ctx = await setup(config({ build: { projects: { '.': { command: ['sh', '-c', `sleep ${marker}; echo done`] } } } }));
    const repo = await fixtureRepo('sample-go-repo');
    repos.push(repo);
    await publishJob(ctx, localJob('real-stop', repo.dir));
    await waitFor(() => processRunning(`sleep ${marker}`), { timeoutMs: 60_000, what: 'the build command to run' });
    const worker = workers[0]!;
    const t0 = Date.now();
    await worker.stop();
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(processRunning(`sleep ${marker}`)).toBe(false);
    const record = await waitForStatus(ctx, 'real-stop', 'queued');
    expect(record.warnings?.at(-1)).toMatch(/handed back by real at shutdown/);
    expect((await queueStats(ctx)).total).toBe(1);
  });
});
