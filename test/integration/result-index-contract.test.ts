// One contract for ResultIndex, run against the file index (`oci-build build`) and the KV bucket
// every worker shares (a real nats-server): what one writes under a key, the next reader gets
// whole; an entry that is not one (a foreign or damaged value) is a miss, never an image to tag.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/config.js';
import { FileResultIndex } from '../../src/cache/result-index-file.js';
import type { ClaimAnswer, ResultEntry, ResultIndex } from '../../src/core/ports.js';
import { KvResultIndex } from '../../src/queue/kv-result-index.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

let n = 0;
function entry(overrides: Partial<ResultEntry> = {}): ResultEntry {
  n++;
  return {
    key: n.toString(16).padStart(64, 'a'),
    project: 'api',
    repository: '127.0.0.1:5000/team/api',
    digest: `sha256:${'b'.repeat(64)}`,
    imageId: 'c'.repeat(64),
    pushed: true,
    buildId: `b-${n}`,
    createdAt: '2026-01-01T00:00:00.000Z',
    inputs: { trees: { '.': 'd'.repeat(40) } },
    ...overrides,
  };
}

function contract(name: string, setup: () => Promise<{ index: ResultIndex; writeRaw: (key: string, text: string) => Promise<void> }>, teardown: () => Promise<void>) {
  describe(`ResultIndex contract: ${name}`, () => {
    let index: ResultIndex;
    let writeRaw: (key: string, text: string) => Promise<void>;
    beforeAll(async () => {
      ({ index, writeRaw } = await setup());
    });
    afterAll(teardown);

    it('get answers what put stored under the key, whole; an unknown key is a miss', async () => {
      const e = entry();
      await index.put(e);
      expect(await index.get(e.key)).toEqual(e);
      expect(await index.get(entry().key)).toBeUndefined();
    });

    it('a second put of a key replaces the entry', async () => {
      const e = entry();
      await index.put(e);
      await index.put({ ...e, buildId: 'later' });
      expect((await index.get(e.key))?.buildId).toBe('later');
    });

    it('a damaged value, another key’s entry or a digest not of the form is a miss', async () => {
      const damaged = entry();
      await writeRaw(damaged.key, '{"key":');
      expect(await index.get(damaged.key)).toBeUndefined();
      const other = entry();
      await writeRaw(other.key, JSON.stringify({ ...entry(), key: 'f'.repeat(64) }));
      expect(await index.get(other.key)).toBeUndefined();
      const flag = entry();
      await writeRaw(flag.key, JSON.stringify({ ...flag, imageId: '--root=/etc' }));
      expect(await index.get(flag.key)).toBeUndefined();
      const digest = entry();
      await writeRaw(digest.key, JSON.stringify({ ...digest, digest: 'latest' }));
      expect(await index.get(digest.key)).toBeUndefined();
    });
  });
}

let dir: TempDir;
contract(
  'file',
  async () => {
    dir = await tempDir('oci-build-results-');
    const results = join(dir.path, 'results');
    const index = new FileResultIndex(results);
    await index.put(entry());
    return { index, writeRaw: (key, text) => writeFile(join(results, `${key}.json`), text) };
  },
  async () => dir?.cleanup(),
);

let server: NatsServer;
let nats: NatsContext;
contract(
  'JetStream KV',
  async () => {
    server = await startNatsServer();
    nats = await connectNats({ ...DEFAULTS.nats, url: server.url, resultBucket: 'contract-results' });
    const index = new KvResultIndex(nats);
    await index.put(entry());
    const kv = await nats.js.views.kv('contract-results');
    return { index, writeRaw: async (key, text) => void (await kv.put(key, text)) };
  },
  async () => {
    if (nats) await closeNats(nats);
    await server?.stop();
  },
);

describe('FileResultIndex', () => {
  it('refuses a key that is not a result key: it never names a file outside its directory', async () => {
    const index = new FileResultIndex('/nonexistent/results');
    await expect(index.get('../../etc/passwd')).rejects.toThrow(/Not a result key/);
  });
});

