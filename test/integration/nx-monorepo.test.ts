// The Nx detector and builder against the real thing: Nx 22 from the fixture's lockfile, real Go,
// Maven (offline, seeded cache), .NET, driven through runPipeline with the local source. Images
// come from a fake image builder, except in one test that uses real buildah. npm and Nx run in
// the bubblewrap sandbox with their clean environment, as `oci-build build` and the worker run them.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheService } from '../../src/cache/cache-service.js';
import { CancelledError } from '../../src/core/errors.js';
import { runPipeline } from '../../src/core/pipeline.js';
import type { ImageBuilder, PipelineDeps } from '../../src/core/ports.js';
import type { BuildJob, BuildRecord, PhaseMetric } from '../../src/core/types.js';
import { createNxBuilder } from '../../src/build/nx-builder.js';
import { createNxDetector } from '../../src/detect/nx-detector.js';
import { runCommand } from '../../src/exec/run-command.js';
import { createBuildRunner, type BuildRunner } from '../../src/exec/sandbox.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { createBuildahImageBuilder } from '../../src/image/buildah.js';
import { FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter } from '../helpers/fakes.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';

const APPS_WITH_DOCKERFILE = ['dotnet-app', 'go-app', 'java-app'];
const ALL_PROJECTS = ['cli-tool', 'dotnet-app', 'go-app', 'java-app', 'shared'];

let work: TempDir;
let cache: CacheService;
let buildRun: BuildRunner;
/** node_modules installed by the first build's `npm ci`, copied into later repositories. */
let nodeModules: string | undefined;
const repos: FixtureRepo[] = [];

beforeAll(async () => {
  work = await tempDir('oci-build-nx-');
  cache = new CacheService(join(work.path, 'cache'));
  // The work directory (worktrees, caches) is hidden but for the tree and its caches, HOME entirely.
  buildRun = createBuildRunner({ mode: 'bubblewrap', hide: [work.path, process.env.HOME ?? '/root'] });
});

afterAll(async () => {
  for (const repo of repos) await repo.cleanup();
  await work?.cleanup();
});

async function newRepo(): Promise<FixtureRepo> {
  const repo = await fixtureRepo('sample-nx-monorepo');
  repos.push(repo);
  if (nodeModules) execFileSync('cp', ['-a', nodeModules, join(repo.dir, 'node_modules')]);
  return repo;
}

let jobCount = 0;
async function build(repo: FixtureRepo, options: Partial<BuildJob> = {}, images: ImageBuilder = new FakeImageBuilder()) {
  const logs = new MemoryLogStore();
  const id = `nx-${++jobCount}`;
  const deps: PipelineDeps = {
    source: createSourceProvider({ workDir: join(work.path, 'work'), git: { tokenHosts: [], depth: 1, retries: 0, retryDelayMs: 0, retryMaxDelayMs: 0 } }),
    detector: createNxDetector({ run: buildRun, cache, killGraceMs: 2000 }),
    builder: createNxBuilder({ run: buildRun, cache, killGraceMs: 2000 }),
    images,
    store: new MemoryBuildStore(),
    logs,
    reporter: new RecordingReporter(),
  };
  const job: BuildJob = {
    id,
    trigger: 'cli',
    source: { kind: 'local', path: repo.dir },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
    ...options,
  };
  const started = Date.now();
  const result = await runPipeline(job, deps);
  const log = logs.lines.get(id) ?? [];
  const buildMetrics = result.record.phases.filter((p) => p.name === 'build');
  return { ...result, log, images, ms: Date.now() - started, built: buildMetrics.map((p) => p.project!).sort(), buildMetrics };
}

function metric(record: BuildRecord, phase: string, project: string): PhaseMetric | undefined {
  return record.phases.find((p) => p.name === phase && p.project === project);
}

