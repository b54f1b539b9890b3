// serve and the workers set up JetStream (streams, buckets, the consumer) when they start. On a
// cluster that has just started, or is electing its leaders, the first requests go unanswered: the
// process waits for it (JETSTREAM_SETUP_WAIT_MS) instead of exiting. A server that answers "no"
// (one without JetStream, replicas it cannot hold) is a clear error at once.

import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, NatsError } from 'nats';
import { DEFAULTS } from '../../src/config/config.js';
import { DEFAULT_CONSUMER_NAME } from '../../src/core/ports.js';
import { ServiceUnavailableError } from '../../src/core/errors.js';
import { isJetStreamSettling } from '../../src/queue/nats-errors.js';
import { JetStreamJobConsumer } from '../../src/queue/job-consumer.js';
import { closeNats, connectNats } from '../../src/queue/nats.js';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

let cluster: NatsCluster | undefined;
let plain: NatsServer | undefined;

afterAll(async () => {
  await Promise.allSettled([cluster?.stop(), plain?.stop()]);
});

describe('JetStream set-up at start', () => {
  it('a cluster without a quorum yet: connectNats waits, saying so, and sets up once a second node is up; so does a consumer', async () => {
    cluster = await startNatsCluster({ running: 1 });
    const [first, second] = cluster.nodes as [NatsCluster['nodes'][0], NatsCluster['nodes'][0]];
    const warnings: Array<{ fields: Record<string, unknown>; msg: string }> = [];
    let secondStarted: Promise<void> | undefined;
    const logger = {
      warn: (fields: Record<string, unknown>, msg: string) => {
        warnings.push({ fields, msg });
        // The first unanswered set-up brings the quorum: the node started alone has no meta leader.
        secondStarted ??= second.start();
      },
    };
    const ctx = await connectNats({ ...DEFAULTS.nats, url: first.url }, { name: 'setup-wait', logger, setupWaitMs: 100_000 });
    try {
      await secondStarted;
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings[0]!.msg).toBe('JetStream is not answering yet; setting up its streams again');
      expect(warnings[0]!.fields).toMatchObject({ nats: first.url, attempt: 1 });
      for (const stream of [DEFAULTS.nats.stream, DEFAULTS.nats.logStream, `KV_${DEFAULTS.nats.statusBucket}`]) {
        expect((await ctx.jsm.streams.info(stream)).config.name).toBe(stream);
      }
      // A worker's consumer, asked for while the cluster has lost its quorum again, is waited for
      // too: its first request goes unanswered for its whole 5 s timeout, the node comes back after
      // 6 s, and a later attempt creates it.
      await second.kill();
      const back = new Promise<void>((resolveBack, rejectBack) => setTimeout(() => second.start().then(resolveBack, rejectBack), 6_000));
      await new JetStreamJobConsumer(ctx).ensure({ name: DEFAULT_CONSUMER_NAME, ackWaitMs: 60_000, maxDeliver: 3 });
      await back;
      expect((await ctx.jsm.consumers.info(DEFAULTS.nats.stream, DEFAULT_CONSUMER_NAME)).config.max_deliver).toBe(3);
    } finally {
      await closeNats(ctx);
    }
  }, 150_000);

  it('a server without JetStream is refused at once, with the hint to enable it', async () => {
    plain = await startNatsServer({ jetstream: false });
    const warnings: string[] = [];
    const err = await connectNats({ ...DEFAULTS.nats, url: plain.url }, { logger: { warn: (_fields: object, msg: string) => void warnings.push(msg) } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as Error).message).toBe(`NATS at ${plain.url} has no usable JetStream: the server runs without it`);
    expect((err as ServiceUnavailableError).hint).toMatch(/nats-server -js/);
    // Not waited for: its "no responders" is not a JetStream still starting.
    expect(warnings).toEqual([]);
  }, 30_000);

  it('what is waited for: no answer, no responders, a lost connection, a cluster not ready; not an answer that refuses', () => {
    expect(isJetStreamSettling(NatsError.errorForCode(ErrorCode.Timeout))).toBe(true);
    expect(isJetStreamSettling(NatsError.errorForCode(ErrorCode.NoResponders))).toBe(true);
    expect(isJetStreamSettling(NatsError.errorForCode(ErrorCode.Disconnect))).toBe(true);
    const apiError = (err_code: number) => Object.assign(new NatsError('api', '500'), { api_error: { code: 500, err_code, description: 'x' } });
    expect(isJetStreamSettling(apiError(10008))).toBe(true); // JetStream system temporarily unavailable
    expect(isJetStreamSettling(apiError(10009))).toBe(true); // JetStream cluster can not handle request
    expect(isJetStreamSettling(apiError(10074))).toBe(false); // replicas > 1 not supported in non-clustered mode
    expect(isJetStreamSettling(apiError(10059))).toBe(false); // stream not found
    expect(isJetStreamSettling(NatsError.errorForCode(ErrorCode.AuthorizationViolation))).toBe(false);
    expect(isJetStreamSettling(new Error('TIMEOUT'))).toBe(false);
  });
});
