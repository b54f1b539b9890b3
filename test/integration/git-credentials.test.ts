// Credentials reach the server through onAuth only: never the mirror, a file, a log line or an error.

import { execFileSync } from 'node:child_process';
import { readdir, readFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GitAuthError, GitRefNotFoundError } from '../../src/core/errors.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

const TOKEN = 'tok_S3cretValue_4242';
const GIT = { depth: 50, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1 };

function context(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, log: { write: (line) => lines.push(line) }, lines };
}

function job(url: string, id: string): BuildJob {
  return { id, trigger: 'cli', source: { kind: 'git', url }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: new Date().toISOString() };
}

/** Every file under `dir` whose bytes contain `needle` (or its base64 / URL-encoded forms). */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const forms = [needle, Buffer.from(needle).toString('base64'), encodeURIComponent(needle), Buffer.from(`x-access-token:${needle}`).toString('base64')];
  const hits: string[] = [];
  const walk = async (path: string) => {
    const info = await lstat(path);
    if (info.isDirectory()) {
      for (const name of await readdir(path)) await walk(join(path, name));
    } else if (info.isFile()) {
      const content = await readFile(path);
      if (forms.some((form) => content.includes(form))) hits.push(path);
    }
  };
  await walk(dir);
  return hits;
}

describe('git source: credentials', () => {
  let server: GitServer;
  let tmp: TempDir;
  let commit: string;

  beforeAll(async () => {
    server = await startGitServer({ token: TOKEN });
    tmp = await tempDir();
    const work = await workRepo(tmp);
    commit = work.commit({ 'a.txt': 'private\n' });
    await server.addRepo('acme/private', work.dir);
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  it('uses a token given in the URL, and it appears nowhere under workDir nor in any output', async () => {
    const workDir = join(tmp.path, 'wd-url');
    const ctx = context();
    const url = server.url('acme/private', { auth: `ci-user:${TOKEN}` });
    const provider = createSourceProvider({ workDir, git: GIT });
    const checkout = await provider.checkout(job(url, 'with-url-token').source, job(url, 'with-url-token'), ctx);
    expect(checkout.repository.commit).toBe(commit);
    expect(checkout.repository.cloneUrl).toBe(server.url('acme/private'));
    // the server really checked it
    expect(server.requests.some((r) => r.status === 401)).toBe(true);
    expect(server.requests.some((r) => r.authorization !== undefined && r.status === 200)).toBe(true);

    expect(await filesContaining(workDir, TOKEN)).toEqual([]);
    const output = JSON.stringify([ctx.lines, checkout.repository, checkout.warnings]);
    expect(output).not.toContain(TOKEN);
    expect(execFileSync('git', ['config', '--file', join(workDir, 'repos', `127.0.0.1_${server.port}`, 'acme', 'private', 'config'), 'remote.origin.url'], { encoding: 'utf8' }).trim()).toBe(
      server.url('acme/private'),
    );
    // a second build (fetch into an existing mirror) leaves no trace either
    const again = await provider.checkout(job(url, 'again').source, job(url, 'again'), ctx);
    expect(again.repository.commit).toBe(commit);
    await checkout.dispose();
    await again.dispose();
    expect(await filesContaining(workDir, TOKEN)).toEqual([]);
    expect(ctx.lines.join('\n')).not.toContain(TOKEN);
  });

  it('uses git.token from the config', async () => {
    const workDir = join(tmp.path, 'wd-config');
    const ctx = context();
    const provider = createSourceProvider({ workDir, git: { ...GIT, token: TOKEN } });
    const checkout = await provider.checkout(job(server.url('acme/private'), 'cfg').source, job(server.url('acme/private'), 'cfg'), ctx);
    expect(checkout.repository.commit).toBe(commit);
    await checkout.dispose();
    expect(await filesContaining(workDir, TOKEN)).toEqual([]);
    expect(ctx.lines.join('\n')).not.toContain(TOKEN);
  });

  it('fails at once with GitAuthError on a wrong or missing token, without echoing it', async () => {
    const ctx = context();
    const wrong = 'tok_Wrong_Value_9999';
    const url = server.url('acme/private', { auth: `ci-user:${wrong}` });
    const started = server.requests.length;
    const error = await createSourceProvider({ workDir: join(tmp.path, 'wd-wrong'), git: { ...GIT, retries: 3 } })
      .checkout(job(url, 'wrong').source, job(url, 'wrong'), ctx)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitAuthError);
    expect((error as GitAuthError).exitCode).toBe(3);
    expect(JSON.stringify({ m: (error as Error).message, h: (error as GitAuthError).hint, l: ctx.lines })).not.toContain(wrong);
    // no retry of a permanent failure: one discovery without, one with the credentials
    expect(server.requests.length - started).toBe(2);
    expect(await filesContaining(join(tmp.path, 'wd-wrong'), wrong)).toEqual([]);

    const none = await createSourceProvider({ workDir: join(tmp.path, 'wd-none'), git: GIT })
      .checkout(job(server.url('acme/private'), 'none').source, job(server.url('acme/private'), 'none'), context())
      .catch((e: unknown) => e);
    expect(none).toBeInstanceOf(GitAuthError);
    expect((none as GitAuthError).hint).toContain('OCI_BUILD_GIT_TOKEN');
  });

  it('reports a repository that does not exist as not found, without retrying', async () => {
    const url = server.url('acme/missing', { auth: `u:${TOKEN}` });
    const error = await createSourceProvider({ workDir: join(tmp.path, 'wd-missing'), git: { ...GIT, retries: 3 } })
      .checkout(job(url, 'missing').source, job(url, 'missing'), context())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    expect((error as Error).message).not.toContain(TOKEN);
  });
});