describe('Nx monorepo (real Nx 22)', () => {
  let first: FixtureRepo;

  it('installs Nx with npm ci, detects the workspace from Nx and builds every app: three images, one app without', async () => {
    first = await newRepo();
    expect(existsSync(join(first.dir, 'node_modules'))).toBe(false);
    const images = new FakeImageBuilder();
    const result = await build(first, {}, images);
    console.info(`nx full build (npm ci + cold caches): ${result.ms} ms`);

    expect(result.error, result.log.slice(-40).join('\n')).toBeUndefined();
    expect(result.record.status).toBe('succeeded');
    expect(result.log.some((l) => l.includes('npm ci'))).toBe(true);
    nodeModules = join(first.dir, 'node_modules');
    expect(existsSync(join(nodeModules, 'nx', 'package.json'))).toBe(true);

    // Every project with a build target, the library included
    expect(result.built).toEqual(ALL_PROJECTS);
    for (const m of result.buildMetrics) {
      expect(m.status).toBe('succeeded');
      expect(m.cached).toBe(false);
    }
    expect(images.built.map((s) => s.project).sort()).toEqual(APPS_WITH_DOCKERFILE);
    expect(result.record.images.map((i) => i.repository).sort()).toEqual(APPS_WITH_DOCKERFILE.map((a) => `sample-nx-monorepo/${a}`));
    const goSpec = images.built.find((s) => s.project === 'go-app')!;
    expect(goSpec.contextDir).toBe(join(first.dir, 'apps/go-app'));
    expect(goSpec.dockerfile).toBe(join(first.dir, 'apps/go-app/Dockerfile'));

    const summary = Object.fromEntries((result.record.projects ?? []).map((p) => [p.name, p]));
    expect(summary['go-app']).toMatchObject({ language: 'go', root: 'apps/go-app', built: true });
    expect(summary['java-app']).toMatchObject({ language: 'java', built: true });
    expect(summary['dotnet-app']).toMatchObject({ language: 'dotnet', built: true });
    expect(summary['cli-tool']!.noImageReason).toMatch(/no Dockerfile/);
    expect(summary['shared']).toMatchObject({ language: 'go', root: 'libs/shared', built: true });
    expect(summary['shared']!.noImageReason).toMatch(/no Dockerfile/);
    // dependsOn ^build: the library built before the app that depends on it
    const shared = metric(result.record, 'build', 'shared')!;
    const goApp = metric(result.record, 'build', 'go-app')!;
    expect(Date.parse(shared.startedAt) + shared.durationMs).toBeLessThanOrEqual(Date.parse(goApp.startedAt) + 5);

    // The targets' outputs, where the Dockerfiles copy them from
    expect(existsSync(join(first.dir, 'apps/go-app/dist/go-app'))).toBe(true);
    expect(existsSync(join(first.dir, 'apps/java-app/target/java-app-1.0.0.jar'))).toBe(true);
    expect(existsSync(join(first.dir, 'apps/dotnet-app/dist/dotnet-app.dll'))).toBe(true);
    // go-app really uses the shared library
    expect(execFileSync(join(first.dir, 'apps/go-app/dist/go-app'), { encoding: 'utf8' })).toContain('(shared v1)');
    // Nx's output is in the build log
    expect(result.log.some((l) => l.includes('> nx run java-app:build'))).toBe(true);
  });

  it('serves a repeated build of the same commit from the Nx cache, in a fresh directory', async () => {
    const again = await newRepo();
    expect(again.commit).toBe(first.commit);
    const result = await build(again);
    console.info(`nx unchanged rebuild (other directory): ${result.ms} ms`);

    expect(result.error, result.log.slice(-40).join('\n')).toBeUndefined();
    expect(result.built).toEqual(ALL_PROJECTS);
    for (const m of result.buildMetrics) expect({ project: m.project, cached: m.cached }).toEqual({ project: m.project, cached: true });
    expect(result.record.projects!.every((p) => p.cached === true)).toBe(true);
    // Nx restored the outputs the images need
    expect(existsSync(join(again.dir, 'apps/go-app/dist/go-app'))).toBe(true);
    expect(existsSync(join(again.dir, 'apps/java-app/target/java-app-1.0.0.jar'))).toBe(true);
    expect(result.log.some((l) => /> nx run go-app:build\s+\[local cache\]/.test(l))).toBe(true);
  });

  it('--affected: a change to the Go app builds and images only it (real buildah)', async () => {
    const repo = await newRepo();
    const base = repo.commit;
    await writeFile(join(repo.dir, 'apps/go-app/main.go'), readFileSync(join(repo.dir, 'apps/go-app/main.go'), 'utf8').replace('"go-app"', '"go-app, changed"'));
    repo.commitAll('change go-app');

    const storage = await tempDir('oci-build-nx-buildah-');
    try {
      const images = createBuildahImageBuilder({
        run: runCommand,
        options: { root: join(storage.path, 'root'), runRoot: join(storage.path, 'runroot'), storageDriver: 'vfs', isolation: 'chroot' },
      });
      const result = await build(repo, { affectedBase: base }, images);
      console.info(`nx affected build (go-app changed, buildah image): ${result.ms} ms`);
      expect(result.error, result.log.slice(-40).join('\n')).toBeUndefined();
      expect(result.built).toEqual(['go-app']);
      expect(metric(result.record, 'build', 'go-app')!.cached).toBe(false);
      expect(result.record.images.map((i) => i.project)).toEqual(['go-app']);
      expect(result.record.images[0]!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(result.log.some((l) => /1 project affected \(go-app\)/.test(l))).toBe(true);
      const listed = execFileSync('buildah', ['--root', join(storage.path, 'root'), '--runroot', join(storage.path, 'runroot'), '--storage-driver', 'vfs', 'images', '--format', '{{.Name}}:{{.Tag}}'], {
        encoding: 'utf8',
      });
      expect(listed).toContain('sample-nx-monorepo/go-app:sha-');
      expect(listed).not.toContain('java-app');
    } finally {
      execFileSync('rm', ['-rf', storage.path]);
    }
  });

  it('--affected: a change to libs/shared rebuilds its dependents and nothing else', async () => {
    const repo = await newRepo();
    const base = repo.commit;
    const file = join(repo.dir, 'libs/shared/greeting.go');
    const text = readFileSync(file, 'utf8');
    await writeFile(file, text.replace('shared v1', 'shared v2'));
    repo.commitAll('change the shared library');

    const images = new FakeImageBuilder();
    const result = await build(repo, { affectedBase: base }, images);
    expect(result.error, result.log.slice(-40).join('\n')).toBeUndefined();
    expect(result.built).toEqual(['go-app', 'shared']);
    expect(metric(result.record, 'build', 'go-app')!.cached).toBe(false);
    expect(metric(result.record, 'build', 'shared')!.cached).toBe(false);
    expect(images.built.map((s) => s.project)).toEqual(['go-app']);
    expect(result.log.some((l) => /2 projects affected \(shared, go-app\)/.test(l))).toBe(true);
    expect(execFileSync(join(repo.dir, 'apps/go-app/dist/go-app'), { encoding: 'utf8' })).toContain('(shared v2)');
  });

  it('a failing project fails the build with its error; the other projects keep their results', async () => {
    const repo = await newRepo();
    await writeFile(join(repo.dir, 'apps/java-app/src/main/java/dev/ocibuild/nx/Broken.java'), 'package dev.ocibuild.nx;\nclass Broken {\n');
    await appendFile(join(repo.dir, 'apps/go-app/main.go'), '\n// a comment: go-app rebuilds\n');
    repo.commitAll('break java-app');

    const images = new FakeImageBuilder();
    const result = await build(repo, {}, images);
    expect(result.record.status).toBe('failed');
    expect(result.error?.exitCode).toBe(1);
    expect(result.record.error?.phase).toBe('build');
    expect(result.record.error?.message).toMatch(/java-app/);
    expect(result.record.error?.message).toMatch(/Broken\.java.*reached end of file while parsing/);

    const java = metric(result.record, 'build', 'java-app')!;
    expect(java.status).toBe('failed');
    expect(java.error).toMatch(/nx run java-app:build failed/);
    for (const project of ['cli-tool', 'dotnet-app', 'go-app', 'shared']) expect(metric(result.record, 'build', project)?.status).toBe('succeeded');
    expect(metric(result.record, 'build', 'go-app')!.cached).toBe(false);
    expect(metric(result.record, 'build', 'dotnet-app')!.cached).toBe(true);
    expect(images.built).toEqual([]);
  });

  it('a failing library fails its dependents, which name it; projects that do not depend on it build', async () => {
    const repo = await newRepo();
    await appendFile(join(repo.dir, 'libs/shared/greeting.go'), '\nfunc Broken() int { return "not an int" }\n');
    repo.commitAll('break the shared library');

    const result = await build(repo, { projects: ['go-app', 'java-app'] });
    expect(result.record.status).toBe('failed');
    expect(result.built).toEqual(['go-app', 'java-app']);
    const goApp = metric(result.record, 'build', 'go-app')!;
    expect(goApp.status).toBe('failed');
    expect(goApp.error).toMatch(/nx run go-app:build did not run: a task it depends on failed: shared:build failed:[\s\S]*greeting\.go:\d+:\d+: cannot use "not an int"/);
    expect(result.record.error?.message).toMatch(/^Project go-app failed to build: .*shared:build failed/s);
    expect(metric(result.record, 'build', 'java-app')).toMatchObject({ status: 'succeeded', cached: true });
  });

  it('--project of an app without a Dockerfile: built, then the image phase fails naming the path', async () => {
    const repo = await newRepo();
    const result = await build(repo, { projects: ['cli-tool'] });
    expect(result.built).toEqual(['cli-tool']);
    expect(metric(result.record, 'build', 'cli-tool')!.status).toBe('succeeded');
    expect(result.record.status).toBe('failed');
    expect(result.error?.exitCode).toBe(1);
    expect(result.record.error?.phase).toBe('image');
    expect(result.record.error?.message).toContain(join(repo.dir, 'apps/cli-tool/Dockerfile'));
  });

  it('cancelling stops Nx and the task processes it started', async () => {
    const repo = await newRepo();
    const projectJson = join(repo.dir, 'apps/cli-tool/project.json');
    const marker = `sleep ${70 + (process.pid % 20)}.5`;
    await writeFile(projectJson, readFileSync(projectJson, 'utf8').replace('"go build', `"${marker} && go build`));
    const controller = new AbortController();
    const lines: string[] = [];
    const workspace = await createNxDetector({ run: buildRun, cache }).detect(repo.dir, { name: 'cancel', projects: ['cli-tool'] }, { signal: controller.signal, log: { write: (l) => void lines.push(l) } });
    const running = () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.startsWith(marker));
    const build = createNxBuilder({ run: buildRun, cache, killGraceMs: 2000 }).build(workspace, { signal: controller.signal, log: { write: (l) => void lines.push(l) } });
    const settled = build.catch((e: unknown) => e);
    const deadline = Date.now() + 60_000;
    while (!running() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(running()).toBe(true);
    const t0 = Date.now();
    controller.abort();
    const error = await settled;
    expect(error).toBeInstanceOf(CancelledError);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(running()).toBe(false);
  });

  it('--project with an unknown name is an input error listing the projects', async () => {
    const repo = await newRepo();
    const result = await build(repo, { projects: ['go-app', 'nope'] });
    expect(result.error?.exitCode).toBe(2);
    expect(result.record.error?.phase).toBe('detect');
    expect(result.record.error?.message).toMatch(/Unknown Nx project "nope".*"cli-tool".*"dotnet-app".*"go-app".*"java-app".*"shared"/);
    expect(result.buildMetrics).toEqual([]);
  });
});
