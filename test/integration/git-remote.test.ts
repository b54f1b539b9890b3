// Remote sources against a real smart-HTTP server (git http-backend on loopback).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GitRefNotFoundError, InputError, ServiceUnavailableError } from '../../src/core/errors.js';
import type { PhaseContext, SourceCheckout } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { archiveOf, snapshot, startGitServer, workRepo, type GitServer, type WorkRepo } from '../helpers/git-http-server.js';

const GIT = { depth: 50, retries: 1, retryDelayMs: 10, retryMaxDelayMs: 20, tokenHosts: [] };

function context(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, log: { write: (line) => lines.push(line) }, lines };
}

let jobCounter = 0;
function job(url: string, ref?: string, extra: Partial<BuildJob> = {}): BuildJob {
  jobCounter += 1;
  return {
    id: `build-${jobCounter}`,
    trigger: 'cli',
    source: { kind: 'git', url, ...(ref !== undefined ? { ref } : {}) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
    ...extra,
  };
}

describe('git source: remote through the mirror', () => {
  let server: GitServer;
  let tmp: TempDir;
  let work: WorkRepo;
  let workDir: string;
  const commits: Record<string, string> = {};
  const open: SourceCheckout[] = [];

  beforeAll(async () => {
    server = await startGitServer();
    tmp = await tempDir();
    workDir = join(tmp.path, 'work-dir');
    work = await workRepo(tmp);
    commits.first = work.commit({ 'README.md': 'one\n', 'src/main.go': 'package main\n' }, 'first');
    work.git(['tag', 'v1']);
    work.git(['tag', '-a', 'v1-annotated', '-m', 'annotated']);
    commits.second = work.commit({ 'README.md': 'two\n', 'bin/run.sh': '#!/bin/sh\necho hi\n' }, 'second');
    work.git(['update-index', '--chmod=+x', 'bin/run.sh']);
    work.git(['commit', '-q', '-m', 'exec bit']);
    commits.third = work.git(['rev-parse', 'HEAD']);
    work.git(['checkout', '-q', '-b', 'feature/x']);
    commits.feature = work.commit({ 'feature.txt': 'feature\n' }, 'feature');
    work.git(['checkout', '-q', 'main']);
    await server.addRepo('acme/widget', work.dir);
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.dispose()));
  });

  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  const provider = () => createSourceProvider({ workDir, git: GIT });

  it('clones into <workDir>/repos/<host>/<owner>/<name> and checks the default branch out', async () => {
    const ctx = context();
    const checkout = await provider().checkout(job(server.url('acme/widget')).source, job(server.url('acme/widget')), ctx);
    open.push(checkout);
    expect(checkout.repository).toMatchObject({
      fullName: 'acme/widget',
      cloneUrl: server.url('acme/widget'),
      ref: 'refs/heads/main',
      branch: 'main',
      commit: commits.third,
    });
    expect(checkout.warnings).toEqual([]);
    expect(checkout.dir.startsWith(join(workDir, 'worktrees'))).toBe(true);
    expect(existsSync(join(workDir, 'repos', `127.0.0.1_${server.port}`, 'acme', 'widget', 'config'))).toBe(true);
    const archive = await archiveOf(work.dir, commits.third!);
    expect(await snapshot(checkout.dir)).toEqual(await snapshot(archive.path));
    await archive.cleanup();
    expect(await snapshot(checkout.dir)).toHaveProperty('bin/run.sh', expect.stringMatching(/^\+x /));
    expect(checkout.commitTime).toBe(Number(work.git(['log', '-1', '--format=%ct', commits.third!])));
    await checkout.dispose();
    expect(existsSync(checkout.dir)).toBe(false);
  });

  it.each([
    ['branch', 'feature/x', 'feature', { branch: 'feature/x', ref: 'refs/heads/feature/x' }],
    ['full branch ref', 'refs/heads/main', 'third', { branch: 'main', ref: 'refs/heads/main' }],
    ['tag', 'v1', 'first', { tag: 'v1', ref: 'refs/tags/v1' }],
    ['annotated tag', 'refs/tags/v1-annotated', 'first', { tag: 'v1-annotated', ref: 'refs/tags/v1-annotated' }],
    ['full SHA', 'second', 'second', {}],
    ['short SHA', 'second:7', 'second', {}],
  ] as const)('builds by %s', async (_what, refSpec, commitName, expected) => {
    let ref: string = refSpec;
    if (refSpec === 'second') ref = commits.second!;
    if (refSpec === 'second:7') ref = commits.second!.slice(0, 7);
    const j = job(server.url('acme/widget'), ref);
    const checkout = await provider().checkout(j.source, j, context());
    open.push(checkout);
    const commit = commits[commitName]!;
    expect(checkout.repository.commit).toBe(commit);
    expect(checkout.repository).toMatchObject(Object.keys(expected).length ? expected : { ref: commit });
    const archive = await archiveOf(work.dir, commit);
    expect(await snapshot(checkout.dir)).toEqual(await snapshot(archive.path));
    await archive.cleanup();
  });

  it('fetches new commits on the next build', async () => {
    const before = work.commit({ 'new.txt': 'new\n' }, 'after the clone');
    work.git(['push', '-q', server.repoPath('acme/widget'), 'main']);
    const ctx = context();
    const j = job(server.url('acme/widget'));
    const checkout = await provider().checkout(j.source, j, ctx);
    open.push(checkout);
    expect(checkout.repository.commit).toBe(before);
    expect(await readFile(join(checkout.dir, 'new.txt'), 'utf8')).toBe('new\n');
    expect(ctx.lines.some((l) => l.startsWith('fetching '))).toBe(true);
    commits.main = before;
    // native git finds the mirror (packs and indexes written by us) complete and consistent
    execFileSync('git', ['--git-dir', join(workDir, 'repos', `127.0.0.1_${server.port}`, 'acme', 'widget'), 'fsck', '--no-dangling', '--strict'], { stdio: 'pipe' });
    expect(execFileSync('git', ['--git-dir', join(workDir, 'repos', `127.0.0.1_${server.port}`, 'acme', 'widget'), 'rev-parse', 'refs/remotes/origin/main'], { encoding: 'utf8' }).trim()).toBe(before);
  });

  it('says so when the remote repository is empty', async () => {
    const empty = await workRepo(tmp, 'empty');
    await server.addRepo('acme/empty', empty.dir);
    const j = job(server.url('acme/empty'));
    const error = await provider().checkout(j.source, j, context()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    expect((error as Error).message).toMatch(/is empty: it has no commits yet/);
  });

  it('refuses an unknown ref at once', async () => {
    const j = job(server.url('acme/widget'), 'no-such-branch');
    await expect(provider().checkout(j.source, j, context())).rejects.toBeInstanceOf(GitRefNotFoundError);
  });

  it('checks two commits of one repository out at the same time', async () => {
    const a = job(server.url('acme/widget'), commits.first);
    const b = job(server.url('acme/widget'), 'feature/x');
    const p = provider();
    const [ca, cb] = await Promise.all([p.checkout(a.source, a, context()), p.checkout(b.source, b, context())]);
    open.push(ca, cb);
    expect(ca.dir).not.toBe(cb.dir);
    expect(ca.repository.commit).toBe(commits.first);
    expect(cb.repository.commit).toBe(commits.feature);
    expect(await readFile(join(ca.dir, 'README.md'), 'utf8')).toBe('one\n');
    expect(existsSync(join(ca.dir, 'feature.txt'))).toBe(false);
    expect(await readFile(join(cb.dir, 'feature.txt'), 'utf8')).toBe('feature\n');
  });

  it('lists the files changed since a base commit', async () => {
    const j = job(server.url('acme/widget'), 'main');
    const checkout = await provider().checkout(j.source, j, context());
    open.push(checkout);
    expect(await checkout.changedFilesSince(commits.first!, context())).toEqual(['README.md', 'bin/run.sh', 'new.txt']);
    expect(await checkout.changedFilesSince('0'.repeat(40), context())).toBeUndefined();
    expect(await checkout.changedFilesSince('1234567890123456789012345678901234567890', context())).toBeUndefined();
  });

  it('refuses hostile repository names before touching any file', async () => {
    const hostile = [
      `http://127.0.0.1:${server.port}/../../etc/passwd.git`,
      `http://127.0.0.1:${server.port}/acme/%2e%2e/x.git`,
      `http://127.0.0.1:${server.port}/acme/..%2fx.git`,
      `http://127.0.0.1:${server.port}//etc/x.git`,
      `http://127.0.0.1:${server.port}/acme//x.git`,
      `http://127.0.0.1:${server.port}/acme/x\u0001y.git`,
      `http://127.0.0.1:${server.port}/acme/..`,
      `http://127.0.0.1:${server.port}/`,
      `file:///etc/passwd`,
      `/etc/passwd`,
    ];
    const fresh = await tempDir();
    const p = createSourceProvider({ workDir: join(fresh.path, 'wd'), git: GIT });
    for (const url of hostile) {
      const j = job(url);
      await expect(p.checkout(j.source, j, context()), url).rejects.toBeInstanceOf(InputError);
    }
    for (const ref of ['../../../etc/passwd', 'a..b', '-x', 'refs/heads/.hidden', 'a b']) {
      const j = job(server.url('acme/widget'), ref);
      await expect(p.checkout(j.source, j, context()), ref).rejects.toBeInstanceOf(InputError);
    }
    expect(existsSync(join(fresh.path, 'wd'))).toBe(false);
    await fresh.cleanup();
  });

  it('builds from the mirror when the remote is down, and fails with exit 3 for what the mirror lacks', async () => {
    await server.stop();
    try {
      const ctx = context();
      const j = job(server.url('acme/widget'), 'main');
      const checkout = await provider().checkout(j.source, j, ctx);
      open.push(checkout);
      expect(checkout.repository.commit).toBe(commits.main);
      expect(checkout.warnings).toHaveLength(1);
      expect(checkout.warnings[0]).toMatch(new RegExp(`^remote ${server.url('acme/widget').replace(/[.]/g, '\\.')} unreachable \\(ECONNREFUSED.*\\): built from the mirror as of \\d{4}-\\d\\d-\\d\\dT`));
      expect(ctx.lines.some((l) => /retry 1 of 1/.test(l))).toBe(true);

      const missing = job(server.url('acme/widget'), 'no-such-branch');
      const error = await provider().checkout(missing.source, missing, context()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ServiceUnavailableError);
      expect((error as ServiceUnavailableError).exitCode).toBe(3);
      expect((error as Error).message).toContain(server.url('acme/widget'));
      expect((error as Error).message).toContain('ECONNREFUSED');

      const never = job(server.url('acme/never-cloned'));
      await expect(provider().checkout(never.source, never, context())).rejects.toBeInstanceOf(ServiceUnavailableError);
    } finally {
      await server.restart();
    }
  });

  it("reuses a finished build's worktree, leaving exactly the new commit's files", async () => {
    const p = provider();
    const first = job(server.url('acme/widget'), 'feature/x');
    const a = await p.checkout(first.source, first, context());
    // what a build leaves behind: outputs, a changed tracked file, a tracked file swapped for a
    // link pointing outside, a deleted file, a changed mode
    await mkdir(join(a.dir, 'dist', 'deep'), { recursive: true });
    await writeFile(join(a.dir, 'dist', 'deep', 'out.bin'), 'output');
    await writeFile(join(a.dir, 'README.md'), 'changed by the build');
    await rm(join(a.dir, 'src', 'main.go'));
    await symlink('/etc', join(a.dir, 'src', 'main.go'));
    await rm(join(a.dir, 'feature.txt'));
    await chmod(join(a.dir, 'bin', 'run.sh'), 0o644);
    await a.dispose();
    expect(existsSync(a.dir)).toBe(false);

    for (const [ref, commit] of [['main', commits.main], ['feature/x', commits.feature]] as const) {
      const ctx = context();
      const next = job(server.url('acme/widget'), ref);
      const b = await p.checkout(next.source, next, ctx);
      expect(ctx.lines.some((l) => /reused the worktree of/.test(l))).toBe(true);
      const archive = await archiveOf(work.dir, commit!);
      expect(await snapshot(b.dir)).toEqual(await snapshot(archive.path));
      await archive.cleanup();
      await b.dispose();
    }
  });

  it('leaves no build worktree behind', async () => {
    await Promise.all(open.splice(0).map((c) => c.dispose()));
    const left = existsSync(join(workDir, 'worktrees')) ? await readdir(join(workDir, 'worktrees')) : [];
    expect(left.filter((name) => name !== '.spare')).toEqual([]);
  });
});
