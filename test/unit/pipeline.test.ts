import { describe, expect, it } from 'vitest';
import { RecordWriter, runPipeline } from '../../src/core/pipeline.js';
import { CommandFailedError, ServiceUnavailableError } from '../../src/core/errors.js';
import type { BuildJob } from '../../src/core/types.js';
import type { CodeBuilder, PipelineDeps } from '../../src/core/ports.js';
import { COMMIT, FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter, fakeBuilder, fakeDetector, fakeSource } from '../helpers/fakes.js';

function job(overrides: Partial<BuildJob> = {}): BuildJob {
  return {
    id: 'b1',
    trigger: 'cli',
    source: { kind: 'local', path: '/src/app' },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: '2026-11-29T08:00:00.000Z',
    ...overrides,
  };
}

function deps(overrides: Partial<PipelineDeps> = {}) {
  const store = new MemoryBuildStore();
  const logs = new MemoryLogStore();
  const reporter = new RecordingReporter();
  const images = new FakeImageBuilder();
  const source = fakeSource();
  const all: PipelineDeps = { source, detector: fakeDetector(), builder: fakeBuilder(), images, store, logs, reporter, ...overrides };
  return { all, store, logs, reporter, images, source };
}

/**
 * A builder that runs until its signal aborts, then fails as a killed compiler does (exit 143);
 * it records when and why it was aborted. Not aborted, it fails by itself after `unabortedMs`.
 */
function abortableBuilder(unabortedMs: number): CodeBuilder & { abortReasons: unknown[]; abortedAfterMs: number[] } {
  const abortReasons: unknown[] = [];
  const abortedAfterMs: number[] = [];
  return {
    abortReasons,
    abortedAfterMs,
    build: (_workspace, ctx) =>
      new Promise((_resolve, reject) => {
        const started = performance.now();
        const killed = () => reject(new CommandFailedError('killed', 'go build', 143));
        const timer = setTimeout(killed, unabortedMs);
        const onAbort = () => {
          clearTimeout(timer);
          abortReasons.push(ctx.signal.reason);
          abortedAfterMs.push(performance.now() - started);
          killed();
        };
        if (ctx.signal.aborted) onAbort();
        else ctx.signal.addEventListener('abort', onAbort, { once: true });
      }),
  };
}

