// Benchmark `chaos`: webhooks against a 3-node JetStream cluster (nats.replicas 3) with two serve
// replicas and three workers (processes of the built CLI, building fixtures/sample-go-repo with
// buildah), while a schedule SIGKILLs workers and NATS nodes (each comes back a few seconds later).
// Prints accepted, refused, built, built twice, lost, webhook latency p99 during an election and
// outside one, and pickup latency p99 (queued → a worker started it).
// Targets (issue 13): 0 refused, 0 lost, 0 built twice; webhook p99 ≤ 9 s in an election, ≤ 50 ms outside.
// Bounded: CHAOS_WEBHOOKS (default 48) over about 30 s, then at most 5 minutes for the builds.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGitServer } from '../test/helpers/git-http-server.mjs';
import { startNatsCluster } from '../test/helpers/nats-cluster.mjs';
import { freePort, ms, percentile } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(root, 'bin/oci-build.js');
const SECRET = 'chaos-webhook-secret';
const TOKEN = 'chaos-api-token-0123456789';
const SENDERS = 8;
const WEBHOOKS = Number(process.env.CHAOS_WEBHOOKS ?? 48);
/** An election window: from a node's SIGKILL until this long after it (nats-server's raft timeout is 4–9 s). */
const ELECTION_MS = 10_000;

const sleep = (msValue) => new Promise((r) => setTimeout(r, msValue));

function git(dir, args) {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', '-c', 'user.name=bench', '-c', 'user.email=bench@example.com', ...args], { cwd: dir, encoding: 'utf8' }).trim();
}

function daemon(label, args, env) {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const d = { label, args, env, child, output: '' };
  const capture = (c) => {
    c.stdout.on('data', (b) => (d.output += b));
    c.stderr.on('data', (b) => (d.output += b));
  };
  capture(child);
  const signal = (name) => new Promise((r) => (d.child.exitCode !== null || d.child.signalCode !== null ? r() : (d.child.once('exit', r), d.child.kill(name))));
  d.kill = () => signal('SIGKILL');
  d.restart = () => {
    d.child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    capture(d.child);
  };
  d.stop = () => signal('SIGTERM');
  return d;
}

