// The JetStream JobConsumer (queue/job-consumer.ts) against a real nats-server: the durable
// consumer's settings, the JetStream error codes it relies on, one pull per call, the ack
// protocol, newer-push notifications, and a queue depth counted by the consumer's name.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AckPolicy } from 'nats';
import { DEFAULT_CONSUMER_NAME, type ConsumerEvent } from '../../src/core/ports.js';
import { JetStreamJobConsumer } from '../../src/queue/job-consumer.js';
import { jobKey, publishJob, queueDepth, raiseLatest } from '../../src/queue/job-queue.js';
import { isJsError, JsErrorCode } from '../../src/queue/nats-errors.js';
import { closeNats, type NatsContext } from '../../src/queue/nats.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { fakeJob } from './fixtures/fake-build.js';
import { isolatedQueue } from './fixtures/worker-harness.js';

let server: NatsServer;
const contexts: NatsContext[] = [];
const stops: Array<() => void> = [];

beforeAll(async () => {
  server = await startNatsServer();
});

afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await Promise.all(contexts.splice(0).map((c) => closeNats(c)));
});

afterAll(async () => {
  await server?.stop();
});

async function queue(): Promise<NatsContext> {
  const ctx = await isolatedQueue(server.url, 'c');
  contexts.push(ctx);
  return ctx;
}

const settings = (name = DEFAULT_CONSUMER_NAME) => ({ name, ackWaitMs: 2_000, maxDeliver: 4 });
const never = new AbortController().signal;

