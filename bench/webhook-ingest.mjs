// webhook-ingest: signed, real-size GitHub push payloads (~9 KB) at 32 keep-alive connections
// against `serve` (dist/server) and, in the same run, against a bare node:http receiver that does
// the same HMAC check and the same awaited JetStream publish (and nothing else).
// Each receiver runs in its own worker thread (its own event loop, as in its own process); the load
// generator runs here. Rounds alternate bare / serve so drift on the machine hits both alike.
// Targets: serve ≥ 0.8× the bare throughput, serve p99 ≤ 50 ms, no errors.
// Then the memory attack of issue 15: `oci-build serve` as its own process (bin/oci-build.js, with
// rss-probe.mjs preloaded for its peak RSS), 100 sockets sending 25 MB bodies with a well-formed but
// wrong signature, 1 MB at a time, all in flight together. Printed: serve's peak RSS (target
// < 300 MB), the latency of /health and of a valid webhook meanwhile (target ≤ 1 s), and serve's RSS
// once the sockets have closed.
// Tunables: BENCH_CONNECTIONS (32), BENCH_ROUNDS (12), BENCH_ROUND_MS (2000), BENCH_WARMUP_MS (2000),
// BENCH_ATTACK_SOCKETS (100).

import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { freePort, median, percentile, ms, startNats } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECRET = 'bench-webhook-secret';
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 12);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 2000);
const ATTACK_SOCKETS = Number(process.env.BENCH_ATTACK_SOCKETS ?? 100);
const ATTACK_BODY = 25 * 1024 * 1024;
const dist = (path) => pathToFileURL(join(root, 'dist', path)).href;

// ---------------------------------------------------------------- receivers (worker threads)

async function bareReceiver({ natsConfig }) {
  const { createServer } = await import('node:http');
  const { timingSafeEqual } = await import('node:crypto');
  const { connectNats } = await import(dist('queue/nats.js'));
  const ctx = await connectNats(natsConfig, { name: 'bench-bare' });
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const header = String(req.headers['x-hub-signature-256'] ?? '');
      const received = Buffer.from(header.slice(7), 'hex');
      const expected = createHmac('sha256', SECRET).update(body).digest();
      if (received.length !== expected.length || !timingSafeEqual(received, expected)) {
        res.writeHead(401).end();
        return;
      }
      try {
        await ctx.js.publish(natsConfig.subject, body, { msgID: String(req.headers['x-github-delivery']) });
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"status":"queued"}');
      } catch {
        res.writeHead(503).end();
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, close: async () => { server.close(); await ctx.nc.drain(); } };
}

async function serveReceiver({ natsConfig, logFile }) {
  const { parseConfig } = await import(dist('config/config.js'));
  const { startServer } = await import(dist('server/http-server.js'));
  const { createLogger, daemonDestination } = await import(dist('log/logger.js'));
  const config = parseConfig({
    env: {
      OCI_BUILD_NATS_URL: natsConfig.url,
      OCI_BUILD_NATS_STREAM: natsConfig.stream,
      OCI_BUILD_NATS_SUBJECT: natsConfig.subject,
      OCI_BUILD_NATS_STATUS_BUCKET: natsConfig.statusBucket,
      OCI_BUILD_NATS_LOG_STREAM: natsConfig.logStream,
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_PORT: '0',
    },
    home: tmpdir(),
  });
  // Every request is logged as in production (daemonDestination), to a file instead of stdout.
  const destination = daemonDestination(logFile);
  const server = await startServer({ config, logger: createLogger({ destination }) });
  return { port: server.port, close: () => server.close() };
}

if (!isMainThread && workerData?.role) {
  const receiver = workerData.role === 'bare' ? await bareReceiver(workerData) : await serveReceiver(workerData);
  parentPort.postMessage({ port: receiver.port });
  parentPort.on('message', async (msg) => {
    if (msg === 'elu') parentPort.postMessage({ elu: performance.eventLoopUtilization() });
    if (msg === 'close') {
      await receiver.close();
      parentPort.postMessage('closed');
    }
  });
}

