// The 3-node cluster helper itself: an R3 stream survives its leader's SIGKILL (a new leader is
// elected among the other two, the messages are all there) and the killed node catches up.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, StorageType, type NatsConnection } from 'nats';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.mjs';

let cluster: NatsCluster;
let nc: NatsConnection;

beforeAll(async () => {
  cluster = await startNatsCluster();
  nc = await connect({ servers: cluster.urls, reconnectTimeWait: 100 });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

describe('startNatsCluster', () => {
  it('elects a new stream leader after a SIGKILL and the restarted node catches up', async () => {
    const jsm = await nc.jetstreamManager();
    // Adding the same stream again answers with it, so a request that timed out is simply asked again.
    await expect
      .poll(async () => (await jsm.streams.add({ name: 'T', subjects: ['t.>'], num_replicas: 3, storage: StorageType.File })).config.name, { timeout: 30_000, interval: 250 })
      .toBe('T');
    const js = nc.jetstream();
    for (let i = 0; i < 5; i++) await js.publish('t.a', `m${i}`);
    const first = await cluster.waitForLeader('T');
    await cluster.node(first).kill();
    const second = await cluster.waitForLeader('T');
    expect(second).not.toBe(first);
    // Publishes land again once the new leader is in place (nats.js needs a retry or two).
    let landed = false;
    for (let attempt = 0; attempt < 50 && !landed; attempt++) {
      try {
        await js.publish('t.a', 'after', { timeout: 1000 });
        landed = true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(landed).toBe(true);
    // Every request below is retried until it answers: right after a leader change a JetStream API
    // request can go unanswered for its whole 5 s timeout (CI saw one), which is the cluster
    // settling, not the property under test.
    await expect.poll(async () => (await jsm.streams.info('T')).state.messages, { timeout: 30_000, interval: 250 }).toBe(6);
    await cluster.node(first).start();
    // Asked of the cluster through the connection that lived through the kill, not of the restarted
    // node: until its routes are up that node has no meta leader to answer a JetStream request.
    await expect
      .poll(
        async () => {
          const replicas = (await jsm.streams.info('T')).cluster?.replicas ?? [];
          return replicas.some((r) => r.name === first) && replicas.every((r) => r.current);
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(true);
  }, 120_000);
});

describe('startNatsCluster ports', () => {
  it('are below the ephemeral range (a node started again later finds them free), and a node that cannot bind says why at once', async () => {
    const [lowestEphemeral] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const small = await startNatsCluster({ size: 3, running: 1 });
    try {
      const ports = small.nodes.flatMap((n) => [n.port, n.clusterPort, n.monitorPort]);
      expect(new Set(ports).size).toBe(9);
      for (const port of ports) expect(port).toBeLessThan(lowestEphemeral!);
      // What a CI run met: a port of the node taken meanwhile. The start fails with nats-server's words, not a 20 s timeout.
      const squatter = createServer();
      await new Promise<void>((r) => squatter.listen(small.nodes[1]!.monitorPort, '127.0.0.1', r));
      try {
        const started = Date.now();
        const error = await small.nodes[1]!.start().then(() => undefined, (e: Error) => e);
        expect(error?.message).toMatch(/nats-server n2 exited .* before listening/);
        expect(error?.message).toMatch(/address already in use/);
        expect(Date.now() - started).toBeLessThan(15_000);
      } finally {
        await new Promise((r) => squatter.close(r));
      }
    } finally {
      await small.stop();
    }
  }, 60_000);
});
