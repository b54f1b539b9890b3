// The 3-node cluster helper itself: an R3 stream survives its leader's SIGKILL (a new leader is
// elected among the other two, the messages are all there) and the killed node catches up.

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
    await jsm.streams.add({ name: 'T', subjects: ['t.>'], num_replicas: 3, storage: StorageType.File });
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
    expect((await jsm.streams.info('T')).state.messages).toBe(6);
    await cluster.node(first).start();
    const restarted = await connect({ servers: cluster.node(first).url });
    try {
      const direct = await restarted.jetstreamManager();
      await expect
        .poll(async () => (await direct.streams.info('T')).cluster?.replicas?.every((r) => r.current) ?? false, { timeout: 30_000, interval: 250 })
        .toBe(true);
    } finally {
      await restarted.close();
    }
  }, 120_000);
});
