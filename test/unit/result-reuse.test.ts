import { describe, expect, it } from 'vitest';
import { runPipeline } from '../../src/core/pipeline.js';
import type { BuildResults, PipelineDeps, ResultEntry, ResultIndex, ReuseSource } from '../../src/core/ports.js';
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

/** BuildResults whose key is the project's name; `gone` images are not found; a `broken` project cannot be keyed. */
function fakeResults(options: { gone?: string[]; broken?: string[] } = {}): BuildResults & { index: MemoryResultIndex; retagged: Array<{ source: ReuseSource; tags: string[] }> } {
  const index = new MemoryResultIndex();
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
