// A connection cut in the middle of a pack: retried, and when it keeps failing the mirror is left
// exactly as it was (refs rolled back, nothing half-written), so the build falls back to it.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import nodeHttp from 'isomorphic-git/http/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, workRepo, type GitServer, type WorkRepo } from '../helpers/git-http-server.js';

type Cut = 'none' | 'reset' | 'silent';

/** The real HTTP client, except that upload-pack responses are cut after `keep` bytes while `cuts` lasts. */
function flakyHttp(plan: { cuts: Cut[]; keep: number }): HttpClient {
  return {
    async request(request: GitHttpRequest): Promise<GitHttpResponse> {
      const response = await nodeHttp.request(request);
      if (!request.url.endsWith('/git-upload-pack') || !response.body) return response;
      const cut = plan.cuts.shift() ?? 'none';
      if (cut === 'none') return response;
      const body = response.body;
      async function* truncated() {
        let sent = 0;
        // next() by hand: the Node client's iterator has a non-conforming return(), which a
        // `break` out of for-await would call.
        for (;;) {
          const { value: chunk, done } = await body.next();
          if (done || !chunk) return;
          if (sent + chunk.length > plan.keep) {
            yield chunk.subarray(0, plan.keep - sent);
            if (cut === 'reset') throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
            return;
          }
          sent += chunk.length;
          yield chunk;
        }
      }
      return { ...response, body: truncated() };
    },
  };
}

function context(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, log: { write: (line) => lines.push(line) }, lines };
}

let n = 0;
const job = (url: string): BuildJob => ({
  id: `fault-${++n}`,
  trigger: 'cli',
  source: { kind: 'git', url, ref: 'main' },
  image: { push: false, tlsVerify: true, buildArgs: {} },
  createdAt: new Date().toISOString(),
});

describe('git source: a fetch cut short', () => {
  let server: GitServer;
  let tmp: TempDir;
  let work: WorkRepo;
  let workDir: string;
  let first: string;
  const mirror = () => join(workDir, 'repos', `127.0.0.1_${server.port}`, 'acme', 'flaky');

  beforeAll(async () => {
    server = await startGitServer();
    tmp = await tempDir();
    workDir = join(tmp.path, 'wd');
    work = await workRepo(tmp);
    // incompressible content, so the pack spans many chunks
    first = work.commit({ 'data.bin': randomBytes(200_000).toString('base64') }, 'one');
    await server.addRepo('acme/flaky', work.dir);
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  const push = (files: Record<string, string>) => {
    const commit = work.commit(files, 'more');
    work.git(['push', '-q', server.repoPath('acme/flaky'), 'main']);
    return commit;
  };

  it('retries a transfer reset in the middle of the pack', async () => {
    const plan = { cuts: ['reset'] as Cut[], keep: 20_000 };
    const provider = createSourceProvider({ workDir, git: { depth: 50, retries: 2, retryDelayMs: 5, retryMaxDelayMs: 10, tokenHosts: [] }, http: flakyHttp(plan) });
    const ctx = context();
    const checkout = await provider.checkout(job(server.url('acme/flaky')).source, job(server.url('acme/flaky')), ctx);
    expect(checkout.repository.commit).toBe(first);
    expect(ctx.lines.some((l) => /ECONNRESET.*retry 1 of 2/.test(l))).toBe(true);
    await checkout.dispose();
  });

  it.each(['reset', 'silent'] as const)('keeps the mirror as it was when every attempt is cut (%s), and builds from it', async (cut) => {
    const newer = push({ [`more-${cut}.bin`]: randomBytes(150_000).toString('base64') });
    const before = execFileSync('git', ['--git-dir', mirror(), 'rev-parse', 'refs/remotes/origin/main'], { encoding: 'utf8' }).trim();
    expect(before).not.toBe(newer);
    const plan = { cuts: [cut, cut] as Cut[], keep: 20_000 };
    const provider = createSourceProvider({ workDir, git: { depth: 50, retries: 1, retryDelayMs: 5, retryMaxDelayMs: 10, tokenHosts: [] }, http: flakyHttp(plan) });
    const checkout = await provider.checkout(job(server.url('acme/flaky')).source, job(server.url('acme/flaky')), context());
    expect(checkout.repository.commit).toBe(before);
    expect(checkout.warnings[0]).toMatch(/unreachable \((ECONNRESET|.*unexpected end).*\): built from the mirror as of/);
    await checkout.dispose();
    // the refs were rolled back and the mirror is consistent for native git too
    expect(execFileSync('git', ['--git-dir', mirror(), 'rev-parse', 'refs/remotes/origin/main'], { encoding: 'utf8' }).trim()).toBe(before);
    execFileSync('git', ['--git-dir', mirror(), 'fsck', '--no-dangling'], { stdio: 'pipe' });

    // the next good fetch catches up
    const good = createSourceProvider({ workDir, git: { depth: 50, retries: 0, retryDelayMs: 5, retryMaxDelayMs: 10, tokenHosts: [] } });
    const next = await good.checkout(job(server.url('acme/flaky')).source, job(server.url('acme/flaky')), context());
    expect(next.repository.commit).toBe(newer);
    await next.dispose();
  });
});