describe('runPipeline', () => {
  it('runs source → detect → build → image and records a succeeded build', async () => {
    const d = deps();
    const { record, error } = await runPipeline(job({ image: { registry: '127.0.0.1:5000/team', push: false, tlsVerify: true, buildArgs: { A: '1' } } }), d.all);
    expect(error).toBeUndefined();
    expect(record.status).toBe('succeeded');
    expect(record.phases.map((p) => `${p.name}:${p.status}`)).toEqual(['source:succeeded', 'detect:succeeded', 'build:succeeded', 'image:succeeded']);
    expect(record.images).toEqual([
      { project: 'app', repository: '127.0.0.1:5000/team/app', tags: ['sha-0123456', 'main'], digest: 'sha256:local', imageId: 'id-app', pushed: false },
    ]);
    expect(d.images.built[0]).toMatchObject({ buildArgs: { A: '1' }, timestamp: 1767225600, labels: { 'org.opencontainers.image.revision': COMMIT } });
    expect(d.source.disposed).toBe(1);
    expect((await d.store.get('b1'))?.status).toBe('succeeded');
    expect(d.logs.lines.get('b1')?.at(-1)).toBe('==> succeeded');
    expect(record.logPath).toBe('memory:b1');
  });

  it('pushes every image when asked and records the registry digest', async () => {
    const d = deps();
    const { record } = await runPipeline(job({ image: { registry: 'r:5000', push: true, tlsVerify: false, buildArgs: {} } }), d.all);
    expect(d.images.pushed).toEqual([{ repository: 'r:5000/app', tags: ['sha-0123456', 'main'], imageId: 'id-app', tlsVerify: false }]);
    expect(record.images[0]).toMatchObject({ pushed: true, digest: `sha256:${'f'.repeat(64)}` });
    expect(record.phases.at(-1)).toMatchObject({ name: 'push', status: 'succeeded', project: 'app' });
  });

  it('a failed compile fails the build phase, keeps the error, and runs no image phase', async () => {
    const d = deps({
      builder: fakeBuilder((ws) => ws.selected.map((project) => ({ project, status: 'failed', startedAt: '', durationMs: 5, error: './main.go:5:2: undefined: x' }))),
    });
    const { record, error } = await runPipeline(job(), d.all);
    expect(record.status).toBe('failed');
    expect(error?.exitCode).toBe(1);
    expect(record.error).toMatchObject({ phase: 'build', message: expect.stringContaining('undefined: x') });
    expect(record.phases.some((p) => p.name === 'image')).toBe(false);
  });

  it('a missing Dockerfile fails the image phase naming the paths looked at', async () => {
    const d = deps({
      detector: fakeDetector({ projects: [{ name: 'app', root: '.', language: 'go', dockerfileCandidates: ['/src/app/Dockerfile', '/src/app/Containerfile'] }], selected: ['app'] }),
    });
    const { record, error } = await runPipeline(job(), d.all);
    expect(error?.exitCode).toBe(1);
    expect(record.error).toMatchObject({ phase: 'image', code: 'E_DOCKERFILE_MISSING' });
    expect(record.error?.message).toContain('/src/app/Dockerfile');
    expect(record.error?.message).toContain('/src/app/Containerfile');
  });

  it('--no-image stops after the build', async () => {
    const d = deps();
    const { record } = await runPipeline(job({ noImage: true }), d.all);
    expect(record.status).toBe('succeeded');
    expect(record.phases.map((p) => p.name)).toEqual(['source', 'detect', 'build']);
    expect(d.images.built).toHaveLength(0);
  });

  it('an unavailable service keeps its exit code 3', async () => {
    const d = deps({ source: { checkout: async () => { throw new ServiceUnavailableError('remote down'); } } });
    const { record, error } = await runPipeline(job(), d.all);
    expect(error?.exitCode).toBe(3);
    expect(record.error).toMatchObject({ phase: 'source', code: 'E_SERVICE_UNAVAILABLE' });
  });

  it('a timeout fails the build with E_TIMEOUT and cancellation ends it cancelled', async () => {
    const timeoutMs = 100;
    // Well past the timeout and the bound below: a pipeline that never aborts the builder ends
    // only when this does, and fails the bound.
    const unabortedMs = 10_000;
    // Timing margin for a loaded 2-core machine; the pipeline's own work with fakes is microseconds.
    const marginMs = 2_000;

    const timedOutBuilder = abortableBuilder(unabortedMs);
    const startedAt = performance.now();
    const timedOut = await runPipeline(job(), deps({ builder: timedOutBuilder }).all, { timeoutMs });
    const elapsedMs = performance.now() - startedAt;
    expect(timedOut.record.status).toBe('failed');
    expect(timedOut.record.error).toMatchObject({ phase: 'build', code: 'E_TIMEOUT' });
    // The builder itself was told: its signal aborted, with the timeout as the reason.
    expect(timedOutBuilder.abortReasons).toHaveLength(1);
    expect(timedOutBuilder.abortReasons[0]).toMatchObject({ code: 'E_TIMEOUT' });
    expect(timedOutBuilder.abortedAfterMs[0]).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(elapsedMs).toBeLessThan(timeoutMs + marginMs);

    const cancelledBuilder = abortableBuilder(unabortedMs);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const cancelStarted = performance.now();
    const cancelled = await runPipeline(job(), deps({ builder: cancelledBuilder }).all, { signal: controller.signal });
    expect(cancelled.record.status).toBe('cancelled');
    expect(cancelled.record.error?.code).toBe('E_CANCELLED');
    expect(cancelledBuilder.abortReasons).toHaveLength(1);
    expect(performance.now() - cancelStarted).toBeLessThan(20 + marginMs);
  });

  it('names the image after the directory built when the source says so (a subdirectory)', async () => {
    const d = deps({ source: fakeSource({ imageName: 'sample-go-repo', repository: { fullName: 'acme/oci-build', commit: COMMIT, branch: 'main' } }) });
    const { record } = await runPipeline(job(), d.all);
    expect(record.images[0]?.repository).toBe('sample-go-repo');
    expect(record.repository.fullName).toBe('acme/oci-build');
  });

  it('a webhook job built by SHA keeps the branch it was pushed to, for its tags', async () => {
    const d = deps({ source: fakeSource({ repository: { fullName: 'acme/app', commit: COMMIT, ref: COMMIT } }) });
    const { record } = await runPipeline(
      job({ trigger: 'webhook', repository: { fullName: 'acme/app', commit: COMMIT, ref: 'refs/heads/feature/x', branch: 'feature/x' } }),
      d.all,
    );
    expect(record.images[0]?.tags).toEqual(['sha-0123456', 'feature-x']);
    expect(record.repository).toMatchObject({ branch: 'feature/x', ref: 'refs/heads/feature/x' });
    expect(d.images.built[0]?.labels['org.opencontainers.image.ref.name']).toBeUndefined();
  });

  it('a source warning reaches the record, the phase and the reporter', async () => {
    const d = deps({ source: fakeSource({ warnings: ['remote unreachable: built from the mirror'] }) });
    const { record } = await runPipeline(job(), d.all);
    expect(record.warnings).toEqual(['remote unreachable: built from the mirror']);
    expect(record.phases[0]?.warning).toContain('mirror');
    expect(d.reporter.warnings).toHaveLength(1);
  });

  it('in a monorepo, a project without a Dockerfile gets no image unless asked for by name', async () => {
    const workspace = {
      kind: 'nx' as const,
      projects: [
        { name: 'api', root: 'apps/api', dockerfile: '/src/app/apps/api/Dockerfile', dockerfileCandidates: [] },
        { name: 'lib', root: 'libs/lib', dockerfileCandidates: ['/src/app/libs/lib/Dockerfile', '/src/app/libs/lib/Containerfile'] },
      ],
      selected: ['api', 'lib'],
    };
    const d = deps({ detector: fakeDetector(workspace) });
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(record.images.map((i) => i.repository)).toEqual(['app/api']);
    expect(record.projects?.find((p) => p.name === 'lib')?.noImageReason).toMatch(/no Dockerfile/);

    const asked = await runPipeline(job({ id: 'b2', projects: ['lib'] }), deps({ detector: fakeDetector(workspace) }).all);
    expect(asked.record.status).toBe('failed');
    expect(asked.record.error?.message).toContain('libs/lib/Dockerfile');
  });
});

