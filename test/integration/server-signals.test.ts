// `oci-build serve` and its signals (exec/shutdown-signals.ts, the handler every long-running
// command shares): the first SIGTERM/SIGINT drains and ends with exit code 0 once the requests in
// progress are answered; a second one while it drains ends the process at once (Node's default).
// A real serve process (the built CLI) and a real nats-server.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { CLI } from '../helpers/cli.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';

let nats: NatsServer;
let work: TempDir;
const started: ChildProcess[] = [];

interface Serve {
  child: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startServe(): Promise<Serve> {
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      OCI_BUILD_NATS_URL: nats.url,
      OCI_BUILD_WORK_DIR: join(work.path, 'work'),
      OCI_BUILD_SERVER_WEBHOOK_SECRET: 'signals-test-webhook-secret',
      OCI_BUILD_SERVER_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' });
  } catch (err) {
    throw new Error(`${(err as Error).message}; serve (exit ${child.exitCode ?? child.signalCode}) said:\n${output.slice(-4000)}`);
  }
  return { child, port, output: () => output, exited };
}

/** A webhook whose body is half sent: a request in progress for as long as the socket stays open. */
function requestInProgress(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      socket.write(
        `POST /webhooks/github HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-github-event: push\r\n` +
          `x-github-delivery: ${randomUUID()}\r\nx-hub-signature-256: sha256=${'0'.repeat(64)}\r\ncontent-length: 1000\r\n\r\n{"ref":`,
      );
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

const states = (output: string) =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; to?: string })
    .filter((l) => l.msg?.startsWith('serve ') && l.to !== undefined)
    .map((l) => l.to);

beforeAll(async () => {
  nats = await startNatsServer();
  work = await tempDir('oci-build-serve-signals-');
}, 60_000);

afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await nats?.stop();
  await work?.cleanup();
});

describe('serve and its signals', () => {
  it('SIGTERM drains: exit code 0, the states logged in order', async () => {
    const serve = await startServe();
    serve.child.kill('SIGTERM');
    const exit = await serve.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(serve.output()).toMatch(/"signal":"SIGTERM".*"msg":"shutting down"/);
    expect(states(serve.output())).toEqual(['RUNNING', 'DRAINING', 'STOPPED']);
  });

  it('a second SIGINT while a request keeps it draining ends the process at once', async () => {
    const serve = await startServe();
    const socket = await requestInProgress(serve.port);
    // Let serve read the head: the request is in progress from here on.
    await new Promise((r) => setTimeout(r, 200));
    serve.child.kill('SIGINT');
    // Draining: the half-sent request holds it (up to the 10 s grace).
    const stillDraining = await Promise.race([serve.exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 1000))]);
    expect(stillDraining).toBe(true);
    expect(states(serve.output())).toEqual(['RUNNING', 'DRAINING']);
    const second = Date.now();
    serve.child.kill('SIGINT');
    const exit = await serve.exited;
    expect(Date.now() - second).toBeLessThan(2000);
    expect(exit).toEqual({ code: null, signal: 'SIGINT' });
    socket.destroy();
  });
});
