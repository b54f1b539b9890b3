// One contract for BuildStore, run against the three stores: the file store (`build`, `status`),
// the KV store over a real nats-server (the daemons), and the memory fake of the unit tests. The
// fake may promise nothing the real stores do not do; `limit` means one thing in all three
// (BuildListFilter in core/ports.ts).

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/config.js';
import { InputError } from '../../src/core/errors.js';
import type { BuildStore } from '../../src/core/ports.js';
import type { BuildRecord, JobStatus } from '../../src/core/types.js';
import { KvBuildStore } from '../../src/queue/kv-build-store.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { FileBuildStore } from '../../src/store/file-build-store.js';
import { MemoryBuildStore } from '../helpers/fakes.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

/** A repository name no other test of the suite uses: each test lists only its own records. */
const uniqueRepo = () => `acme/store-${randomUUID().slice(0, 8)}`;

let n = 0;
function record(overrides: Partial<BuildRecord> & { repo?: string; branch?: string } = {}): BuildRecord {
  const { repo = 'acme/shop', branch = 'main', ...rest } = overrides;
  return {
    id: `b-${++n}-${randomUUID().slice(0, 8)}`,
    status: 'succeeded',
    trigger: 'webhook',
    repository: { fullName: repo, branch, commit: 'a'.repeat(40) },
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    phases: [],
    images: [],
    ...rest,
  };
}

const ids = (records: BuildRecord[]) => records.map((r) => r.id);

