// runPipeline with the real git source provider against a real smart-HTTP server (the other
// phases are fakes): what reaches the BuildRecord, the log and the image specs.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPipeline } from '../../src/core/pipeline.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter, fakeBuilder, fakeDetector } from '../helpers/fakes.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

const TOKEN = 'pipeline_T0ken_Secret';

describe('pipeline with a Git URL source', () => {
  let server: GitServer;
  let tmp: TempDir;
  let workDir: string;
  let tagged: string;
  let head: string;

  beforeAll(async () => {
    server = await startGitServer({ token: TOKEN });
    tmp = await tempDir();
    workDir = join(tmp.path, 'wd');
    const work = await workRepo(tmp);
    tagged = work.commit({ 'Dockerfile': 'FROM scratch\n', 'main.go': 'package main\n' }, 'one');
    work.git(['tag', 'v1']);
    head = work.commit({ 'main.go': 'package main // two\n' }, 'two');
    await server.addRepo('acme/service', work.dir);
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  let n = 0;
  const job = (ref?: string): BuildJob => ({
    id: `pipe-${++n}`,
    trigger: 'cli',
    source: { kind: 'git', url: server.url('acme/service', { auth: `ci:${TOKEN}` }), ...(ref ? { ref } : {}) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  });
  const deps = () => {
    const images = new FakeImageBuilder();
    const logs = new MemoryLogStore();
    const reporter = new RecordingReporter();
    const store = new MemoryBuildStore();
    const source = createSourceProvider({ workDir, git: { depth: 50, retries: 1, retryDelayMs: 5, retryMaxDelayMs: 10, tokenHosts: [] } });
    return { source, detector: fakeDetector(), builder: fakeBuilder(), images, store, logs, reporter };
  };

  it('records the remote URL without credentials, the tag and the commit, and removes the worktree', async () => {
    const d = deps();
    const j = job('v1');
    const { record, error } = await runPipeline(j, d);
    expect(error).toBeUndefined();
    expect(record.status).toBe('succeeded');
    expect(record.repository).toMatchObject({ fullName: 'acme/service', cloneUrl: server.url('acme/service'), ref: 'refs/tags/v1', tag: 'v1', commit: tagged });
    expect(d.images.built[0]!.tags).toContain(`sha-${tagged.slice(0, 7)}`);
    expect(d.images.built[0]!.labels['org.opencontainers.image.revision']).toBe(tagged);
    const contextDir = d.images.built[0]!.contextDir;
    expect(contextDir.startsWith(join(workDir, 'worktrees'))).toBe(true);
    expect(existsSync(contextDir)).toBe(false);
    const everything = JSON.stringify({ record, logs: [...d.logs.lines.values()], warnings: d.reporter.warnings, specs: d.images.built });
    expect(everything).not.toContain(TOKEN);
  });

  // A push builds its commit by SHA, with the branch from the payload. Replayed or delivered late,
  // an older push must not move the branch tag back to its commit.
  const push = (commit: string, branch: string): BuildJob => ({
    ...job(commit),
    trigger: 'webhook',
    repository: { fullName: 'acme/service', cloneUrl: server.url('acme/service'), ref: `refs/heads/${branch}`, branch, commit },
  });

  it("a push of the branch's head gets the branch tag; an older push's build gets only its sha tag, with a warning", async () => {
    const current = deps();
    const newest = await runPipeline(push(head, 'main'), current);
    expect(newest.error).toBeUndefined();
    expect(current.images.built[0]!.tags).toEqual([`sha-${head.slice(0, 7)}`, 'main']);
    expect(newest.record.warnings ?? []).toEqual([]);

    const stale = deps();
    const older = await runPipeline(push(tagged, 'main'), stale);
    expect(older.error).toBeUndefined();
    expect(older.record.status).toBe('succeeded');
    expect(stale.images.built[0]!.tags).toEqual([`sha-${tagged.slice(0, 7)}`]);
    expect(older.record.images[0]!.tags).toEqual([`sha-${tagged.slice(0, 7)}`]);
    // The record still says which branch was pushed: listing by branch finds it.
    expect(older.record.repository.branch).toBe('main');
    expect(older.record.warnings).toEqual([
      `branch main has moved on to ${head.slice(0, 7)}: this image of ${tagged.slice(0, 7)} gets no main tag, so the tag never moves back to an older push`,
    ]);

    const deleted = deps();
    const gone = await runPipeline(push(head, 'feature/gone'), deleted);
    expect(deleted.images.built[0]!.tags).toEqual([`sha-${head.slice(0, 7)}`]);
    expect(gone.record.warnings?.[0]).toMatch(/^branch feature\/gone no longer exists on the remote/);
  });

  it('builds from the mirror with a warning when the remote is down, and exits 3 for what the mirror lacks', async () => {
    await server.stop();
    try {
      const d = deps();
      const { record, error } = await runPipeline(job(), d);
      expect(error).toBeUndefined();
      expect(record.repository.commit).toBe(head);
      const warning = record.phases.find((p) => p.name === 'source')?.warning;
      expect(warning).toMatch(/^remote http:\/\/127\.0\.0\.1:\d+\/acme\/service\.git unreachable \(ECONNREFUSED.*\): built from the mirror as of /);
      expect(record.warnings).toEqual([warning]);
      expect(d.reporter.warnings).toEqual([warning]);

      const failing = deps();
      const result = await runPipeline(job('does-not-exist'), failing);
      expect(result.record.status).toBe('failed');
      expect(result.error?.exitCode).toBe(3);
      expect(result.record.error).toMatchObject({ phase: 'source', code: 'E_SERVICE_UNAVAILABLE' });
      expect(result.record.error?.message).toContain(server.url('acme/service'));
      expect(JSON.stringify(result.record)).not.toContain(TOKEN);
    } finally {
      await server.restart();
    }
  });
});
