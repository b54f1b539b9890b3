// Remotes whose HEAD names no existing branch (a dangling `ref: refs/heads/main` on a repository
// that only has `develop`) and empty remotes, against a real smart-HTTP server: a build without
// --ref fails with a message that names the remote and its branches, and --ref still works.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, GitRefNotFoundError, OciBuildError } from '../../src/core/errors.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

const GIT = { depth: 50, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1, tokenHosts: [] };

function context(): PhaseContext {
  return { signal: new AbortController().signal, log: { write: () => {} } };
}

let counter = 0;
function job(url: string, ref?: string): BuildJob {
  counter += 1;
  return {
    id: `head-${counter}`,
    trigger: 'cli',
    source: { kind: 'git', url, ...(ref !== undefined ? { ref } : {}) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

/** Native git on a bare repository the server serves. */
function bare(server: GitServer, name: string, args: string[]): string {
  return execFileSync('git', ['--git-dir', server.repoPath(name), ...args], { encoding: 'utf8' }).trim();
}

describe('git source: a remote HEAD that names no branch', () => {
  let server: GitServer;
  let tmp: TempDir;
  let develop: string;

  beforeAll(async () => {
    server = await startGitServer();
    tmp = await tempDir();
    const work = await workRepo(tmp, 'dangling');
    work.git(['checkout', '-q', '-b', 'develop']);
    develop = work.commit({ 'README.md': 'develop\n' }, 'on develop');
    work.git(['tag', 'v1']);
    await server.addRepo('acme/dangling', work.dir);
    // The served repository has `develop` only, while its HEAD still says `ref: refs/heads/main`.
    bare(server, 'acme/dangling', ['symbolic-ref', 'HEAD', 'refs/heads/main']);
    expect(bare(server, 'acme/dangling', ['branch', '--list']).split('\n').map((b) => b.trim())).toEqual(['develop']);
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  it('fails without --ref, naming the remote without credentials and the branches it has', async () => {
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-no-ref'), git: GIT });
    const j = job(server.url('acme/dangling', { auth: 'robot:s3cret-token' }));
    const error = await provider.checkout(j.source, j, context()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    const e = error as OciBuildError;
    expect(e.code).toBe('E_REF_NOT_FOUND');
    expect(e.exitCode).toBe(ExitCode.Usage);
    expect(e.message).toBe(
      `The Git remote ${server.url('acme/dangling')} has no default branch: its HEAD names a branch that does not exist. Its branches: develop`,
    );
    expect(e.hint).toMatch(/--ref BRANCH \(for example --ref develop\)/);
    expect(JSON.stringify(e.toJSON())).not.toContain('s3cret-token');
  });

  it('builds the branch given with --ref', async () => {
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-ref'), git: GIT });
    const j = job(server.url('acme/dangling'), 'develop');
    const checkout = await provider.checkout(j.source, j, context());
    expect(checkout.repository).toMatchObject({ commit: develop, branch: 'develop', ref: 'refs/heads/develop' });
    await checkout.dispose();
    // The stand-in HEAD that let the fetch through is not left in the mirror as origin/HEAD.
    const mirror = join(tmp.path, 'wd-ref', 'repos', `127.0.0.1_${server.port}`, 'acme', 'dangling');
    const showRef = (ref: string) => execFileSync('git', ['--git-dir', mirror, 'for-each-ref', '--format=%(refname)', ref], { encoding: 'utf8' }).trim();
    expect(showRef('refs/remotes/origin/')).toBe('refs/remotes/origin/develop');
    // The mirror does not remember `develop` as the default branch: without --ref it still fails.
    const again = job(server.url('acme/dangling'));
    await expect(provider.checkout(again.source, again, context())).rejects.toThrow(/its HEAD names a branch that does not exist/);
    // Tags came with the fetch too.
    const tagged = job(server.url('acme/dangling'), 'v1');
    const byTag = await provider.checkout(tagged.source, tagged, context());
    expect(byTag.repository).toMatchObject({ commit: develop, tag: 'v1' });
    await byTag.dispose();
  });

  it('lists at most 10 branches', async () => {
    const work = await workRepo(tmp, 'many');
    work.commit({ 'a.txt': 'a\n' }, 'first');
    const names = Array.from({ length: 13 }, (_, i) => `b${String(i).padStart(2, '0')}`);
    for (const name of names) work.git(['branch', name]);
    work.git(['branch', '-m', 'main', 'trunk']);
    await server.addRepo('acme/many', work.dir);
    bare(server, 'acme/many', ['symbolic-ref', 'HEAD', 'refs/heads/main']);
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-many'), git: GIT });
    const j = job(server.url('acme/many'));
    const error = await provider.checkout(j.source, j, context()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    expect((error as Error).message).toMatch(/Its branches: b00, b01, b02, b03, b04, b05, b06, b07, b08, b09 and 4 more$/);
    // A conventional default branch name is the example, when there is one.
    expect((error as OciBuildError).hint).toMatch(/for example --ref trunk\)/);
  });

  it('builds the default branch again once the remote HEAD is repaired', async () => {
    const work = await workRepo(tmp, 'repaired');
    work.git(['checkout', '-q', '-b', 'master']);
    const master = work.commit({ 'x.txt': 'x\n' }, 'on master');
    await server.addRepo('acme/repaired', work.dir);
    bare(server, 'acme/repaired', ['symbolic-ref', 'HEAD', 'refs/heads/main']);
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-repaired'), git: GIT });
    const j = job(server.url('acme/repaired'));
    await expect(provider.checkout(j.source, j, context())).rejects.toThrow(/Its branches: master$/);
    bare(server, 'acme/repaired', ['symbolic-ref', 'HEAD', 'refs/heads/master']);
    const k = job(server.url('acme/repaired'));
    const checkout = await provider.checkout(k.source, k, context());
    expect(checkout.repository).toMatchObject({ commit: master, branch: 'master' });
    await checkout.dispose();
  });

  it('says an empty remote has no commits yet', async () => {
    const empty = await workRepo(tmp, 'empty');
    await server.addRepo('acme/empty', empty.dir);
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-empty'), git: GIT });
    const j = job(server.url('acme/empty'));
    const error = await provider.checkout(j.source, j, context()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    const e = error as OciBuildError;
    expect(e.message).toBe(`The Git remote ${server.url('acme/empty')} is empty: it has no commits yet`);
    expect(e.exitCode).toBe(ExitCode.Usage);
    expect(e.hint).toMatch(/Push a commit/);
  });

  it('forgets the branches and tags of a remote that has been emptied, as a fresh clone would', async () => {
    const work = await workRepo(tmp, 'emptied');
    work.commit({ 'a.txt': 'a\n' }, 'first');
    work.git(['tag', 'v1']);
    await server.addRepo('acme/emptied', work.dir);
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-emptied'), git: GIT });
    const first = job(server.url('acme/emptied'), 'main');
    await (await provider.checkout(first.source, first, context())).dispose();

    bare(server, 'acme/emptied', ['update-ref', '-d', 'refs/heads/main']);
    bare(server, 'acme/emptied', ['tag', '-d', 'v1']);
    for (const ref of ['main', 'v1']) {
      const j = job(server.url('acme/emptied'), ref);
      const error = await provider.checkout(j.source, j, context()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GitRefNotFoundError);
      expect((error as Error).message).toBe(`The Git remote ${server.url('acme/emptied')} has no branch, tag or commit "${ref}"`);
    }
    const noRef = job(server.url('acme/emptied'));
    await expect(provider.checkout(noRef.source, noRef, context())).rejects.toThrow(/is empty: it has no commits yet$/);
    const mirror = join(tmp.path, 'wd-emptied', 'repos', `127.0.0.1_${server.port}`, 'acme', 'emptied');
    expect(execFileSync('git', ['--git-dir', mirror, 'for-each-ref'], { encoding: 'utf8' }).trim()).toBe('');
  });
});
