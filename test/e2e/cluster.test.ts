// oci-build on a 3-node JetStream cluster (nats.replicas 3), as a team outgrowing one machine runs
// it: two serve replicas and two workers (processes of the built CLI), real Git over HTTP, real
// toolchains, buildah and a registry. While 8 senders push webhooks, one NATS node is SIGKILLed:
// the stream's leader, the workers' consumer's leader, or the node a worker is connected to.
// Every webhook must be answered 202 (serve holds it through the election, server.queueWait),
// every job built exactly once and succeed, none lost; the killed node comes back and catches up.

import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONSUMER_NAME } from '../../src/core/ports.js';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { fixtureRepo, git, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { sendPush } from '../helpers/github-push.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.mjs';
import { freePort, waitFor } from '../helpers/ports.js';
import { startRegistry } from '../helpers/registry.js';
import { jsonLogLines, stopDaemons } from '../helpers/daemons.js';

const SECRET = 'cluster-webhook-secret';
const TOKEN = 'cluster-api-token-0123456789';
const STREAM = 'OCI_BUILD_JOBS';
const SENDERS = 8;
const PUSHES_PER_SENDER = 2;

let sandbox: TempDir;
let cluster: NatsCluster;
let gitServer: GitServer;
let registry: Awaited<ReturnType<typeof startRegistry>>;
let repo: FixtureRepo;
/** The served (bare) copy: the branches the pushes name are made there. */
let served: string;
const serveUrls: string[] = [];
const daemons: Array<ChildProcess & { output: () => string; label: string }> = [];
let env: Record<string, string>;

function startDaemon(label: string, args: string[], extraEnv: Record<string, string>): void {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { output: () => string; label: string };
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  child.output = () => output;
  child.label = label;
  daemons.push(child);
}

/** A setup step that failed says what the daemons it waited for printed (and whether they exited). */
async function withDaemonOutput(labels: string[], step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (err) {
    const outputs = daemons
      .filter((d) => labels.includes(d.label))
      .map((d) => `== ${d.label} (exit ${d.exitCode ?? d.signalCode ?? 'none yet'})\n${d.output().split('\n').slice(-30).join('\n')}`);
    throw new Error(`${(err as Error).message}\n${outputs.join('\n')}`);
  }
}

function logLines(label: string): Array<Record<string, unknown>> {
  return jsonLogLines(daemons.find((d) => d.label === label)!.output());
}

async function record(id: string): Promise<BuildRecord | undefined> {
  for (const url of serveUrls) {
    try {
      const res = await fetch(`${url}/builds/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      if (res.status === 200) return (await res.json()) as BuildRecord;
    } catch {
      // that replica is busy: ask the other
    }
  }
  return undefined;
}

/** The cluster node (server_name) a client named `name` is connected to, from each node's /connz. */
async function nodeOf(clientName: string): Promise<string | undefined> {
  for (const node of cluster.nodes.filter((n) => n.running())) {
    const connz = (await (await fetch(`http://127.0.0.1:${node.monitorPort}/connz?limit=1024`)).json()) as { connections?: Array<{ name?: string }> };
    if (connz.connections?.some((c) => c.name === clientName)) return node.name;
  }
  return undefined;
}

interface ConsumerView {
  num_pending: number;
  num_ack_pending: number;
  cluster?: { leader?: string };
}

/** The workers' consumer as each running node reports it in /jsz (its server_name → its view). */
async function consumerViews(): Promise<Map<string, ConsumerView>> {
  const views = new Map<string, ConsumerView>();
  for (const node of cluster.nodes.filter((n) => n.running())) {
    try {
      const jsz = (await (await fetch(`http://127.0.0.1:${node.monitorPort}/jsz?streams=true&consumers=true`)).json()) as {
        account_details?: Array<{ stream_detail?: Array<{ name: string; consumer_detail?: Array<ConsumerView & { name: string }> }> }>;
      };
      const consumer = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((x) => x.name === STREAM)?.consumer_detail?.find((c) => c.name === DEFAULT_CONSUMER_NAME);
      if (consumer) views.set(node.name, consumer);
    } catch {
      // that node is not answering (yet): the others are asked
    }
  }
  return views;
}

interface Round {
  answers: Array<{ status: number; body: Record<string, unknown>; ms: number }>;
  jobIds: string[];
}

/** SENDERS concurrent senders, each pushing its own branches in turn to alternating serve replicas; `kill` runs once the first webhooks are on their way. */
async function pushWhile(round: string, kill: () => Promise<void>): Promise<Round> {
  const branches = Array.from({ length: SENDERS * PUSHES_PER_SENDER }, (_, i) => `${round}-${i}`);
  for (const branch of branches) git(served, ['branch', '-f', branch, repo.commit]);
  const answers: Round['answers'] = [];
  const senders = Array.from({ length: SENDERS }, async (_, s) => {
    for (let k = 0; k < PUSHES_PER_SENDER; k++) {
      const branch = branches[s * PUSHES_PER_SENDER + k]!;
      const started = Date.now();
      const answer = await sendPush({ serveUrl: serveUrls[(s + k) % serveUrls.length]!, secret: SECRET, gitServer, name: 'sample-go-repo', commit: repo.commit, branch });
      answers.push({ ...answer, ms: Date.now() - started });
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  await new Promise((r) => setTimeout(r, 50));
  await kill();
  await Promise.all(senders);
  return { answers, jobIds: answers.map((a) => String(a.body.jobId)) };
}

/** Every job final; returns their records. */
async function allFinal(jobIds: string[]): Promise<BuildRecord[]> {
  const records = new Map<string, BuildRecord>();
  await waitFor(
    async () => {
      for (const id of jobIds) {
        if (records.has(id)) continue;
        const r = await record(id);
        if (r && ['succeeded', 'failed', 'cancelled', 'skipped'].includes(r.status)) records.set(id, r);
      }
      return records.size === jobIds.length;
    },
    { timeoutMs: 240_000, intervalMs: 500, what: 'every job of the round to end' },
  );
  return jobIds.map((id) => records.get(id)!);
}

/** How many times each job ran to a final record, from both workers' logs. */
function finishedCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const label of ['worker-a', 'worker-b']) {
    for (const line of logLines(label)) {
      if (line.msg === 'job finished' && typeof line.jobId === 'string') counts.set(line.jobId, (counts.get(line.jobId) ?? 0) + 1);
    }
  }
  return counts;
}

async function expectRound(round: Round, killed: string): Promise<void> {
  // The killed node comes back (whatever the answers were: the next round needs its quorum) and
  // catches up with the stream.
  await cluster.node(killed).start();
  const refused = round.answers.filter((a) => a.status !== 202);
  expect(refused, JSON.stringify(refused)).toEqual([]);
  expect(new Set(round.jobIds).size).toBe(SENDERS * PUSHES_PER_SENDER);
  const records = await allFinal(round.jobIds);
  for (const r of records) {
    expect(r.status, `${r.id}: ${JSON.stringify(r.error)}`).toBe('succeeded');
    // Built from its own push: the image carries the branch's tag and was pushed with a digest.
    expect(r.images[0]?.tags).toContain(r.repository.branch);
    expect(r.images[0]?.digest).toMatch(/^sha256:/);
  }
  // The daemons' logs are written in blocks, and a job is acknowledged after its final record:
  // wait for every job's line, and for the consumer to have nothing pending or unacknowledged
  // (a redelivery of a finished job would show up here as a second run), then count.
  await waitFor(() => round.jobIds.every((id) => (finishedCounts().get(id) ?? 0) >= 1), { timeoutMs: 30_000, what: "every job's 'job finished' line" });
  // Asked of the consumer's leader: a follower's /jsz (the node just restarted, catching up) may
  // report an ack floor older than the consumer's for minutes (a CI run saw it stay past 120 s).
  const views: string[] = [];
  await waitFor(
    async () => {
      views.length = 0;
      const consumers = await consumerViews();
      for (const [node, c] of consumers) views.push(`${node}: pending ${c.num_pending}, ack pending ${c.num_ack_pending}, leader ${c.cluster?.leader ?? '?'}`);
      const leader = [...consumers].find(([node, c]) => c.cluster?.leader === node)?.[1];
      return leader !== undefined && leader.num_pending === 0 && leader.num_ack_pending === 0;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: 'the consumer to have every job acknowledged' },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; the nodes' views: ${views.join('; ')}`);
  });
  const counts = finishedCounts();
  for (const id of round.jobIds) expect(counts.get(id), `${id} ran to the end ${counts.get(id) ?? 0} times`).toBe(1);
  await waitFor(
    async () => {
      const jsz = (await (await fetch(`http://127.0.0.1:${cluster.node(killed).monitorPort}/jsz?streams=true`)).json()) as {
        account_details?: Array<{ stream_detail?: Array<{ name: string; cluster?: { leader?: string; replicas?: Array<{ current: boolean }> } }> }>;
      };
      const stream = jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === STREAM);
      return stream !== undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500, what: `${killed} to hold the stream again` },
  );
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-cluster-');
  [cluster, gitServer, registry] = await Promise.all([startNatsCluster(), startGitServer(), startRegistry()]);
  repo = await fixtureRepo('sample-go-repo');
  served = await gitServer.addRepo('acme/sample-go-repo', repo.dir);
  env = {
    ...isolatedEnv(sandbox.path),
    OCI_BUILD_NATS_SERVERS: cluster.urls.join(','),
    OCI_BUILD_NATS_REPLICAS: '3',
    // nats-server 2.9 elects a stream's new leader after a randomised 4–9 s raft timeout: measured
    // here at 4.5–8 s on a loaded 2-core machine, and past 9 s while the rest of the suite builds
    // images beside it (a CI run refused webhooks at 8.4–8.9 s). What is checked is that serve
    // holds every webhook through the election, however long it takes: the wait is generous here.
    // (The default, 8 s, answers inside GitHub's 10 s; bench/chaos measures elections against 9 s.)
    OCI_BUILD_SERVER_QUEUE_WAIT: '30s',
    OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
    OCI_BUILD_SERVER_API_TOKENS: TOKEN,
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: `${registry.host}/ci`,
    OCI_BUILD_IMAGE_PUSH: 'true',
    OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
    OCI_BUILD_WORKER_CONCURRENCY: '2',
  };
  for (const name of ['serve-a', 'serve-b']) {
    const port = await freePort();
    serveUrls.push(`http://127.0.0.1:${port}`);
    startDaemon(name, ['serve'], { OCI_BUILD_SERVER_PORT: String(port) });
  }
  // The first serve creates the streams and buckets with 3 replicas; the workers bind to them.
  await withDaemonOutput(['serve-a', 'serve-b'], () =>
    waitFor(async () => (await fetch(`${serveUrls[0]}/health`)).ok && (await fetch(`${serveUrls[1]}/health`)).ok, { timeoutMs: 60_000, what: 'both serve replicas to answer /health' }),
  );
  for (const name of ['worker-a', 'worker-b']) startDaemon(name, ['worker'], { OCI_BUILD_WORKER_NAME: name });
  await withDaemonOutput(['worker-a', 'worker-b'], () =>
    waitFor(() => ['worker-a', 'worker-b'].every((w) => logLines(w).some((line) => line.msg === 'worker started')), { timeoutMs: 90_000, what: 'both workers to bind to their consumer' }),
  );
  await waitFor(async () => (await nodeOf('oci-build-worker worker-a')) !== undefined && (await nodeOf('oci-build-worker worker-b')) !== undefined, { timeoutMs: 60_000, what: 'both workers to connect' });
}, 120_000);

afterAll(async () => {
  if (process.env.OCI_BUILD_E2E_DAEMON_LOG) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(process.env.OCI_BUILD_E2E_DAEMON_LOG, daemons.map((d) => `== ${d.label}\n${d.output()}`).join('\n'));
  }
  await stopDaemons(daemons);
  await Promise.allSettled([cluster?.stop(), gitServer?.dispose(), registry?.stop()]);
  await repo?.cleanup();
  await sandbox?.cleanup();
}, 60_000);

