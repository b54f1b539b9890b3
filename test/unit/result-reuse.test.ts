import { describe, expect, it } from 'vitest';
import { runPipeline } from '../../src/core/pipeline.js';
import type { BuildResults, ClaimAnswer, ClaimHolder, PipelineDeps, ResultEntry, ResultIndex, ReuseSource } from '../../src/core/ports.js';
import { CLAIM_STALE_MS } from '../../src/core/result-reuse.js';
import type { BuildJob, Workspace } from '../../src/core/types.js';
import { FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter, fakeBuilder, fakeDetector, fakeSource } from '../helpers/fakes.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

class MemoryResultIndex implements ResultIndex {
  readonly entries = new Map<string, ResultEntry>();
  async get(key: string) {
    return this.entries.get(key);
  }
  async put(entry: ResultEntry) {
    this.entries.set(entry.key, entry);
  }
}

/** A shared index with claims, as the workers' KV bucket has them: one writer wins a claim; a revision per write. */
class ClaimingResultIndex extends MemoryResultIndex implements Required<ResultIndex> {
  readonly claims = new Map<string, { holder: ClaimHolder; revision: number; refreshedAt: number }>();
  /** Every claim taken, in order: `key by build`. */
  readonly taken: string[] = [];
  private revision = 0;
  async claim(key: string, holder: ClaimHolder, replacing?: number): Promise<ClaimAnswer> {
    const held = this.claims.get(key);
    if (held && held.revision !== replacing) return { heldBy: held.holder, revision: held.revision, refreshedAt: held.refreshedAt };
    const mine = { holder, revision: ++this.revision, refreshedAt: Date.now() };
    this.claims.set(key, mine);
    this.taken.push(`${key.replace(/0+$/, '')} by ${holder.buildId}`);
    return {
      claimed: {
        release: async () => {
          if (this.claims.get(key) === mine) this.claims.delete(key);
        },
      },
    };
  }
}

/** BuildResults whose key is the project's name; `gone` images are not found; a `broken` project cannot be keyed. */
function fakeResults<I extends MemoryResultIndex = MemoryResultIndex>(
  options: { gone?: string[]; broken?: string[]; index?: I } = {},
): BuildResults & { index: I; retagged: Array<{ source: ReuseSource; tags: string[] }> } {
  const index = options.index ?? (new MemoryResultIndex() as I);
  const retagged: Array<{ source: ReuseSource; tags: string[] }> = [];
  return {
    index,
    retagged,
    async keyOf({ project }) {
      if (options.broken?.includes(project.name)) throw new Error('registry down');
      return { key: project.name.padEnd(64, '0'), summary: {} };
    },
    async locate(entry, target) {
      if (options.gone?.includes(entry.project)) return undefined;
      return target.push && entry.pushed ? { kind: 'registry', digest: entry.digest } : { kind: 'local', imageId: entry.imageId!, digest: entry.digest };
    },
    async retag(source, target) {
      retagged.push({ source, tags: target.tags });
      return source.kind === 'registry' ? { digest: source.digest, pushed: true } : { imageId: source.imageId, ...(source.digest ? { digest: source.digest } : {}), pushed: false };
    },
  };
}

const nx: Partial<Workspace> = {
  kind: 'nx',
  projects: ['api', 'web'].map((name) => ({ name, root: `apps/${name}`, language: 'go' as const, dockerfile: `/src/app/apps/${name}/Dockerfile`, dockerfileCandidates: [] })),
  selected: ['api', 'web'],
};

function job(overrides: Partial<BuildJob> = {}): BuildJob {
  return { id: 'b2', trigger: 'cli', source: { kind: 'local', path: '/src/app' }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: '2026-11-29T08:00:00.000Z', ...overrides };
}

