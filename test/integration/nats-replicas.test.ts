// nats.replicas: every stream and bucket oci-build creates gets the count; one created earlier with
// another count is updated (a deployment growing from one node to a cluster), and a count the
// servers cannot hold is refused with an error naming the stream, the counts and what to do.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/config.js';
import { ServiceUnavailableError } from '../../src/core/errors.js';
import { closeNats, connectNats, openBucket } from '../../src/queue/nats.js';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

let cluster: NatsCluster;
let single: NatsServer;

beforeAll(async () => {
  [cluster, single] = await Promise.all([startNatsCluster(), startNatsServer()]);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([cluster?.stop(), single?.stop()]);
});

describe('nats.replicas', () => {
  it('creates with 1, then updates every stream and bucket to 3 when asked', async () => {
    const config = { ...DEFAULTS.nats, servers: cluster.urls, url: cluster.urls.join(',') };
    const first = await connectNats({ ...config, replicas: 1 });
    await closeNats(first);
    const ctx = await connectNats({ ...config, replicas: 3 });
    try {
      await openBucket(ctx, config.resultBucket);
      for (const stream of [config.stream, config.logStream, `KV_${config.statusBucket}`, `KV_${config.resultBucket}`]) {
        expect((await ctx.jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
      }
    } finally {
      await closeNats(ctx);
    }
  }, 60_000);

  it('a count one server cannot hold is a clear error naming the stream and the fix', async () => {
    const err = await connectNats({ ...DEFAULTS.nats, url: single.url, replicas: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as Error).message).toMatch(/OCI_BUILD_JOBS|replicas/);
    const hint = (err as ServiceUnavailableError).hint ?? '';
    expect(`${(err as Error).message} ${hint}`).toMatch(/nats\.replicas/);
  }, 30_000);
});