describe('record writes', () => {
  it('one write at a time, the latest state last, and flush() waits for it', async () => {
    let state = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const written: number[] = [];
    const writer = new RecordWriter(async () => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const snapshot = state;
      await new Promise((r) => setTimeout(r, 5));
      written.push(snapshot);
      inFlight -= 1;
    });
    for (state = 1; state <= 5; state++) writer.schedule();
    state = 6;
    await writer.flush();
    expect(maxInFlight).toBe(1);
    expect(written.at(-1)).toBe(6);
    // Changes made while a write was in flight were coalesced, not queued one by one.
    expect(written.length).toBeLessThan(6);
  });

  it('a failed write is rethrown until a later one succeeds', async () => {
    let fail = true;
    const writer = new RecordWriter(async () => {
      if (fail) throw new Error('store down');
    });
    writer.schedule();
    await expect(writer.flush()).rejects.toThrow('store down');
    expect(() => writer.throwIfFailed()).toThrow('store down');
    fail = false;
    await writer.flush();
    expect(() => writer.throwIfFailed()).not.toThrow();
  });

  it('a store that fails while the build runs stops it before the next phase, and the final record is stored once it is back', async () => {
    const d = deps();
    const put = d.store.put.bind(d.store);
    // Down while the build runs, back for its final record.
    d.store.put = async (record) => {
      if (record.status === 'running') throw new ServiceUnavailableError('store down');
      await put(record);
    };
    const { record, error } = await runPipeline(job(), d.all);
    expect(error?.message).toContain('store down');
    expect(record.status).toBe('failed');
    expect(record.phases.some((p) => p.name === 'image')).toBe(false);
    expect((await d.store.get('b1'))?.status).toBe('failed');
  });
});

describe('formatMs', () => {
  it('never rounds past a unit boundary', async () => {
    const { formatMs } = await import('../../src/core/pipeline.js');
    expect(formatMs(250)).toBe('250ms');
    expect(formatMs(1234)).toBe('1.2s');
    expect(formatMs(9960)).toBe('10s');
    expect(formatMs(59_600)).toBe('1m');
    expect(formatMs(119_700)).toBe('2m');
    expect(formatMs(3_599_999)).toBe('1h');
    expect(formatMs(5_430_000)).toBe('1h30m');
  });
});
