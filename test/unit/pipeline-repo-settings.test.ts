// runPipeline with a repository's `.oci-build.yaml` (behind the RepoSettingsReader port): what the
// file changes reaches the builder and the image builder, is in the record, and a webhook build of a
// branch it excludes ends `skipped`.

import { describe, expect, it } from 'vitest';
import { settingsFrom } from '../../src/config/repo-settings.js';
import { RepoSettingsError } from '../../src/core/errors.js';
import { runPipeline } from '../../src/core/pipeline.js';
import type { PipelineDeps, RepoSettingsReader } from '../../src/core/ports.js';
import type { BuildJob, Workspace } from '../../src/core/types.js';
import { COMMIT, FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter, fakeBuilder, fakeDetector, fakeSource } from '../helpers/fakes.js';

function job(overrides: Partial<BuildJob> = {}): BuildJob {
  return {
    id: 'b1',
    trigger: 'cli',
    source: { kind: 'local', path: '/src/app' },
    image: { registry: 'reg/ci', push: false, tlsVerify: true, buildArgs: { FROM_CLI: 'cli', SHARED: 'cli' } },
    createdAt: '2026-11-29T08:00:00.000Z',
    ...overrides,
  };
}

function reader(data: unknown, problems: Record<string, string> = {}): RepoSettingsReader & { checked: string[] } {
  const checked: string[] = [];
  return {
    checked,
    read: async () => (data === undefined ? undefined : settingsFrom(data, '.oci-build.yaml', 'b'.repeat(40))),
    checkPath: async (_tree, path) => {
      checked.push(path);
      return problems[path];
    },
  };
}

function deps(repoSettings: RepoSettingsReader, overrides: Partial<PipelineDeps> = {}) {
  const workspaces: Workspace[] = [];
  const images = new FakeImageBuilder();
  const all: PipelineDeps = {
    source: fakeSource(),
    detector: fakeDetector(),
    builder: fakeBuilder((ws) => {
      workspaces.push(ws);
      return ws.selected.map((project) => ({ project, status: 'succeeded', startedAt: new Date().toISOString(), durationMs: 1 }));
    }),
    images,
    store: new MemoryBuildStore(),
    logs: new MemoryLogStore(),
    reporter: new RecordingReporter(),
    repoSettings,
    ...overrides,
  };
  return { all, images, workspaces };
}

