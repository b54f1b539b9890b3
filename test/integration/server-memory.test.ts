// Issue 15, finding 5: serve's memory under bodies that will never verify. A real `oci-build serve`
// process (the built CLI) with a real nats-server; 100 real sockets each send a 25 MB body with a
// well-formed but wrong signature, 1 MB at a time, all in flight together. serve's RSS is read from
// /proc/<pid>/status while they are held; /health and a valid webhook must still be answered, and
// the memory must come back when they close. The malformed header is refused before the body.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { CLI } from '../helpers/cli.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';

const SECRET = 'memory-test-webhook-secret';
const PUSH = readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8');
const MB = 1024 * 1024;
const BODY_BYTES = 25 * MB;
const SOCKETS = 100;
const WRONG_SIGNATURE = `sha256=${'0'.repeat(64)}`;

let nats: NatsServer;
let work: TempDir;
let serve: ChildProcess;
let port: number;
let output = '';

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
  return kb / 1024;
}

interface HeldSocket {
  socket: Socket;
  response: string;
  answered: Promise<string>;
  closed: Promise<void>;
}

/** A raw socket that has sent the request head of a POST /webhooks/github of `length` bytes. */
function openWebhook(signature: string, length: number): Promise<HeldSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const held = { socket, response: '' } as HeldSocket;
    held.answered = new Promise((answered) => {
      socket.on('data', (d: Buffer) => {
        held.response += d.toString('latin1');
        if (held.response.includes('\r\n\r\n')) answered(held.response);
      });
    });
    held.closed = new Promise((closed) => socket.once('close', () => closed()));
    // The server may close while we still write (a refused request): that is expected here.
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      socket.write(
        `POST /webhooks/github HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-github-event: push\r\n` +
          `x-github-delivery: ${randomUUID()}\r\nx-hub-signature-256: ${signature}\r\ncontent-length: ${length}\r\n\r\n`,
      );
      resolve(held);
    });
    socket.once('error', reject);
  });
}

function writeChunk(socket: Socket, chunk: Buffer): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    if (socket.write(chunk)) resolve();
    else {
      const done = () => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.once('drain', done);
      socket.once('close', done);
    }
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

beforeAll(async () => {
  nats = await startNatsServer();
  work = await tempDir('oci-build-memory-');
  port = await freePort();
  serve = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      OCI_BUILD_NATS_URL: nats.url,
      OCI_BUILD_WORK_DIR: join(work.path, 'work'),
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_API_TOKENS: 'memory-test-api-token-0123456789',
      OCI_BUILD_SERVER_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  serve.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  serve.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' });
}, 60_000);

afterAll(async () => {
  if (serve && serve.exitCode === null) {
    const exited = new Promise((r) => serve.once('exit', r));
    serve.kill('SIGTERM');
    await exited;
  }
  await nats?.stop();
  await work?.cleanup();
});

describe('serve memory under bodies that will not verify', () => {
  it('a malformed signature header is 401 before the body is read (the answer comes while the client still sends)', async () => {
    const held = await openWebhook('sha256=00', BODY_BYTES);
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    let answer: string | undefined;
    void held.answered.then((a) => (answer = a));
    while (answer === undefined && sent < BODY_BYTES && !held.socket.destroyed) {
      await writeChunk(held.socket, chunk);
      sent += chunk.length;
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.race([held.answered, held.closed]);
    held.socket.destroy();
    expect(statusOf(held.response)).toBe(401);
    expect(held.response.toLowerCase()).toContain('connection: close');
    // Answered long before the 25 MB were sent (64 KB every 5 ms would take 2 s to send it).
    expect(sent).toBeLessThan(BODY_BYTES / 4);
  });

  it(`${SOCKETS} sockets holding 25 MB bad-signature bodies: RSS stays under 300 MB, /health and a valid webhook are answered, RSS comes back`, async () => {
    const pid = serve.pid!;
    const baseline = rssMb(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 50);
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, () => openWebhook(WRONG_SIGNATURE, BODY_BYTES)));
    const chunk = Buffer.alloc(MB, 0x20);
    const probes: Array<{ what: string; status: number; ms: number; during: boolean }> = [];
    let sending = true;
    const probe = async (what: string, call: () => Promise<Response>) => {
      const started = performance.now();
      const res = await call();
      await res.arrayBuffer();
      probes.push({ what, status: res.status, ms: Math.round(performance.now() - started), during: sending });
    };
    try {
      for (let mb = 0; mb < BODY_BYTES / MB; mb++) {
        // Every socket moves on by 1 MB before any goes further: all 100 bodies are in flight together.
        await Promise.all(sockets.map((s) => writeChunk(s.socket, chunk)));
        if (mb === 5 || mb === 15) {
          const body = PUSH.replace(/"after": "[0-9a-f]{40}"/, `"after": "${randomUUID().replace(/-/g, '').padEnd(40, '0').slice(0, 40)}"`);
          await Promise.all([
            probe('health', () => fetch(`http://127.0.0.1:${port}/health`)),
            probe('webhook', () =>
              fetch(`http://127.0.0.1:${port}/webhooks/github`, {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signWebhookBody(SECRET, body) },
                body,
              }),
            ),
          ]);
        }
      }
      sending = false;
      const answers = await Promise.all(sockets.map((s) => Promise.race([s.answered, s.closed.then(() => s.response)])));
      expect(answers.map(statusOf)).toEqual(Array(SOCKETS).fill(401));
    } finally {
      clearInterval(sampler);
      for (const s of sockets) s.socket.destroy();
    }
    console.log(`serve RSS: baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB; ${probes.map((p) => `${p.what} ${p.status} in ${p.ms} ms`).join(', ')}`);
    expect(peak).toBeLessThan(300);
    // Answered while the bodies were in flight (timing is the bench's to show, not asserted here).
    expect(probes.map((p) => `${p.what} ${p.status} ${p.during ? 'during' : 'after'}`).sort()).toEqual([
      'health 200 during',
      'health 200 during',
      'webhook 202 during',
      'webhook 202 during',
    ]);
    // Back near the baseline once they are gone. Not all the way: glibc keeps part of the heap the
    // 64 KB socket reads grew (measured: baseline + 90–125 MB; with MALLOC_MMAP_THRESHOLD_=65536
    // it went back to baseline + 25 MB, at a cost in latency), which later bursts reuse.
    await waitFor(() => rssMb(pid) < baseline + 150, { timeoutMs: 30_000, intervalMs: 250, what: `serve's RSS to come back near ${baseline.toFixed(0)} MB (now ${rssMb(pid).toFixed(0)} MB)` });
  }, 240_000);
});
