// Credentials reach the server through onAuth only: never the mirror, a file, a log line or an
// error; and git.token only to a host in git.tokenHosts, over HTTPS or plain HTTP to loopback.

import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GitAuthError, GitRefNotFoundError } from '../../src/core/errors.js';
import { runPipeline } from '../../src/core/pipeline.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { FakeImageBuilder, MemoryBuildStore, MemoryLogStore, RecordingReporter, fakeBuilder, fakeDetector } from '../helpers/fakes.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

const TOKEN = 'tok_S3cretValue_4242';
// git.tokenHosts as by default: the loopback test servers are not in it.
const GIT = { tokenHosts: ['github.com'], depth: 50, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1 };

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
    const provider = createSourceProvider({ workDir, git: { ...GIT, token: TOKEN, tokenHosts: [`127.0.0.1:${server.port}`] } });
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
    const started = server.requests.length;
    const error = await createSourceProvider({ workDir: join(tmp.path, 'wd-missing'), git: { ...GIT, retries: 3 } })
      .checkout(job(url, 'missing').source, job(url, 'missing'), context())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitRefNotFoundError);
    expect((error as Error).message).not.toContain(TOKEN);
    // With 3 retries allowed, the server still sees one discovery: without credentials (401), then
    // with them (404), and nothing after the 404.
    const seen = server.requests.slice(started).map((r) => `${r.status} ${r.authorization ? 'auth' : 'anonymous'} ${r.method} ${r.path}`);
    expect(seen).toEqual([
      '401 anonymous GET /acme/missing.git/info/refs?service=git-upload-pack',
      '404 auth GET /acme/missing.git/info/refs?service=git-upload-pack',
    ]);
  });
});

/** A remote that wants credentials from everyone and keeps every Authorization header it is sent. */
interface CredentialCatcher {
  url(path: string): string;
  port: number;
  /** One entry per request: its Authorization header, or undefined. */
  authorizations: Array<string | undefined>;
  close(): Promise<void>;
}

async function startCredentialCatcher(): Promise<CredentialCatcher> {
  const authorizations: Array<string | undefined> = [];
  const http: Server = createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="catcher"', 'Content-Type': 'text/plain' });
    res.end('who are you?');
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    port,
    url: (path) => `http://127.0.0.1:${port}/${path}`,
    authorizations,
    close: () => new Promise((resolve) => http.close(() => resolve())),
  };
}

describe('git.token is bound to git.tokenHosts', () => {
  let catcher: CredentialCatcher;
  let tmp: TempDir;
  const basic = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;

  beforeAll(async () => {
    catcher = await startCredentialCatcher();
    tmp = await tempDir();
  });
  afterAll(async () => {
    await catcher.close();
    await tmp.cleanup();
  });

  it('a remote not in git.tokenHosts that asks (401) never gets the token, and the build fails saying why', async () => {
    const url = catcher.url('acme/private.git');
    const before = catcher.authorizations.length;
    const deps = {
      source: createSourceProvider({ workDir: join(tmp.path, 'wd-withheld'), git: { ...GIT, token: TOKEN, retries: 2 } }),
      detector: fakeDetector(),
      builder: fakeBuilder(),
      images: new FakeImageBuilder(),
      store: new MemoryBuildStore(),
      logs: new MemoryLogStore(),
      reporter: new RecordingReporter(),
    };
    const { record, error } = await runPipeline(job(url, 'withheld'), deps);

    // It asked, and was answered without credentials, once (a refusal is not retried).
    const seen = catcher.authorizations.slice(before);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((header) => header === undefined)).toBe(true);

    expect(error).toBeInstanceOf(GitAuthError);
    expect(error!.exitCode).toBe(3);
    expect(error!.message).toContain(`git.token is not sent to http://127.0.0.1:${catcher.port}`);
    expect(error!.message).toContain(`127.0.0.1:${catcher.port} is not in git.tokenHosts (github.com)`);
    expect(error!.hint).toBe(`Add 127.0.0.1:${catcher.port} to git.tokenHosts (OCI_BUILD_GIT_TOKEN_HOSTS) if it should get the token.`);
    expect(record.status).toBe('failed');
    expect(record.error).toMatchObject({ phase: 'source', code: 'E_GIT_AUTH' });
    expect(record.error!.message).toContain('git.token is not sent to');
    const everything = JSON.stringify([record, deps.logs.lines.get('withheld'), error!.toJSON()]);
    expect(everything).not.toContain(TOKEN);
  });

  it('the same host without its port listed, or under another name, does not get it either', async () => {
    for (const [tokenHosts, url] of [
      [['127.0.0.1'], catcher.url('acme/private.git')],
      [[`localhost:${catcher.port}`], catcher.url('acme/private.git')],
      [[`127.0.0.1:${catcher.port}`], `http://localhost:${catcher.port}/acme/private.git`],
    ] as const) {
      const before = catcher.authorizations.length;
      const error = await createSourceProvider({ workDir: join(tmp.path, 'wd-other-name'), git: { ...GIT, token: TOKEN, tokenHosts: [...tokenHosts] } })
        .checkout(job(url, 'other').source, job(url, 'other'), context())
        .catch((e: unknown) => e);
      expect(error, `${tokenHosts.join(',')} ${url}`).toBeInstanceOf(GitAuthError);
      expect((error as Error).message).toContain('git.token is not sent to');
      expect(catcher.authorizations.slice(before).every((header) => header === undefined)).toBe(true);
    }
  });

  it('a loopback host listed with its port gets the token over plain HTTP when it asks', async () => {
    const url = catcher.url('acme/private.git');
    const before = catcher.authorizations.length;
    const error = await createSourceProvider({ workDir: join(tmp.path, 'wd-listed'), git: { ...GIT, token: TOKEN, tokenHosts: [`127.0.0.1:${catcher.port}`] } })
      .checkout(job(url, 'listed').source, job(url, 'listed'), context())
      .catch((e: unknown) => e);
    const seen = catcher.authorizations.slice(before);
    // First without credentials; when asked, with the token.
    expect(seen[0]).toBeUndefined();
    expect(seen).toContain(basic);
    // The catcher refuses everyone: a refusal of credentials that were sent, saying so, without them.
    expect(error).toBeInstanceOf(GitAuthError);
    expect((error as Error).message).toContain('refused the credentials');
    expect(JSON.stringify((error as GitAuthError).toJSON())).not.toContain(TOKEN);
  });
});