function deps(results: BuildResults, overrides: Partial<PipelineDeps> = {}) {
  const images = new FakeImageBuilder();
  const built: string[][] = [];
  const all: PipelineDeps = {
    source: fakeSource(),
    detector: fakeDetector(nx),
    builder: fakeBuilder((ws) => {
      built.push(ws.selected);
      return ws.selected.map((project) => ({ project, status: 'succeeded', startedAt: new Date().toISOString(), durationMs: 1 }));
    }),
    images,
    store: new MemoryBuildStore(),
    logs: new MemoryLogStore(),
    reporter: new RecordingReporter(),
    results,
    ...overrides,
  };
  return { all, images, built };
}

function entry(project: string, extra: Partial<ResultEntry> = {}): ResultEntry {
  return { key: project.padEnd(64, '0'), project, repository: `app/${project}`, digest: DIGEST, imageId: `id-${project}`, pushed: false, buildId: 'b1', createdAt: '2026-11-29T07:00:00.000Z', ...extra };
}

describe('runPipeline with result reuse', () => {
  it('a miss builds every project and records each result under its key', async () => {
    const results = fakeResults();
    const d = deps(results);
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['api', 'web']]);
    expect([...results.index.entries.values()].map((e) => [e.project, e.buildId, e.digest, e.imageId])).toEqual([
      ['api', 'b2', 'sha256:local', 'id-api'],
      ['web', 'b2', 'sha256:local', 'id-web'],
    ]);
  });

  it('a hit runs no build and no image build for that project: the image is tagged again and marked reusedFrom', async () => {
    const results = fakeResults();
    await results.index.put(entry('web'));
    const d = deps(results);
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['api']]);
    expect(d.images.built.map((s) => s.project)).toEqual(['api']);
    const web = record.images.find((i) => i.project === 'web');
    expect(web).toMatchObject({ reusedFrom: 'b1', digest: DIGEST, imageId: 'id-web', pushed: false, tags: ['sha-0123456', 'main'] });
    expect(record.projects?.find((p) => p.name === 'web')).toMatchObject({ reusedFrom: 'b1', built: false });
    expect(record.phases.find((p) => p.name === 'build' && p.project === 'web')?.status).toBe('skipped');
    // The entry stays the first build's.
    expect(results.index.entries.get(entry('web').key)?.buildId).toBe('b1');
  });

  it('a rebuild (rebuildOf) builds again although its key is in the index, and records the new result', async () => {
    const results = fakeResults();
    await results.index.put(entry('api'));
    await results.index.put(entry('web'));
    const d = deps(results);
    const { record } = await runPipeline(job({ rebuildOf: 'b1' }), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['api', 'web']]);
    expect(record.images.every((i) => i.reusedFrom === undefined)).toBe(true);
    expect(results.index.entries.get(entry('web').key)?.buildId).toBe('b2');
  });

  it('every project hit: the builder is not called at all', async () => {
    const results = fakeResults();
    await results.index.put(entry('api'));
    await results.index.put(entry('web'));
    const d = deps(results);
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([]);
    expect(d.images.built).toEqual([]);
  });

  it('pushing: a registry hit is tagged in the registry and not pushed again; a local hit is pushed from the store', async () => {
    const results = fakeResults();
    await results.index.put(entry('api', { pushed: true, repository: '127.0.0.1:5000/t/app/api' }));
    await results.index.put(entry('web'));
    const d = deps(results);
    const { record } = await runPipeline(job({ image: { registry: '127.0.0.1:5000/t', push: true, tlsVerify: false, buildArgs: {} } }), d.all);
    expect(record.status).toBe('succeeded');
    expect(results.retagged.map((r) => r.source.kind)).toEqual(['registry', 'local']);
    expect(d.images.pushed.map((p) => p.imageId)).toEqual(['id-web']);
    expect(record.images.map((i) => [i.project, i.pushed, i.reusedFrom])).toEqual([
      ['api', true, 'b1'],
      ['web', true, 'b1'],
    ]);
    expect(record.phases.filter((p) => p.name === 'push').map((p) => p.project)).toEqual(['web']);
  });

  it('an image that is gone, or a key that cannot be computed, builds as usual', async () => {
    const results = fakeResults({ gone: ['web'], broken: ['api'] });
    await results.index.put(entry('web'));
    const d = deps(results);
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['api', 'web']]);
    expect(record.images.every((i) => i.reusedFrom === undefined)).toBe(true);
    // The new web image replaces the entry; api has no key, so no entry.
    expect(results.index.entries.get(entry('web').key)?.buildId).toBe('b2');
    expect(results.index.entries.has(entry('api').key)).toBe(false);
  });

  it('a dirty worktree and --no-image never reuse', async () => {
    const results = fakeResults();
    await results.index.put(entry('api'));
    await results.index.put(entry('web'));
    const dirty = deps(results, { source: fakeSource({ repository: { fullName: 'app', commit: '0123456789abcdef0123456789abcdef01234567', branch: 'main', dirty: true } }) });
    await runPipeline(job(), dirty.all);
    expect(dirty.built).toEqual([['api', 'web']]);
    const noImage = deps(results);
    await runPipeline(job({ noImage: true }), noImage.all);
    expect(noImage.built).toEqual([['api', 'web']]);
  });
});