export async function run() {
  const dir = mkdtempSync(join(tmpdir(), 'oci-build-chaos-'));
  const cluster = await startNatsCluster();
  const gitServer = await startGitServer();
  const daemons = [];
  try {
    const repoDir = join(dir, 'repo');
    cpSync(join(root, 'fixtures/sample-go-repo'), repoDir, { recursive: true });
    git(repoDir, ['init', '-q']);
    git(repoDir, ['add', '-A']);
    git(repoDir, ['commit', '-qm', 'chaos']);
    const commit = git(repoDir, ['rev-parse', 'HEAD']);
    const served = await gitServer.addRepo('acme/chaos', repoDir);
    const branches = Array.from({ length: WEBHOOKS }, (_, i) => `chaos-${i}`);
    for (const b of branches) git(served, ['branch', '-f', b, commit]);

    const base = {
      OCI_BUILD_WORK_DIR: join(dir, 'work'),
      OCI_BUILD_IMAGE_ROOT: join(dir, 'storage'),
      OCI_BUILD_IMAGE_RUN_ROOT: join(dir, 'run'),
      OCI_BUILD_IMAGE_STORAGE_DRIVER: 'vfs',
      OCI_BUILD_IMAGE_ISOLATION: 'chroot',
      OCI_BUILD_NATS_SERVERS: cluster.urls.join(','),
      OCI_BUILD_NATS_REPLICAS: '3',
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_API_TOKENS: TOKEN,
      OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
      OCI_BUILD_SERVER_QUEUE_WAIT: '9s',
      OCI_BUILD_WORKER_CONCURRENCY: '2',
    };
    const serveUrls = [];
    for (const name of ['serve-a', 'serve-b']) {
      const port = await freePort();
      serveUrls.push(`http://127.0.0.1:${port}`);
      daemons.push(daemon(name, ['serve'], { ...base, OCI_BUILD_SERVER_PORT: String(port) }));
    }
    for (let waited = 0; ; waited += 250) {
      const ok = await Promise.all(serveUrls.map((u) => fetch(`${u}/health`).then((r) => r.ok, () => false)));
      if (ok.every(Boolean)) break;
      if (waited > 60_000) throw new Error('serve did not come up');
      await sleep(250);
    }
    const workers = ['worker-1', 'worker-2', 'worker-3'].map((name) => daemon(name, ['worker'], { ...base, OCI_BUILD_WORKER_NAME: name }));
    daemons.push(...workers);
    await sleep(3000);

    // The schedule: what dies when (ms after the first webhook) and when it comes back.
    const kills = [];
    const schedule = [
      { at: 3_000, what: 'worker-1', down: 5_000 },
      { at: 6_000, what: 'stream leader', down: 10_000 },
      { at: 14_000, what: 'worker-2', down: 4_000 },
      { at: 20_000, what: 'consumer leader', down: 8_000 },
    ];
    const t0 = Date.now();
    const chaos = (async () => {
      for (const step of schedule) {
        await sleep(Math.max(0, t0 + step.at - Date.now()));
        if (step.what.startsWith('worker')) {
          const w = workers.find((x) => x.label === step.what);
          await w.kill();
          kills.push({ what: step.what, at: Date.now() });
          setTimeout(() => w.restart(), step.down);
        } else {
          const leader = step.what === 'stream leader' ? await cluster.leaderOf('OCI_BUILD_JOBS') : await cluster.leaderOf('OCI_BUILD_JOBS', 'oci-build-worker');
          if (!leader) continue;
          const node = cluster.node(leader);
          await node.kill();
          kills.push({ what: `${step.what} (${leader})`, at: Date.now(), nats: true });
          setTimeout(() => void node.start(), step.down);
        }
      }
    })();

    const answers = [];
    let next = 0;
    const interval = 30_000 / (WEBHOOKS / SENDERS);
    await Promise.all(
      Array.from({ length: SENDERS }, async (_, s) => {
        for (let k = 0; ; k++) {
          const i = next++;
          if (i >= WEBHOOKS) return;
          await sleep(Math.max(0, t0 + k * interval + s * (interval / SENDERS) - Date.now()));
          answers.push(await sendPush(serveUrls[i % serveUrls.length], gitServer, branches[i], commit));
        }
      }),
    );
    await chaos;
    await sleep(12_000); // every node and worker back
    for (const node of cluster.nodes) await node.start();
    for (const w of workers) if (w.child.exitCode !== null || w.child.signalCode !== null) w.restart();

    const accepted = answers.filter((a) => a.status === 202);
    const refused = answers.length - accepted.length;
    const records = new Map();
    const deadline = Date.now() + 300_000;
    while (records.size < accepted.length && Date.now() < deadline) {
      for (const a of accepted) {
        if (records.has(a.jobId)) continue;
        const r = await fetch(`${serveUrls[0]}/builds/${a.jobId}`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((x) => (x.ok ? x.json() : undefined), () => undefined);
        if (r && ['succeeded', 'failed', 'cancelled', 'skipped'].includes(r.status)) records.set(a.jobId, r);
      }
      await sleep(1000);
    }
    await sleep(2000); // the last log lines
    const finished = new Map();
    for (const w of workers) {
      for (const line of w.output.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const entry = JSON.parse(line);
          if (entry.msg === 'job finished' && entry.jobId) finished.set(entry.jobId, (finished.get(entry.jobId) ?? 0) + 1);
        } catch {
          // not a log line
        }
      }
    }
    const built = [...records.values()].filter((r) => r.status === 'succeeded').length;
    const twice = [...finished.values()].filter((n) => n > 1).length;
    const lost = accepted.length - records.size;
    const inElection = (a) => kills.some((k) => k.nats && a.sentAt < k.at + ELECTION_MS && a.sentAt + a.ms > k.at);
    const during = answers.filter(inElection).map((a) => a.ms);
    const outside = answers.filter((a) => !inElection(a)).map((a) => a.ms);
    const pickups = [...records.values()].filter((r) => r.startedAt).map((r) => Date.parse(r.startedAt) - Date.parse(r.createdAt));
    const p99During = during.length ? percentile(during, 99) : 0;
    const p99Outside = outside.length ? percentile(outside, 99) : 0;
    const ok = refused === 0 && lost === 0 && twice === 0 && built === accepted.length && p99During <= 9_000 && p99Outside <= 50;
    return {
      name: 'chaos',
      ok,
      lines: [
        `schedule: ${kills.map((k) => `${((k.at - t0) / 1000).toFixed(1)} s SIGKILL ${k.what}`).join(', ')}`,
        `webhooks ${answers.length}: accepted ${accepted.length}, refused ${refused}; built ${built}, built twice ${twice}, lost ${lost}, other final ${records.size - built}`,
        `webhook latency p99: ${ms(p99During)} during an election (${during.length} webhooks; target ≤ 9 s), ${ms(p99Outside)} outside one (${outside.length}; target ≤ 50 ms)`,
        `pickup latency p99 (queued → started, worker deaths and redeliveries included): ${ms(pickups.length ? percentile(pickups, 99) : 0)}`,
      ],
    };
  } finally {
    for (const d of daemons) await Promise.race([d.stop(), sleep(15_000)]);
    for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    await cluster.stop();
    await gitServer.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

const PUSH = JSON.parse(readFileSync(join(root, 'test/fixtures/github/push.json'), 'utf8'));

async function sendPush(serveUrl, gitServer, branch, commit) {
  const payload = structuredClone(PUSH);
  payload.ref = `refs/heads/${branch}`;
  payload.before = '0'.repeat(40);
  payload.after = commit;
  payload.repository.name = 'chaos';
  payload.repository.full_name = 'acme/chaos';
  payload.repository.clone_url = gitServer.url('acme/chaos');
  payload.repository.html_url = `http://127.0.0.1:${gitServer.port}/acme/chaos`;
  payload.head_commit.id = commit;
  const body = JSON.stringify(payload);
  const sentAt = Date.now();
  try {
    const res = await fetch(`${serveUrl}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
      },
      body,
    });
    const answer = await res.json().catch(() => ({}));
    return { status: res.status, jobId: answer.jobId, sentAt, ms: Date.now() - sentAt };
  } catch (err) {
    return { status: 0, error: String(err), sentAt, ms: Date.now() - sentAt };
  }
}