describe('runPipeline with .oci-build.yaml', () => {
  it('applies the command, Dockerfile, context, image name, build args and tags, and records them', async () => {
    const file = {
      projects: { app: { command: ['make', 'build'], dockerfile: 'build/Containerfile', context: 'build', image: 'payments-api', env: { A: '1' }, buildArgs: { SHARED: 'file', FROM_FILE: 'file' } } },
      image: { tags: ['latest', '{branch}-{shortSha}', 'v{tag}'] },
    };
    const r = reader(file);
    const d = deps(r);
    const { record, error } = await runPipeline(job(), d.all);
    expect(error).toBeUndefined();
    expect(record.status).toBe('succeeded');
    expect(d.workspaces[0]!.projects[0]).toMatchObject({ buildCommand: ['make', 'build'], env: { A: '1' } });
    expect(r.checked).toEqual(['/src/app/build/Containerfile', '/src/app/build']);
    expect(d.images.built[0]).toMatchObject({
      dockerfile: '/src/app/build/Containerfile',
      contextDir: '/src/app/build',
      repository: 'reg/ci/payments-api',
      tags: ['sha-0123456', 'main', 'latest', 'main-0123456'],
      // --build-arg wins over the file
      buildArgs: { FROM_CLI: 'cli', SHARED: 'cli', FROM_FILE: 'file' },
    });
    expect(record.images[0]).toMatchObject({ repository: 'reg/ci/payments-api', tags: ['sha-0123456', 'main', 'latest', 'main-0123456'] });
    expect(record.settings).toEqual({ file: '.oci-build.yaml', blob: 'b'.repeat(40), projects: { app: file.projects.app }, tags: ['latest', 'main-0123456'] });
    expect(record.warnings).toEqual(['.oci-build.yaml: image.tags "v{tag}" not added: this build has no tag ({tag} is known only when a tag is built)']);
  });

  it('a bad file fails the detect phase with every problem, exit 2', async () => {
    const d = deps({ read: async () => settingsFrom({ projects: { app: { command: 'make' } }, image: { registry: 'x' } }, '.oci-build.yaml', 'b'.repeat(40)), checkPath: async () => undefined });
    const { record, error } = await runPipeline(job(), d.all);
    expect(error).toBeInstanceOf(RepoSettingsError);
    expect(error!.exitCode).toBe(2);
    expect(record).toMatchObject({ status: 'failed', error: { phase: 'detect', code: 'E_REPO_SETTINGS' } });
    expect(record.error!.message).toContain('.oci-build.yaml: projects.app.command: must be array');
    expect(record.error!.message).toContain(".oci-build.yaml: image.registry: is the operator's key");
    expect(record.phases.map((p) => [p.name, p.status])).toEqual([['source', 'succeeded'], ['detect', 'failed']]);
    expect(d.images.built).toHaveLength(0);
  });

  it('a Dockerfile or context that is not in the commit fails detect, naming each key', async () => {
    const d = deps(reader({ projects: { '.': { dockerfile: 'nope/Dockerfile', context: 'gone' } } }, { '/src/app/nope/Dockerfile': 'nope/Dockerfile does not exist in the commit built', '/src/app/gone': 'gone does not exist in the commit built' }));
    const { record } = await runPipeline(job(), d.all);
    expect(record.error?.message).toBe(
      'Invalid .oci-build.yaml (2 problems):\n  - .oci-build.yaml: projects["."].dockerfile: nope/Dockerfile does not exist in the commit built\n  - .oci-build.yaml: projects["."].context: gone does not exist in the commit built',
    );
  });

  it('a webhook build of an excluded branch ends skipped with the reason; a local one builds', async () => {
    const file = { branches: { include: ['release/*'] } };
    const webhook = deps(reader(file));
    const { record, error } = await runPipeline(job({ trigger: 'webhook' }), webhook.all);
    expect(error).toBeUndefined();
    expect(record).toMatchObject({ status: 'skipped', skipReason: 'branch main matches none of branches.include in .oci-build.yaml', settings: { branches: { include: ['release/*'], exclude: [] } } });
    expect(record.finishedAt).toBeDefined();
    expect(record.phases.map((p) => [p.name, p.status])).toEqual([['source', 'succeeded'], ['detect', 'succeeded']]);
    expect(webhook.workspaces).toHaveLength(0);
    const local = deps(reader(file));
    expect((await runPipeline(job(), local.all)).record.status).toBe('succeeded');
  });

  it('a build whose every project is disabled ends skipped', async () => {
    const d = deps(reader({ projects: { app: { enabled: false } } }));
    const { record } = await runPipeline(job(), d.all);
    expect(record).toMatchObject({ status: 'skipped', skipReason: 'every project of this build is disabled in .oci-build.yaml (projects.app.enabled: false)' });
    expect(d.workspaces).toHaveLength(0);
  });

  it('a repository without the file builds as before', async () => {
    const d = deps(reader(undefined));
    const { record } = await runPipeline(job(), d.all);
    expect(record.status).toBe('succeeded');
    expect(record.settings).toBeUndefined();
    expect(d.images.built[0]).toMatchObject({ repository: 'reg/ci/app', contextDir: '/src/app', tags: ['sha-0123456', 'main'] });
  });

  it('a limited tag is added on the default branch of a webhook build', async () => {
    const d = deps(reader({ image: { tags: [{ tag: 'latest', defaultBranch: true }, { tag: 'rc', branches: ['release/*'] }] } }));
    const { record } = await runPipeline(job({ trigger: 'webhook', repository: { fullName: 'acme/app', commit: COMMIT, branch: 'main', defaultBranch: 'main' } }), d.all);
    expect(record.images[0]!.tags).toEqual(['sha-0123456', 'main', 'latest']);
  });
});