/** A builder that holds each build until `finish()` is called; `started` resolves when one began. */
function heldBuilder(outcome: 'succeeded' | 'failed' = 'succeeded') {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  let began!: () => void;
  const started = new Promise<void>((resolve) => (began = resolve));
  const builder = fakeBuilder(async (ws) => {
    began();
    await done;
    return ws.selected.map((project) => ({ project, status: outcome, startedAt: new Date().toISOString(), durationMs: 1, ...(outcome === 'failed' ? { error: 'go build failed' } : {}) }));
  });
  return { builder, started, finish };
}

describe('builds of the same inputs at the same time (claims on the shared index)', () => {
  it('the second waits for the image the first is making and reuses it: one build, one image', async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    const first = heldBuilder();
    const a = deps(results, { builder: first.builder, workerName: 'worker-a' });
    const running = runPipeline(job({ id: 'b-first' }), a.all);
    await first.started;
    expect([...index.claims.values()].map((c) => c.holder)).toEqual([
      { buildId: 'b-first', worker: 'worker-a' },
      { buildId: 'b-first', worker: 'worker-a' },
    ]);
    const b = deps(results, { workerName: 'worker-b' });
    const waiting = runPipeline(job({ id: 'b-second' }), b.all);
    await new Promise((r) => setTimeout(r, 50));
    // Its record says whom it waits for, while it waits.
    const store = b.all.store as MemoryBuildStore;
    expect((await store.get('b-second'))?.waitingFor).toMatchObject({ project: 'api', buildId: 'b-first', worker: 'worker-a' });
    first.finish();
    const [{ record: made }, { record: reused }] = await Promise.all([running, waiting]);
    expect(made.status).toBe('succeeded');
    expect(reused.status).toBe('succeeded');
    expect(b.built).toEqual([]);
    expect(b.images.built).toEqual([]);
    expect(reused.images.map((i) => [i.project, i.reusedFrom, i.imageId])).toEqual([
      ['api', 'b-first', 'id-api'],
      ['web', 'b-first', 'id-web'],
    ]);
    const log = (b.all.logs as MemoryLogStore).lines.get('b-second')!;
    expect(log).toContain(`reuse: api: key ${'api'.padEnd(64, '0').slice(0, 12)} is being built by build b-first on worker-a: waiting for its image`);
    expect(log.some((l) => /reuses the image of build b-first .*made while this build waited/.test(l))).toBe(true);
    // Every claim released once the first build recorded its results.
    expect(index.claims.size).toBe(0);
    expect(reused.waitingFor).toBeUndefined();
    expect(store.history.some((r) => r.waitingFor !== undefined)).toBe(true);
  });

  it('a build that failed releases its claims: the one that waited builds', async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    const first = heldBuilder('failed');
    const running = runPipeline(job({ id: 'b-first' }), deps(results, { builder: first.builder }).all);
    await first.started;
    const b = deps(results);
    const waiting = runPipeline(job({ id: 'b-second' }), b.all);
    await new Promise((r) => setTimeout(r, 50));
    first.finish();
    const [{ record: failed }, { record: built }] = await Promise.all([running, waiting]);
    expect(failed.status).toBe('failed');
    expect(built.status).toBe('succeeded');
    expect(b.built).toEqual([['api', 'web']]);
    expect(index.taken).toEqual(['api by b-first', 'web by b-first', 'api by b-second', 'web by b-second']);
    expect(index.entries.get('api'.padEnd(64, '0'))?.buildId).toBe('b-second');
  });

  it("an abandoned claim (not refreshed for CLAIM_STALE_MS), or this build's own from an earlier attempt, is taken over at once", async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    index.claims.set('api'.padEnd(64, '0'), { holder: { buildId: 'b-dead', worker: 'gone' }, revision: 100, refreshedAt: Date.now() - CLAIM_STALE_MS - 1_000 });
    index.claims.set('web'.padEnd(64, '0'), { holder: { buildId: 'b2' }, revision: 101, refreshedAt: Date.now() });
    const d = deps(results);
    const started = Date.now();
    const { record } = await runPipeline(job({ id: 'b2' }), d.all);
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['api', 'web']]);
    expect(Date.now() - started).toBeLessThan(CLAIM_STALE_MS);
    const log = (d.all.logs as MemoryLogStore).lines.get('b2')!;
    expect(log.filter((l) => l.includes('taking it over'))).toHaveLength(2);
    expect(index.claims.size).toBe(0);
  });

  it('keys are claimed in their sorted order, one after the other: a build waiting for one holds none after it', async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    // Another build holds api (sorted first); this one must not take web meanwhile.
    index.claims.set('api'.padEnd(64, '0'), { holder: { buildId: 'b-other' }, revision: 1, refreshedAt: Date.now() });
    const d = deps(results);
    const waiting = runPipeline(job({ id: 'b2' }), d.all);
    await new Promise((r) => setTimeout(r, 100));
    expect(index.claims.has('web'.padEnd(64, '0'))).toBe(false);
    await index.put(entry('api', { buildId: 'b-other' }));
    index.claims.delete('api'.padEnd(64, '0'));
    const { record } = await waiting;
    expect(record.status).toBe('succeeded');
    expect(d.built).toEqual([['web']]);
    expect(record.images.find((i) => i.project === 'api')?.reusedFrom).toBe('b-other');
  });

  it('a build cancelled while it waits ends cancelled in its build phase, having built nothing', async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    index.claims.set('api'.padEnd(64, '0'), { holder: { buildId: 'b-other' }, revision: 1, refreshedAt: Date.now() });
    const d = deps(results);
    const cancel = new AbortController();
    const waiting = runPipeline(job({ id: 'b2' }), d.all, { signal: cancel.signal });
    await new Promise((r) => setTimeout(r, 100));
    cancel.abort();
    const { record } = await waiting;
    expect(record.status).toBe('cancelled');
    expect(record.error?.phase).toBe('build');
    expect(d.built).toEqual([]);
    expect([...index.claims.values()].map((c) => c.holder.buildId)).toEqual(['b-other']);
  });

  it('a build cancelled while it waits for one key releases the keys it had claimed before it', async () => {
    const index = new ClaimingResultIndex();
    const results = fakeResults({ index });
    // api (sorted first) is free and claimed by this build; web is another build's.
    index.claims.set('web'.padEnd(64, '0'), { holder: { buildId: 'b-other' }, revision: 1, refreshedAt: Date.now() });
    const d = deps(results);
    const cancel = new AbortController();
    const waiting = runPipeline(job({ id: 'b2' }), d.all, { signal: cancel.signal });
    await new Promise((r) => setTimeout(r, 100));
    expect(index.claims.get('api'.padEnd(64, '0'))?.holder.buildId).toBe('b2');
    cancel.abort();
    const { record } = await waiting;
    expect(record.status).toBe('cancelled');
    expect([...index.claims.entries()].map(([key, c]) => [key.replace(/0+$/, ''), c.holder.buildId])).toEqual([['web', 'b-other']]);
  });
});