function contract(name: string, setup: () => Promise<BuildStore>, teardown: () => Promise<void>) {
  describe(`BuildStore contract: ${name}`, () => {
    let store: BuildStore;
    beforeAll(async () => {
      store = await setup();
    });
    afterAll(teardown);

    it('get returns what put stored, whole', async () => {
      const r = record({
        status: 'failed',
        deliveryId: 'd-1',
        phases: [{ name: 'build', status: 'failed', startedAt: '2026-01-01T00:00:00.000Z', durationMs: 12, error: 'exit 1' }],
        images: [{ project: 'api', repository: 'registry/api', tags: ['sha-aaaaaaa', 'main'], pushed: false }],
        error: { phase: 'build', code: 'E_COMMAND_FAILED', message: 'exit 1' },
      });
      await store.put(r);
      expect(await store.get(r.id)).toEqual(r);
    });

    it('a second put of an id replaces the record, and it is listed once', async () => {
      const repo = uniqueRepo();
      const r = record({ repo, status: 'running' });
      await store.put(r);
      await store.put({ ...r, status: 'succeeded', finishedAt: '2026-01-01T01:00:00.000Z' });
      expect(await store.get(r.id)).toMatchObject({ status: 'succeeded', finishedAt: '2026-01-01T01:00:00.000Z' });
      expect(await store.list({ repo })).toEqual([{ ...r, status: 'succeeded', finishedAt: '2026-01-01T01:00:00.000Z' }]);
    });

    it('get of an unknown id is undefined', async () => {
      expect(await store.get(`never-${randomUUID()}`)).toBeUndefined();
    });

    it('lists newest createdAt first, whatever the write order; equal times by the greater id first', async () => {
      const repo = uniqueRepo();
      const at = (s: number) => new Date(Date.UTC(2026, 2, 1, 0, 0, s)).toISOString();
      const records = [
        record({ repo, id: 'order-b', createdAt: at(2) }),
        record({ repo, id: 'order-d', createdAt: at(9) }),
        record({ repo, id: 'order-a', createdAt: at(5) }),
        record({ repo, id: 'order-c', createdAt: at(5) }),
      ];
      for (const r of records) await store.put(r);
      expect(ids(await store.list({ repo }))).toEqual(['order-d', 'order-c', 'order-a', 'order-b']);
    });

    it('filters by repository (case-insensitively), branch (exactly) and status, together', async () => {
      const repo = uniqueRepo();
      const main = record({ repo, branch: 'main', status: 'succeeded' });
      const dev = record({ repo, branch: 'dev', status: 'failed' });
      const devRunning = record({ repo, branch: 'dev', status: 'running' });
      const other = record({ repo: `${repo}-other`, branch: 'main' });
      for (const r of [main, dev, devRunning, other]) await store.put(r);
      expect(ids(await store.list({ repo: repo.toUpperCase() }))).toEqual(ids([devRunning, dev, main]));
      expect(ids(await store.list({ repo, branch: 'dev' }))).toEqual(ids([devRunning, dev]));
      expect(await store.list({ repo, branch: 'DEV' })).toEqual([]);
      expect(ids(await store.list({ repo, status: 'failed' }))).toEqual(ids([dev]));
      expect(ids(await store.list({ repo, branch: 'dev', status: 'running' }))).toEqual(ids([devRunning]));
      expect(await store.list({ repo, status: 'queued' as JobStatus })).toEqual([]);
      // Without a filter, every store's records are listed (this test's among them).
      expect(ids(await store.list())).toEqual(expect.arrayContaining(ids([main, dev, devRunning, other])));
    });

    it('limit: undefined lists every match; a positive whole number at most that many, the newest', async () => {
      const repo = uniqueRepo();
      // More than any default a store ever had (20).
      const records = Array.from({ length: 25 }, () => record({ repo }));
      await Promise.all(records.map((r) => store.put(r)));
      const newest = ids(records).reverse();
      expect(ids(await store.list({ repo }))).toEqual(newest);
      expect(ids(await store.list({ repo, limit: undefined }))).toEqual(newest);
      expect(ids(await store.list({ repo, limit: 1 }))).toEqual(newest.slice(0, 1));
      expect(ids(await store.list({ repo, limit: 7 }))).toEqual(newest.slice(0, 7));
      expect(ids(await store.list({ repo, limit: 25 }))).toEqual(newest);
      expect(ids(await store.list({ repo, limit: 1000 }))).toEqual(newest);
      // The limit applies after the filter.
      expect(ids(await store.list({ repo, status: 'succeeded', limit: 3 }))).toEqual(newest.slice(0, 3));
    });

    it('limit: 0, a negative number or a fraction is refused with an InputError', async () => {
      for (const limit of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        await expect(store.list({ limit }), `limit ${limit}`).rejects.toBeInstanceOf(InputError);
      }
    });

    it('concurrent puts of many records keep every one; concurrent puts of one id leave one of them whole', async () => {
      const repo = uniqueRepo();
      const records = Array.from({ length: 40 }, () => record({ repo }));
      await Promise.all(records.map((r) => store.put(r)));
      expect(new Set(ids(await store.list({ repo })))).toEqual(new Set(ids(records)));
      for (const r of records.slice(0, 5)) expect(await store.get(r.id)).toEqual(r);

      const base = record({ repo: uniqueRepo() });
      // Versions of different sizes: a torn write would show as a mix of two, or as invalid JSON.
      const versions: BuildRecord[] = Array.from({ length: 20 }, (_, i) => ({
        ...base,
        worker: `worker-${i}`,
        phases: Array.from({ length: i * 10 }, (_, k) => ({ name: 'build', status: 'succeeded', startedAt: base.createdAt, durationMs: k })),
      }));
      await Promise.all(versions.map((v) => store.put(v)));
      const stored = await store.get(base.id);
      expect(versions).toContainEqual(stored);
      expect(await store.list({ repo: base.repository.fullName })).toEqual([stored]);
    });
  });
}

let fileDir: TempDir;
contract(
  'FileBuildStore',
  async () => {
    fileDir = await tempDir('oci-build-store-contract-');
    return new FileBuildStore(join(fileDir.path, 'builds'));
  },
  async () => {
    await fileDir?.cleanup();
  },
);

let nats: NatsServer;
let ctx: NatsContext;
contract(
  'KvBuildStore over nats-server',
  async () => {
    nats = await startNatsServer();
    ctx = await connectNats({ ...DEFAULTS.nats, url: nats.url }, { name: 'build-store-contract' });
    return new KvBuildStore(ctx);
  },
  async () => {
    if (ctx) await closeNats(ctx);
    await nats?.stop();
  },
);

contract(
  'MemoryBuildStore (the unit tests’ fake)',
  async () => new MemoryBuildStore(),
  async () => undefined,
);