describe('a NATS node SIGKILLed while webhooks arrive from 8 senders loses and refuses nothing', () => {
  it('the jobs stream leader', async () => {
    const leader = await cluster.waitForLeader(STREAM);
    const round = await pushWhile('stream', () => cluster.node(leader).kill());
    await expectRound(round, leader);
  }, 400_000);

  it("the workers' consumer's leader", async () => {
    const leader = await cluster.waitForLeader(STREAM, DEFAULT_CONSUMER_NAME);
    const round = await pushWhile('consumer', () => cluster.node(leader).kill());
    await expectRound(round, leader);
  }, 400_000);

  it('the node a worker is connected to', async () => {
    const node = (await nodeOf('oci-build-worker worker-a'))!;
    expect(node).toBeDefined();
    const round = await pushWhile('worker', () => cluster.node(node).kill());
    try {
      // The worker reconnected to another node and carried on.
      await waitFor(
        async () => {
          const now = await nodeOf('oci-build-worker worker-a');
          return now !== undefined && now !== node;
        },
        { timeoutMs: 30_000, what: 'worker-a to reconnect to another node' },
      );
    } finally {
      await expectRound(round, node);
    }
  }, 400_000);

  it('every stream and bucket oci-build created (the result bucket by the workers) has 3 replicas', async () => {
    const jsz = (await (await fetch(`http://127.0.0.1:${cluster.nodes[0]!.monitorPort}/jsz?streams=true&config=true`)).json()) as {
      account_details?: Array<{ stream_detail?: Array<{ name: string; config?: { num_replicas?: number } }> }>;
    };
    const streams = jsz.account_details?.flatMap((a) => a.stream_detail ?? []) ?? [];
    expect(streams.map((s) => s.name)).toEqual(expect.arrayContaining([STREAM, 'OCI_BUILD_LOGS', 'KV_oci-build-status', 'KV_oci-build-results']));
    for (const s of streams) expect(s.config?.num_replicas, s.name).toBe(3);
  });
});
