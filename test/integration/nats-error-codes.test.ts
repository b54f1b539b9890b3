// The JetStream error codes the code recognises (queue/nats-errors.ts), as the real nats-server
// answers them: every code relied on is checked here against the server, not assumed from a table.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/config.js';
import { isJsError, jsErrorCode, JsErrorCode } from '../../src/queue/nats-errors.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { JetStreamLogStore, readLog } from '../../src/queue/log-stream.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

let server: NatsServer;
let ctx: NatsContext;
const natsConfig = () => ({ ...DEFAULTS.nats, url: server.url });

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

async function lines(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of iterable) out.push(line);
  return out;
}

beforeAll(async () => {
  server = await startNatsServer();
  ctx = await connectNats(natsConfig(), { name: 'error-codes' });
});

afterAll(async () => {
  if (ctx) await closeNats(ctx);
  await server?.stop();
});

describe('JetStream error codes from nats-server', () => {
  it('stream not found: the info of a stream that does not exist (ensureStream looks first)', async () => {
    const err = await failure(ctx.jsm.streams.info('NO_SUCH_STREAM'));
    expect(jsErrorCode(err)).toBe(JsErrorCode.StreamNotFound);
    expect(isJsError(err, JsErrorCode.StreamNotFound)).toBe(true);
    expect(isJsError(err, JsErrorCode.StreamNameInUse, JsErrorCode.NoMessageFound)).toBe(false);
  });

  it('stream name in use: adding a stream that exists with other settings (the same settings are no error)', async () => {
    await ctx.jsm.streams.add({ name: 'CODES_TAKEN', subjects: ['codes.taken.>'] });
    await ctx.jsm.streams.add({ name: 'CODES_TAKEN', subjects: ['codes.taken.>'] });
    const err = await failure(ctx.jsm.streams.add({ name: 'CODES_TAKEN', subjects: ['codes.taken.>', 'codes.more.>'] }));
    expect(jsErrorCode(err)).toBe(JsErrorCode.StreamNameInUse);
  });

  it('no message found: the last message of a subject nothing was published on; stream not found for a missing stream', async () => {
    const none = await failure(ctx.jsm.streams.getMessage(ctx.config.logStream, { last_by_subj: 'oci-build.logs.never-written' }));
    expect(jsErrorCode(none)).toBe(JsErrorCode.NoMessageFound);
    const noStream = await failure(ctx.jsm.streams.getMessage('NO_SUCH_STREAM', { last_by_subj: 'x' }));
    expect(jsErrorCode(noStream)).toBe(JsErrorCode.StreamNotFound);
  });

  it('a client error has no JetStream code', async () => {
    expect(jsErrorCode(new Error('stream not found'))).toBeUndefined();
    expect(isJsError(new Error('no message found'), JsErrorCode.NoMessageFound)).toBe(false);
  });
});

describe('the paths that rely on them', () => {
  it('connectNats from many processes at once: every one finds or creates the streams', async () => {
    const fresh = await startNatsServer();
    try {
      const contexts = await Promise.all(Array.from({ length: 4 }, (_, i) => connectNats({ ...DEFAULTS.nats, url: fresh.url }, { name: `race-${i}` })));
      for (const c of contexts) expect((await c.jsm.streams.info(c.config.stream)).config.name).toBe(DEFAULTS.nats.stream);
      await Promise.all(contexts.map((c) => closeNats(c)));
    } finally {
      await fresh.stop();
    }
  });

  it('connectNats updates a stream made with other settings instead of failing', async () => {
    const fresh = await startNatsServer();
    try {
      const first = await connectNats({ ...DEFAULTS.nats, url: fresh.url }, { name: 'first' });
      await first.jsm.streams.update(first.config.logStream, { subjects: ['oci-build.logs.>', 'elsewhere.>'], max_age: 3_600_000_000_000 });
      await closeNats(first);
      const again = await connectNats({ ...DEFAULTS.nats, url: fresh.url }, { name: 'again' });
      const info = await again.jsm.streams.info(again.config.logStream);
      expect(info.config.subjects).toEqual(expect.arrayContaining(['oci-build.logs.>', 'elsewhere.>']));
      expect(info.config.max_age).not.toBe(3_600_000_000_000);
      await closeNats(again);
    } finally {
      await fresh.stop();
    }
  });

  it('readLog: a build that logged nothing reads as empty, and so does a missing log stream', async () => {
    expect(await lines(readLog(ctx, 'nothing-logged', { follow: false }))).toEqual([]);
    const noStream = { ...ctx, config: { ...ctx.config, logStream: 'NO_SUCH_LOG_STREAM' } };
    expect(await lines(readLog(noStream, 'nothing-logged', { follow: false }))).toEqual([]);
    const log = await new JetStreamLogStore(ctx).open('logged');
    log.write('one');
    await log.close();
    expect(await lines(readLog(ctx, 'logged', { follow: false }))).toEqual(['one']);
  });
});