describe('JetStreamJobConsumer', () => {
  it('ensure creates the durable consumer, updates its ack_wait and max_deliver, and tolerates workers racing to create it', async () => {
    const ctx = await queue();
    await Promise.all(Array.from({ length: 4 }, () => new JetStreamJobConsumer(ctx).ensure(settings())));
    let info = await ctx.jsm.consumers.info(ctx.config.stream, DEFAULT_CONSUMER_NAME);
    expect(info.config).toMatchObject({ ack_wait: 2_000_000_000, max_deliver: 4, ack_policy: AckPolicy.Explicit });
    await new JetStreamJobConsumer(ctx).ensure({ ...settings(), ackWaitMs: 3_000, maxDeliver: 6 });
    info = await ctx.jsm.consumers.info(ctx.config.stream, DEFAULT_CONSUMER_NAME);
    expect(info.config).toMatchObject({ ack_wait: 3_000_000_000, max_deliver: 6 });
  });

  it('nats-server answers the codes the consumer relies on: consumer not found, no message found; a racing add is accepted', async () => {
    const ctx = await queue();
    const missing = await ctx.jsm.consumers.info(ctx.config.stream, 'nobody').catch((err: unknown) => err);
    expect(isJsError(missing, JsErrorCode.ConsumerNotFound)).toBe(true);
    await new JetStreamJobConsumer(ctx).ensure(settings());
    // A worker losing the creation race adds the same durable again: nats-server 2.9 accepts it (an
    // update). The ConsumerExists / ConsumerAlreadyExists codes ensure() also accepts are what
    // servers ≥ 2.10 answer instead; this 2.9 server cannot be made to say them.
    const again = await ctx.jsm.consumers.add(ctx.config.stream, { durable_name: DEFAULT_CONSUMER_NAME, ack_policy: AckPolicy.Explicit, ack_wait: 2_000_000_000, max_deliver: 4 });
    expect(again.config).toMatchObject({ durable_name: DEFAULT_CONSUMER_NAME, max_deliver: 4 });
    const none = await ctx.jsm.streams.getMessage(ctx.config.stream, { last_by_subj: `${ctx.config.subject}.nothing` }).catch((err: unknown) => err);
    expect(isJsError(none, JsErrorCode.NoMessageFound)).toBe(true);
  });

  it('next: one delivery per call; undefined when the pull expires or is aborted; nak with a delay redelivers', async () => {
    const ctx = await queue();
    const consumer = new JetStreamJobConsumer(ctx);
    await consumer.ensure(settings());
    const t0 = Date.now();
    expect(await consumer.next({ expiresMs: 1_000, signal: never })).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);

    const abort = new AbortController();
    const pending = consumer.next({ expiresMs: 30_000, signal: abort.signal });
    await new Promise((r) => setTimeout(r, 100));
    const t1 = Date.now();
    abort.abort();
    expect(await pending).toBeUndefined();
    expect(Date.now() - t1).toBeLessThan(2_000);

    const { seq } = await publishJob(ctx, fakeJob('next-1'));
    await publishJob(ctx, fakeJob('next-2', { branch: 'other' }));
    const first = await consumer.next({ expiresMs: 2_000, signal: never });
    expect(first).toMatchObject({ seq, attempt: 1, job: { id: 'next-1' } });
    first!.nak(300);
    const second = await consumer.next({ expiresMs: 2_000, signal: never });
    expect(second?.job?.id).toBe('next-2');
    await second!.ack();
    const again = await consumer.next({ expiresMs: 2_000, signal: never });
    expect(again).toMatchObject({ seq, attempt: 2, job: { id: 'next-1' } });
    await again!.ack();
    expect(await queueDepth(ctx, DEFAULT_CONSUMER_NAME)).toBe(0);
  });

  it('a message that is not a BuildJob is delivered as unreadable', async () => {
    const ctx = await queue();
    const consumer = new JetStreamJobConsumer(ctx);
    await consumer.ensure(settings());
    await ctx.js.publish(ctx.config.subject, '{"hello":1}');
    const d = await consumer.next({ expiresMs: 2_000, signal: never });
    expect(d?.job).toBeUndefined();
    expect(d?.unreadable).toMatch(/not a BuildJob/);
    d!.term();
  });

  it('queueDepth counts by the consumer it names: a custom-named consumer\'s taken job is not waiting', async () => {
    const ctx = await queue();
    const consumer = new JetStreamJobConsumer(ctx);
    await consumer.ensure(settings('custom-builders'));
    await publishJob(ctx, fakeJob('depth-1'));
    await publishJob(ctx, fakeJob('depth-2', { branch: 'b' }));
    const taken = await consumer.next({ expiresMs: 2_000, signal: never });
    expect(taken).toBeDefined();
    expect(await queueDepth(ctx, 'custom-builders')).toBe(1);
    // Another name sees no consumer, hence nothing in flight.
    expect(await queueDepth(ctx, DEFAULT_CONSUMER_NAME)).toBe(2);
    await taken!.ack();
  });

  it('watch: tells of a newer job published on a branch being built, and of latest.<key> moving', async () => {
    const ctx = await queue();
    const consumer = new JetStreamJobConsumer(ctx);
    await consumer.ensure(settings());
    const key = jobKey('acme/app', 'main');
    expect(consumer.supersedeKeyOf(fakeJob('k'))).toBe(key);
    const events: ConsumerEvent[] = [];
    stops.push(consumer.watch({ pushes: true, isBuilding: (k) => k === key }, (e) => events.push(e)));
    await ctx.nc.flush();
    await new Promise((r) => setTimeout(r, 200)); // the KV watch is set up
    const { seq } = await publishJob(ctx, fakeJob('watched-1'));
    await waitFor(() => events.some((e) => e.type === 'newer-push' && e.push.id === 'watched-1'), { timeoutMs: 5_000, what: 'the published job to be told' });
    expect(events.find((e) => e.type === 'newer-push')).toEqual({ type: 'newer-push', push: { key, id: 'watched-1', seq } });
    await publishJob(ctx, fakeJob('elsewhere', { branch: 'dev' }));
    await raiseLatest(ctx, key, { id: 'started-elsewhere', seq: seq + 10 });
    await waitFor(() => events.some((e) => e.type === 'newer-push' && e.push.id === 'started-elsewhere'), { timeoutMs: 5_000, what: 'latest.<key> to be told' });
    expect(events.some((e) => e.type === 'newer-push' && e.push.id === 'elsewhere')).toBe(false);
    expect(await consumer.newestPush(key)).toEqual({ key, id: 'started-elsewhere', seq: seq + 10 });
    expect(await consumer.raiseLatest({ key, id: 'older', seq })).toEqual({ key, id: 'started-elsewhere', seq: seq + 10 });
  });
});
