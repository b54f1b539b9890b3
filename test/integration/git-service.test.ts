// The GitService port as the worker and the CLI use it, against a real smart-HTTP server:
// localPath and repositoryExists, clone then fetch, branches, tags and short SHAs, history
// fetched on demand, the mirror answering while the remote is down.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import httpClient from 'isomorphic-git/http/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError, ServiceUnavailableError } from '../../src/core/errors.js';
import { systemClock, type PhaseContext } from '../../src/core/ports.js';
import { requestAdvertisement, type EarlyAdvertisement } from '../../src/git/advertisement.js';
import { MirrorGitService } from '../../src/git/git-service.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer, type WorkRepo } from '../helpers/git-http-server.js';

function context(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, log: { write: (line) => lines.push(line) }, lines };
}

describe('GitService (isomorphic-git mirrors)', () => {
  let server: GitServer;
  let tmp: TempDir;
  let work: WorkRepo;
  let first: string;
  let second: string;
  const service = (name: string, depth = 50) =>
    new MirrorGitService({
      workDir: join(tmp.path, name),
      git: { tokenHosts: [], depth, retries: 1, retryDelayMs: 1, retryMaxDelayMs: 2 },
      clock: systemClock,
      http: httpClient,
    });

  beforeAll(async () => {
    server = await startGitServer();
    tmp = await tempDir();
    work = await workRepo(tmp, 'svc');
    first = work.commit({ 'a.txt': 'one\n' }, 'first');
    work.git(['tag', '-a', '-m', 'release', 'v1']);
    second = work.commit({ 'a.txt': 'two\n' }, 'second');
    work.git(['branch', 'feature/x', first]);
    await server.addRepo('acme/svc', work.dir);
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  it('places the mirror under <workDir>/repos/<host>/<owner>/<name>, and refuses hostile names before touching a file', async () => {
    const git = service('wd-path');
    expect(git.localPath(server.url('acme/svc'))).toBe(join(tmp.path, 'wd-path', 'repos', `127.0.0.1_${server.port}`, 'acme', 'svc'));
    expect(git.localPath(server.url('acme/svc', { auth: 'robot:t0ken' }))).toBe(git.localPath(server.url('acme/svc')));
    for (const url of [`http://127.0.0.1:${server.port}/acme/../../etc`, `http://127.0.0.1:${server.port}/acme//svc`, `http://127.0.0.1:${server.port}/a%2e%2e/svc`]) {
      expect(() => git.localPath(url)).toThrow(InputError);
      await expect(git.syncRepository(url, undefined, context())).rejects.toThrow(InputError);
      await expect(git.repositoryExists(url)).rejects.toThrow(InputError);
    }
    await expect(git.syncRepository(server.url('acme/svc'), '../../config', context())).rejects.toThrow(/is not a valid Git ref/);
    expect(existsSync(join(tmp.path, 'wd-path'))).toBe(false);
  });

  it('clones when the mirror is absent, fetches when it exists, and resolves the remote HEAD, branches, tags and short SHAs', async () => {
    const git = service('wd-sync');
    const url = server.url('acme/svc');
    expect(await git.repositoryExists(url)).toBe(false);

    const ctx = context();
    const head = await git.syncRepository(url, undefined, ctx);
    expect(ctx.lines[0]).toBe(`cloning ${url}`);
    expect(await git.repositoryExists(url)).toBe(true);
    expect(head).toMatchObject({ path: git.localPath(url), fullName: 'acme/svc', cloneUrl: url, commit: second, ref: 'refs/heads/main', branch: 'main' });
    expect(head.warning).toBeUndefined();

    expect(await git.syncRepository(url, 'feature/x', context())).toMatchObject({ commit: first, branch: 'feature/x', ref: 'refs/heads/feature/x' });
    expect(await git.syncRepository(url, 'v1', context())).toMatchObject({ commit: first, tag: 'v1', ref: 'refs/tags/v1' });
    expect(await git.syncRepository(url, first.slice(0, 7), context())).toMatchObject({ commit: first, ref: first });

    const third = work.commit({ 'b.txt': 'three\n' }, 'third');
    work.git(['push', '-q', server.repoPath('acme/svc'), 'main']);
    const again = context();
    expect(await git.syncRepository(url, 'main', again)).toMatchObject({ commit: third, branch: 'main' });
    expect(again.lines[0]).toBe(`fetching ${url}`);
  });

  it('asks the remote once a sync: an up-to-date mirror only reads the advertisement, a changed one fetches with it', async () => {
    const git = service('wd-requests');
    const url = server.url('acme/svc');
    await git.syncRepository(url, undefined, context());
    const seen = (since: number) => server.requests.slice(since).map((r) => `${r.status} ${r.method} ${r.path.replace(/^\/acme\/svc\.git/, '')}`);

    let since = server.requests.length;
    const same = context();
    const head = await git.syncRepository(url, undefined, same);
    expect(seen(since)).toEqual(['200 GET /info/refs?service=git-upload-pack']);
    expect(same.lines.join('\n')).toContain('(up to date)');
    expect(head).toMatchObject({ commit: work.git(['rev-parse', 'HEAD']).trim(), branch: 'main' });

    // A new tag and a new commit: one advertisement, then the pack.
    const next = work.commit({ 'c.txt': 'four\n' }, 'fourth');
    work.git(['tag', 'v-requests', next]);
    work.git(['push', '-q', server.repoPath('acme/svc'), 'main', 'v-requests']);
    since = server.requests.length;
    expect(await git.syncRepository(url, 'v-requests', context())).toMatchObject({ commit: next, tag: 'v-requests' });
    expect(seen(since)).toEqual(['200 GET /info/refs?service=git-upload-pack', '200 POST /git-upload-pack']);

    // A deleted branch is a change too: the fetch runs and prunes it.
    work.git(['branch', 'gone', next]);
    work.git(['push', '-q', server.repoPath('acme/svc'), 'gone']);
    await git.syncRepository(url, 'gone', context());
    work.git(['push', '-q', server.repoPath('acme/svc'), '--delete', 'gone']);
    await git.syncRepository(url, undefined, context());
    await expect(git.syncRepository(url, 'gone', context())).rejects.toThrow(/has no branch, tag or commit "gone"/);
  });

  it('starts from an advertisement asked for before the sync, once, unless the mirror was synced after it was asked for', async () => {
    const url = server.url('acme/svc');
    const workDir = join(tmp.path, 'wd-early');
    const early = new Map<string, EarlyAdvertisement>();
    const make = (withEarly: boolean) =>
      new MirrorGitService({ workDir, git: { tokenHosts: [], depth: 50, retries: 1, retryDelayMs: 1, retryMaxDelayMs: 2 }, clock: systemClock, http: httpClient, ...(withEarly ? { early } : {}) });
    const git = make(true);
    await git.syncRepository(url, undefined, context());
    const seen = (since: number) => server.requests.slice(since).map((r) => `${r.method} ${r.path.replace(/^\/acme\/svc\.git/, '')}`);
    const ask = async () => {
      await new Promise((resolveWait) => setTimeout(resolveWait, 5));
      early.set(url, { startedAt: Date.now(), response: requestAdvertisement(httpClient, url) });
      await early.get(url)!.response;
    };

    // Asked for ahead: the sync itself asks the remote nothing.
    await ask();
    let since = server.requests.length - 1;
    const quiet = context();
    expect(await git.syncRepository(url, undefined, quiet)).toMatchObject({ commit: work.git(['rev-parse', 'main']).trim(), branch: 'main' });
    expect(seen(since)).toEqual(['GET /info/refs?service=git-upload-pack']);
    expect(quiet.lines.join('\n')).toContain('(up to date)');
    expect(early.size).toBe(0);

    // Another build (another process: its own service) synced the mirror after it was asked for:
    // the mirror's refs may be newer than it, so the sync asks again.
    await ask();
    since = server.requests.length - 1;
    await new Promise((resolveWait) => setTimeout(resolveWait, 5));
    await make(false).syncRepository(url, undefined, context());
    await git.syncRepository(url, undefined, context());
    expect(seen(since)).toEqual(['GET /info/refs?service=git-upload-pack', 'GET /info/refs?service=git-upload-pack', 'GET /info/refs?service=git-upload-pack']);
  });

  it('fetches history on demand: a commit older than the shallow mirror, and the base of a change as a revision', async () => {
    const git = service('wd-shallow', 1);
    const url = server.url('acme/svc');
    const head = work.git(['rev-parse', 'main']);
    const parent = work.git(['rev-parse', 'main~1']);
    await git.syncRepository(url, 'main', context());
    expect(readdirSync(git.localPath(url))).toContain('shallow');

    // Names the mirror knows, without fetching anything.
    const quiet = context();
    expect(await git.resolveCommit(url, 'main', quiet)).toBe(head);
    expect(await git.resolveCommit(url, 'origin/main', quiet)).toBe(head);
    expect(await git.resolveCommit(url, 'refs/heads/main', quiet)).toBe(head);
    expect(await git.resolveCommit(url, 'HEAD', quiet)).toBe(head);
    expect(await git.resolveCommit(url, 'v1', quiet)).toBe(first);
    // A name it does not know is not worth fetching the whole history for.
    expect(await git.resolveCommit(url, 'no-such-branch~1', quiet)).toBeUndefined();
    expect(await git.resolveCommit(url, '../../config', quiet)).toBeUndefined();
    expect(quiet.lines).toEqual([]);

    // Beyond the shallow boundary: deepened on demand.
    const ctx = context();
    expect(await git.resolveCommit(url, 'main~1', ctx)).toBe(parent);
    expect(ctx.lines.some((l) => l.startsWith('deepening by 500 commits:'))).toBe(true);
    expect(await git.resolveCommit(url, parent.slice(0, 8), context())).toBe(parent);
    expect(await git.resolveCommit(url, 'main~40', context())).toBeUndefined();
    expect(await git.resolveCommit(url, 'f'.repeat(40), context())).toBeUndefined();

    const deep = service('wd-shallow-sha', 1);
    expect(await deep.syncRepository(url, second.slice(0, 10), context())).toMatchObject({ commit: second, ref: second });
  });

  it('answers from the mirror with a warning while the remote is down, and says what it lacks', async () => {
    const git = service('wd-down');
    const url = server.url('acme/svc');
    const before = await git.syncRepository(url, 'main', context());
    await server.stop();
    try {
      const fallback = await git.syncRepository(url, 'main', context());
      expect(fallback.commit).toBe(before.commit);
      expect(fallback.warning).toMatch(new RegExp(`^remote ${url.replace(/[.]/g, '\\.')} unreachable \\(.+\\): built from the mirror as of \\d{4}-`));
      const missing = await git.syncRepository(url, 'no-such-branch', context()).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ServiceUnavailableError);
      expect((missing as Error).message).toMatch(/is unreachable .* and its mirror has no ref no-such-branch$/);
      expect(await git.resolveCommit(url, 'e'.repeat(40), context())).toBeUndefined();
    } finally {
      await server.restart();
    }
  });
});