function startReceiver(role, data) {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role, ...data } });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', ({ port }) =>
      resolve({
        port,
        /** Busy time of the receiver's event loop so far, in ms (its CPU cost, whatever the machine's load). */
        busyMs: () =>
          new Promise((done) => {
            worker.once('message', ({ elu }) => done(elu.active));
            worker.postMessage('elu');
          }),
        close: () =>
          new Promise((done) => {
            worker.once('message', () => worker.terminate().then(() => done()));
            worker.postMessage('close');
          }),
      }),
    );
  });
}

// ---------------------------------------------------------------- load generator

/**
 * Every request is a push of its own (its own `after` and `before`, and its own delivery id), signed
 * when it is sent: serve answers the same push under another delivery id as a replay (200
 * `duplicate push`, from the push claim alone), and a figure made of those would measure nothing.
 * The body is a template of the real ~9 KB payload with the two SHAs cut out, so making one costs
 * two hashes and a concatenation, not a JSON.stringify.
 */
function payloads() {
  const push = JSON.parse(readFileSync(join(root, 'test/fixtures/github/push.json'), 'utf8'));
  const AFTER = '<after>';
  const BEFORE = '<before>';
  const template = JSON.stringify({ ...push, before: BEFORE, after: AFTER, head_commit: { ...push.head_commit, id: AFTER } });
  const parts = template.split(/(<after>|<before>)/);
  const run = randomUUID();
  let sent = 0;
  const next = () => {
    const n = sent++;
    const after = createHmac('sha1', run).update(`after ${n}`).digest('hex');
    const before = createHmac('sha1', run).update(`before ${n}`).digest('hex');
    const body = Buffer.from(parts.map((part) => (part === AFTER ? after : part === BEFORE ? before : part)).join(''));
    return { body, signature: `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}` };
  };
  return { next, size: next().body.length };
}

function post(agent, port, payload) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const req = request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/webhooks/github',
        headers: {
          'content-type': 'application/json',
          'content-length': payload.body.length,
          'x-github-event': 'push',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': payload.signature,
          'user-agent': 'GitHub-Hookshot/bench',
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: res.statusCode === 202, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
      },
    );
    req.on('error', () => resolve({ ok: false, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    req.end(payload.body);
  });
}

async function load(port, durationMs, bodies) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const latencies = [];
  let errors = 0;
  const until = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < until) {
        const result = await post(agent, port, bodies.next());
        latencies.push(result.ms);
        if (!result.ok) errors++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  agent.destroy();
  return { requests: latencies.length, rps: (latencies.length / elapsed) * 1000, latencies, errors };
}

// ---------------------------------------------------------------- memory attack

