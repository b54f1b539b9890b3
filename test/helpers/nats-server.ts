// A real nats-server with JetStream for a test suite: free loopback port, temp store directory
// (`{ jetstream: false }`: one without it, as a misconfigured deployment would run).
// restart() stops and starts it on the same port and store (fault tests: nothing accepted is lost).

import { spawn, type ChildProcess } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { freePort, waitFor } from './ports.js';
import { tempDir, type TempDir } from './fixtures.js';

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  stop(): Promise<void>;
  /** Stops the server (SIGTERM) and leaves it down until start() is called. */
  kill(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** SIGSTOP: the process keeps its sockets open and answers nothing until resume() (SIGCONT). */
  pause(): void;
  resume(): void;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolveOpen) => {
    const socket = netConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolveOpen(true);
    });
    socket.once('error', () => resolveOpen(false));
  });
}

export async function startNatsServer(options: { jetstream?: boolean } = {}): Promise<NatsServer> {
  const port = await freePort();
  const store: TempDir = await tempDir('oci-build-nats-');
  let child: ChildProcess | undefined;

  const start = async () => {
    const jetstream = options.jetstream === false ? [] : ['-js', '-sd', store.path];
    child = spawn('nats-server', [...jetstream, '-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    child.on('error', (err) => {
      throw new Error(`cannot start nats-server (apt-get install -y nats-server): ${err.message}`);
    });
    await waitFor(() => portOpen(port), { what: `nats-server on port ${port}`, timeoutMs: 20_000 });
  };
  const kill = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolveExit) => {
      running.once('exit', () => resolveExit());
      running.kill('SIGTERM');
    });
    await waitFor(async () => !(await portOpen(port)), { what: 'nats-server to stop' });
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: store.path,
    start,
    kill,
    pause: () => {
      child?.kill('SIGSTOP');
    },
    resume: () => {
      child?.kill('SIGCONT');
    },
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      child?.kill('SIGCONT');
      await kill();
      await store.cleanup();
    },
  };
}
