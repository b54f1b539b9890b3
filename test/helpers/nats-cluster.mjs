// A real 3-node JetStream cluster on free loopback ports for fault tests: one config file, store
// directory and monitoring port per node (unique server_name, cluster routes to the others). Any
// node can be SIGKILLed and started again on the same ports and store; it catches up from the
// others. `leaderOf` asks a node's monitoring endpoint who leads a stream (and its consumers).

// Plain JavaScript (types in nats-cluster.d.mts) so that the chaos benchmark can use it too.

import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A free loopback port below the ephemeral range (32768–60999 here): a node is started again on its
 * ports seconds or minutes after they were chosen, and a port of the ephemeral range may meanwhile
 * be the source port of any outgoing connection on the machine (a CI run lost a node's start so:
 * nats-server could not bind, and its client port never opened). Below that range only an explicit
 * bind takes a port. `taken`: the ports this cluster already chose.
 */
function stablePort(taken) {
  return new Promise((resolvePort) => {
    const tryPort = () => {
      const port = 20_000 + Math.floor(Math.random() * 12_000);
      if (taken.has(port)) return tryPort();
      const server = createServer();
      server.unref();
      server.once('error', () => tryPort());
      server.listen(port, '127.0.0.1', () => {
        taken.add(port);
        server.close(() => resolvePort(port));
      });
    };
    tryPort();
  });
}

async function waitFor(check, { timeoutMs = 15_000, intervalMs = 50, what = 'a condition', failFast = false } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      // not ready yet; `failFast`: a thrown error is the answer
      if (failFast) throw err;
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function portOpen(port) {
  return new Promise((resolveOpen) => {
    const socket = netConnect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolveOpen(true);
    });
    socket.once('error', () => resolveOpen(false));
  });
}

/**
 * `running`: how many nodes are started (the first ones; default all). With fewer than a majority
 * the cluster has no JetStream meta leader, so this returns without waiting for one; start the
 * others with `node(name).start()`.
 * @param {{ size?: number, name?: string, running?: number }} [options]
 */
export async function startNatsCluster(options = {}) {
  const size = options.size ?? 3;
  const running = options.running ?? size;
  const clusterName = options.name ?? 'oci-build-test';
  const root = { path: await mkdtemp(join(tmpdir(), 'oci-build-nats-cluster-')) };
  const taken = new Set();
  const ports = [];
  for (let i = 0; i < size; i++) ports.push({ port: await stablePort(taken), clusterPort: await stablePort(taken), monitorPort: await stablePort(taken) });
  const nodes = [];
  for (const [i, p] of ports.entries()) {
    const name = `n${i + 1}`;
    const storeDir = join(root.path, name);
    const configFile = join(root.path, `${name}.conf`);
    const routes = ports.filter((_, j) => j !== i).map((o) => `nats-route://127.0.0.1:${o.clusterPort}`);
    await writeFile(
      configFile,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${p.port}`,
        `http: 127.0.0.1:${p.monitorPort}`,
        `jetstream { store_dir: "${storeDir}" }`,
        `cluster {`,
        `  name: ${clusterName}`,
        `  listen: 127.0.0.1:${p.clusterPort}`,
        `  routes: [${routes.map((r) => `"${r}"`).join(', ')}]`,
        `}`,
        '',
      ].join('\n'),
    );
    let child;
    nodes.push({
      name,
      ...p,
      url: `nats://127.0.0.1:${p.port}`,
      storeDir,
      running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
      start: async () => {
        if (child && child.exitCode === null && child.signalCode === null) return;
        const started = spawn('nats-server', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
        child = started;
        let output = '';
        started.stderr.on('data', (d) => (output = (output + d.toString()).slice(-4_000)));
        started.on('error', (err) => {
          throw new Error(`cannot start nats-server (apt-get install -y nats-server): ${err.message}`);
        });
        await waitFor(
          async () => {
            if (started.exitCode !== null || started.signalCode !== null) throw new Error(`nats-server ${name} exited (${started.exitCode ?? started.signalCode}) before listening:\n${output}`);
            return portOpen(p.port);
          },
          { what: `nats-server ${name} on port ${p.port}`, timeoutMs: 20_000, failFast: true },
        ).catch((err) => {
          throw new Error(`${err.message}${output && !err.message.includes(output) ? `\n${output}` : ''}`);
        });
      },
      kill: async () => {
        const running = child;
        child = undefined;
        if (!running || running.exitCode !== null || running.signalCode !== null) return;
        await new Promise((resolveExit) => {
          running.once('exit', () => resolveExit());
          running.kill('SIGKILL');
        });
        await waitFor(async () => !(await portOpen(p.port)), { what: `nats-server ${name} to stop` });
      },
    });
  }
  const started = nodes.slice(0, running);
  await Promise.all(started.map((n) => n.start()));
  // JetStream is usable once the meta group has a leader: /healthz?js-enabled-only answers 200 on
  // every node before that, so ask for the meta leader through /jsz.
  if (running > size / 2) {
    await waitFor(
      async () => {
        const answers = await Promise.all(started.map((n) => fetch(`http://127.0.0.1:${n.monitorPort}/jsz`).then((r) => r.json())));
        return answers.every((a) => Boolean(a.meta_cluster?.leader));
      },
      { what: 'the JetStream meta leader', timeoutMs: 30_000, intervalMs: 200 },
    );
  }

  const byName = (name) => {
    const found = nodes.find((n) => n.name === name);
    if (!found) throw new Error(`no cluster node named ${name}`);
    return found;
  };
  const leaderOf = async (stream, consumer) => {
    for (const n of nodes.filter((x) => x.running())) {
      try {
        const res = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz?streams=true&consumers=true&config=false`);
        const jsz = await res.json();
        for (const account of jsz.account_details ?? []) {
          for (const s of account.stream_detail ?? []) {
            if (s.name !== stream) continue;
            const leader = consumer ? s.consumer_detail?.find((c) => c.name === consumer)?.cluster?.leader : s.cluster?.leader;
            if (leader) return leader;
          }
        }
      } catch {
        // that node is not answering: ask the next
      }
    }
    return undefined;
  };
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    node: byName,
    leaderOf,
    waitForLeader: async (stream, consumer) => {
      let leader;
      await waitFor(
        async () => {
          leader = await leaderOf(stream, consumer);
          return leader !== undefined && byName(leader).running();
        },
        { what: `a leader for ${stream}${consumer ? `/${consumer}` : ''}`, timeoutMs: 30_000, intervalMs: 200 },
      );
      return leader;
    },
    stop: async () => {
      await Promise.all(nodes.map((n) => n.kill()));
      await rm(root.path, { recursive: true, force: true });
    },
  };
}