function vmRssMb(pid) {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/** `oci-build serve` in its own process under ATTACK_SOCKETS × 25 MB bad-signature bodies. */
async function memoryAttack(natsUrl, temp, bodies) {
  const port = await freePort();
  const rssFile = join(temp, 'serve-rss');
  const child = spawn(process.execPath, ['--import', pathToFileURL(join(root, 'bench/rss-probe.mjs')).href, join(root, 'bin/oci-build.js'), 'serve'], {
    env: {
      ...process.env,
      OCI_BUILD_NATS_URL: natsUrl,
      OCI_BUILD_NATS_STREAM: 'BENCH_ATTACK_JOBS',
      OCI_BUILD_NATS_SUBJECT: 'bench.attack',
      OCI_BUILD_NATS_STATUS_BUCKET: 'bench-attack-status',
      // The receivers' log stream: two streams may not share its subjects.
      OCI_BUILD_NATS_LOG_STREAM: 'BENCH_LOGS',
      OCI_BUILD_WORK_DIR: join(temp, 'work'),
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_PORT: String(port),
      OCI_BUILD_BENCH_RSS_FILE: rssFile,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  const base = `http://127.0.0.1:${port}`;
  try {
    for (const deadline = Date.now() + 30_000; ; ) {
      if ((await fetch(`${base}/health`).catch(() => undefined))?.ok) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`oci-build serve did not start (npm run build?): ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = vmRssMb(child.pid);
    let sampled = baseline;
    const sampler = setInterval(() => (sampled = Math.max(sampled, vmRssMb(child.pid))), 50);
    const sockets = await Promise.all(
      Array.from({ length: ATTACK_SOCKETS }, () =>
        new Promise((resolve, reject) => {
          const socket = connect(port, '127.0.0.1', () => {
            socket.write(
              `POST /webhooks/github HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nx-github-event: push\r\nx-github-delivery: ${randomUUID()}\r\n` +
                `x-hub-signature-256: sha256=${'0'.repeat(64)}\r\ncontent-length: ${ATTACK_BODY}\r\n\r\n`,
            );
            resolve(socket);
          });
          socket.once('error', reject);
        }),
      ),
    );
    for (const socket of sockets) socket.on('error', () => undefined);
    const answered = sockets.map((socket) => new Promise((resolve) => {
      let text = '';
      socket.on('data', (d) => (text += d.toString('latin1')));
      socket.once('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])));
    }));
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const write = (socket) => new Promise((resolve) => (socket.write(chunk) ? resolve() : socket.once('drain', resolve)));
    const probes = [];
    const timed = async (what, call) => {
      const started = performance.now();
      const res = await call();
      await res.arrayBuffer();
      probes.push({ what, status: res.status, ms: performance.now() - started });
    };
    for (let mb = 0; mb < ATTACK_BODY / chunk.length; mb++) {
      await Promise.all(sockets.map(write));
      if (mb % 5 === 2) {
        const payload = bodies.next();
        await Promise.all([
          timed('health', () => fetch(`${base}/health`)),
          timed('webhook', () =>
            fetch(`${base}/webhooks/github`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': payload.signature },
              body: payload.body,
            }),
          ),
        ]);
      }
    }
    // Every body was sent: each gets its 401, then the client closes.
    await new Promise((r) => setTimeout(r, 500));
    for (const socket of sockets) socket.end();
    const statuses = await Promise.all(answered);
    clearInterval(sampler);
    let after = vmRssMb(child.pid);
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && after > baseline + 50; after = vmRssMb(child.pid)) await new Promise((r) => setTimeout(r, 250));
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const peak = Math.max(sampled, Number(readFileSync(rssFile, 'utf8')) / 1024);
    const worst = (what) => Math.max(...probes.filter((p) => p.what === what).map((p) => p.ms));
    const probesOk = probes.every((p) => p.status === (p.what === 'health' ? 200 : 202));
    return {
      ok: peak < 300 && worst('health') <= 1000 && worst('webhook') <= 1000 && probesOk && statuses.every((s) => s === 401),
      line:
        `memory attack (${ATTACK_SOCKETS} sockets × 25 MB, signature sha256=0…0): serve peak RSS ${peak.toFixed(0)} MB (baseline ${baseline.toFixed(0)} MB; target < 300 MB), ` +
        `after close ${after.toFixed(0)} MB; meanwhile /health worst ${ms(worst('health'))}, valid webhook worst ${ms(worst('webhook'))} (target ≤ 1 s; ${probes.length} probes, ${probesOk ? 'all answered 200/202' : 'SOME FAILED'}); ` +
        `attack answered ${statuses.filter((s) => s === 401).length}/${ATTACK_SOCKETS} × 401`,
    };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------- run

export async function run() {
  const nats = await startNats();
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-bench-ingest-'));
  const base = { logStream: 'BENCH_LOGS' };
  const serveNats = { ...base, url: nats.url, stream: 'BENCH_SERVE_JOBS', subject: 'bench.serve', statusBucket: 'bench-serve-status' };
  const bareNats = { ...base, url: nats.url, stream: 'BENCH_BARE_JOBS', subject: 'bench.bare', statusBucket: 'bench-bare-status' };
  const bodies = payloads();
  const bare = await startReceiver('bare', { natsConfig: bareNats });
  const serve = await startReceiver('serve', { natsConfig: serveNats, logFile: join(temp, 'serve.log') });
  const { connectNats } = await import(dist('queue/nats.js'));
  const inspector = await connectNats(serveNats, { name: 'bench-inspector' });
  const purge = async () => {
    // Work-queue streams keep every job until a worker takes it: empty them between rounds so
    // neither receiver works against a fuller store than the other.
    await inspector.jsm.streams.purge(serveNats.stream);
    await inspector.jsm.streams.purge(bareNats.stream);
    await inspector.jsm.streams.purge(`KV_${serveNats.statusBucket}`);
  };
  try {
    await load(bare.port, WARMUP_MS, bodies);
    await load(serve.port, WARMUP_MS, bodies);
    const results = { bare: [], serve: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, target] of round % 2 === 0 ? [['bare', bare], ['serve', serve]] : [['serve', serve], ['bare', bare]]) {
        await purge();
        const busy = await target.busyMs();
        const result = await load(target.port, ROUND_MS, bodies);
        result.busyMs = (await target.busyMs()) - busy;
        results[name].push(result);
      }
    }
    const summary = (rounds) => {
      const latencies = rounds.flatMap((r) => r.latencies);
      const requests = rounds.reduce((n, r) => n + r.requests, 0);
      return {
        rps: rounds.reduce((n, r) => n + r.rps, 0) / rounds.length,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        errors: rounds.reduce((n, r) => n + r.errors, 0),
        requests,
      };
    };
    const b = summary(results.bare);
    const s = summary(results.serve);
    // Rounds alternate, so each serve round has a bare neighbour run under the same machine load:
    // the ratio is the median of those pairs (other processes on a shared machine move the
    // absolute numbers by ±30 % from one round to the next).
    const ratio = median(results.serve.map((r, i) => r.rps / results.bare[i].rps));
    const busyPerRequest = (rounds) => (rounds.reduce((n, r) => n + r.busyMs, 0) / rounds.reduce((n, r) => n + r.requests, 0)) * 1000;
    const attack = await memoryAttack(nats.url, temp, bodies);
    const ok = ratio >= 0.8 && s.p99 <= 50 && s.errors === 0 && b.errors === 0 && attack.ok;
    return {
      name: 'webhook-ingest',
      ok,
      lines: [
        `${CONNECTIONS} connections, ${ROUNDS} × ${ROUND_MS / 1000} s rounds each, ${bodies.size}-byte push payloads, each a distinct push signed per request`,
        `bare receiver (HMAC + awaited JetStream publish): ${b.rps.toFixed(0)} req/s, p50 ${ms(b.p50)}, p99 ${ms(b.p99)}, errors ${b.errors} of ${b.requests}`,
        `serve (HMAC, parse, validate, KV queued record, publish, log): ${s.rps.toFixed(0)} req/s, p50 ${ms(s.p50)}, p99 ${ms(s.p99)}, errors ${s.errors} of ${s.requests}`,
        `ratio serve/bare ${ratio.toFixed(2)} (median of ${ROUNDS} paired rounds; target ≥ 0.80), serve p99 ${ms(s.p99)} (target ≤ 50 ms), errors ${s.errors + b.errors} (target 0)`,
        `receiver event-loop busy time per request: bare ${busyPerRequest(results.bare).toFixed(0)} µs, serve ${busyPerRequest(results.serve).toFixed(0)} µs (event-loop utilisation × round time; on a loaded machine it also counts time the thread waited for a core)`,
        `per round req/s: bare ${results.bare.map((r) => r.rps.toFixed(0)).join(', ')}; serve ${results.serve.map((r) => r.rps.toFixed(0)).join(', ')}`,
        attack.line,
      ],
    };
  } finally {
    await inspector.nc.drain().catch(() => undefined);
    await serve.close();
    await bare.close();
    await nats.stop();
    rmSync(temp, { recursive: true, force: true });
  }
}

if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await run();
  console.log(result.lines.join('\n'));
  console.log(result.ok ? 'target met' : 'TARGET MISSED');
}
