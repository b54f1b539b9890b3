// A publish in flight when the connection's server dies is failed at once, not after its timeout:
// its acknowledgement went down with the socket, and serve retries it on the connection nats.js
// makes to another node (a cluster node's death must fit in server.queueWait).

import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from 'nats';
import { JetStreamPublisher } from '../../src/queue/js-publisher.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

let nats: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

it('fails the publishes waiting on a connection that broke, with a reason, well before their timeout', async () => {
  // Nobody acknowledges this subject: without the disconnect the publish would wait a minute.
  const silent = nc.subscribe('silent.until.death');
  await nc.flush();
  const publisher = new JetStreamPublisher(nc, 60_000);
  try {
    const waiting = publisher.publish('silent.until.death', 'x');
    const settled = waiting.then(
      () => 'acknowledged',
      (err: Error) => err.message,
    );
    await nats.kill();
    expect(await settled).toMatch(/connection to NATS broke before the acknowledgement/);
  } finally {
    publisher.close();
    silent.unsubscribe();
    await nats.start();
  }
}, 30_000);