/** Claims, as two builds see them through two indexes on one store (two workers on one bucket; two processes on one work directory). */
function claimContract(name: string, setup: () => Promise<{ a: ResultIndex; b: ResultIndex }>, teardown: () => Promise<void>) {
  describe(`ResultIndex claims: ${name}`, () => {
    let indexA: Required<ResultIndex>;
    let indexB: Required<ResultIndex>;
    beforeAll(async () => {
      const both = await setup();
      indexA = both.a as Required<ResultIndex>;
      indexB = both.b as Required<ResultIndex>;
    });
    afterAll(teardown);
    const claimed = (answer: ClaimAnswer) => ('claimed' in answer ? answer.claimed : undefined);

    it('of two claims of one key at once exactly one wins; the other is told who holds it', async () => {
      const key = entry().key;
      const before = Date.now();
      const answers = await Promise.all([indexA.claim(key, { buildId: 'b-a', worker: 'worker-a' }), indexB.claim(key, { buildId: 'b-b', worker: 'worker-b' })]);
      const winners = answers.filter((x) => 'claimed' in x);
      expect(winners).toHaveLength(1);
      const loser = answers.find((x) => 'heldBy' in x) as Extract<ClaimAnswer, { heldBy: unknown }>;
      const winner = answers[0] === winners[0] ? { buildId: 'b-a', worker: 'worker-a' } : { buildId: 'b-b', worker: 'worker-b' };
      expect(loser.heldBy).toEqual(winner);
      expect(loser.refreshedAt).toBeGreaterThanOrEqual(before - 1_000);
      await claimed(winners[0]!)!.release();
    });

    it('a held claim is refreshed (its revision moves) until released; then the key can be claimed again', async () => {
      const key = entry().key;
      const held = claimed(await indexA.claim(key, { buildId: 'b-a' }))!;
      const first = (await indexB.claim(key, { buildId: 'b-b' })) as Extract<ClaimAnswer, { revision: number }>;
      await new Promise((r) => setTimeout(r, 700));
      const later = (await indexB.claim(key, { buildId: 'b-b' })) as Extract<ClaimAnswer, { revision: number }>;
      expect(later.revision).toBeGreaterThan(first.revision);
      expect(later.refreshedAt).toBeGreaterThan(first.refreshedAt);
      await held.release();
      const again = await indexB.claim(key, { buildId: 'b-b' });
      expect('claimed' in again).toBe(true);
      await claimed(again)!.release();
    });

    it("a claim taken over (replacing its revision) is the new holder's: the old holder's refreshes and release leave it alone", async () => {
      const key = entry().key;
      const old = claimed(await indexA.claim(key, { buildId: 'b-old' }))!;
      const seen = (await indexB.claim(key, { buildId: 'b-new' })) as Extract<ClaimAnswer, { revision: number }>;
      // A revision that is no longer the claim's does not take it over.
      expect('heldBy' in (await indexB.claim(key, { buildId: 'b-new' }, seen.revision - 1))).toBe(true);
      const current = (await indexB.claim(key, { buildId: 'b-new' })) as Extract<ClaimAnswer, { revision: number }>;
      const taken = await indexB.claim(key, { buildId: 'b-new' }, current.revision);
      expect('claimed' in taken).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
      await old.release();
      const now = (await indexA.claim(key, { buildId: 'b-third' })) as Extract<ClaimAnswer, { heldBy: unknown }>;
      expect(now.heldBy).toEqual({ buildId: 'b-new' });
      await claimed(taken)!.release();
    });
  });
}

let claimDir: TempDir;
claimContract(
  'file (two processes, one work directory)',
  async () => {
    claimDir = await tempDir('oci-build-claims-');
    const results = join(claimDir.path, 'results');
    return { a: new FileResultIndex(results, 200), b: new FileResultIndex(results, 200) };
  },
  async () => claimDir?.cleanup(),
);

let claimServer: NatsServer;
let claimA: NatsContext;
let claimB: NatsContext;
claimContract(
  'JetStream KV (two workers, one bucket, a real nats-server)',
  async () => {
    claimServer = await startNatsServer();
    const config = { ...DEFAULTS.nats, url: claimServer.url, resultBucket: 'claim-results' };
    [claimA, claimB] = await Promise.all([connectNats(config), connectNats(config)]);
    return { a: new KvResultIndex(claimA, 'claim-results', 200), b: new KvResultIndex(claimB, 'claim-results', 200) };
  },
  async () => {
    await Promise.all([claimA && closeNats(claimA), claimB && closeNats(claimB)]);
    await claimServer?.stop();
  },
);
