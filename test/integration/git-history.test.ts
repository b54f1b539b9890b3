// Shallow mirrors: history is fetched on demand (an old commit asked by SHA, an affected build's
// base), and a sync after random commits, branch moves and force-pushes always checks out exactly
// what `git archive` gives for the wanted commit.

import { chmodSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { git, tempDir, type TempDir } from '../helpers/fixtures.js';
import { archiveOf, snapshot, startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

function context(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, log: { write: (line) => lines.push(line) }, lines };
}

let counter = 0;
function job(url: string, ref?: string): BuildJob {
  counter += 1;
  return {
    id: `h-${counter}`,
    trigger: 'cli',
    source: { kind: 'git', url, ...(ref ? { ref } : {}) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

describe('git source: history on demand', () => {
  let server: GitServer;
  let tmp: TempDir;

  beforeAll(async () => {
    server = await startGitServer();
    tmp = await tempDir();
  });
  afterAll(async () => {
    await server.dispose();
    await tmp.cleanup();
  });

  it('deepens a shallow mirror for an old commit and for an affected base', async () => {
    const work = await workRepo(tmp, 'deep');
    const commits: string[] = [];
    for (let i = 0; i < 12; i++) commits.push(work.commit({ [`f${i}.txt`]: `${i}\n`, 'counter.txt': `${i}\n` }, `c${i}`));
    await server.addRepo('acme/deep', work.dir);
    const provider = createSourceProvider({ workDir: join(tmp.path, 'wd-deep'), git: { depth: 2, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1, tokenHosts: [] } });

    const head = await provider.checkout(job(server.url('acme/deep')).source, job(server.url('acme/deep')), context());
    expect(head.repository.commit).toBe(commits[11]);
    // Only 2 commits of history so far: the base is unknown until the mirror is deepened.
    const ctx = context();
    expect(await head.changedFilesSince(commits[8]!, ctx)).toEqual(['counter.txt', 'f10.txt', 'f11.txt', 'f9.txt']);
    expect(ctx.lines.some((l) => /deepening/.test(l))).toBe(true);
    await head.dispose();

    const oldCtx = context();
    const old = await provider.checkout(job(server.url('acme/deep'), commits[0]!.slice(0, 8)).source, job(server.url('acme/deep'), commits[0]!.slice(0, 8)), oldCtx);
    expect(old.repository.commit).toBe(commits[0]);
    const archive = await archiveOf(work.dir, commits[0]!);
    expect(await snapshot(old.dir)).toEqual(await snapshot(archive.path));
    await archive.cleanup();
    await old.dispose();
  });

  it('property: after random commits, branch moves and force-pushes, a sync checks out exactly `git archive` of the wanted commit', async () => {
    const workDir = join(tmp.path, 'wd-prop');
    const provider = createSourceProvider({ workDir, git: { depth: 3, retries: 0, retryDelayMs: 1, retryMaxDelayMs: 1, tokenHosts: [] } });
    const url = server.url('acme/prop');
    let run = 0;

    type Op =
      | { kind: 'commit'; files: Array<[string, string]>; remove: boolean }
      | { kind: 'branch'; name: string }
      | { kind: 'switch'; name: string }
      | { kind: 'reset'; back: number }
      | { kind: 'amend'; content: string }
      | { kind: 'tag'; name: string }
      | { kind: 'sync'; pick: number; as: 'branch' | 'tag' | 'sha' | 'short' | 'head' };

    const fileName = fc.constantFrom('a.txt', 'b.txt', 'dir/c.txt', 'dir/sub/d.bin', 'run.sh');
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('commit' as const), files: fc.array(fc.tuple(fileName, fc.string({ maxLength: 40 })), { minLength: 1, maxLength: 3 }), remove: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('branch' as const), name: fc.constantFrom('dev', 'feature/x', 'release') }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('switch' as const), name: fc.constantFrom('main', 'dev', 'feature/x', 'release') }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), back: fc.integer({ min: 1, max: 4 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('amend' as const), content: fc.string({ maxLength: 20 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('tag' as const), name: fc.constantFrom('v1', 'v2') }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const), pick: fc.nat(), as: fc.constantFrom('branch' as const, 'tag' as const, 'sha' as const, 'short' as const, 'head' as const) }) },
    );

    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 2, maxLength: 10 }), async (ops) => {
        run += 1;
        // A new history under the same name every run: for the persistent mirror, the biggest force-push there is.
        const work = await workRepo(tmp, `prop-${run}`);
        work.commit({ 'a.txt': `run ${run}\n` }, 'root');
        await rm(server.repoPath('acme/prop'), { recursive: true, force: true });
        await server.addRepo('acme/prop', work.dir);
        // every branch and tag, force-pushed and pruned (the served HEAD stays on main, which always exists)
        const push = () => git(work.dir, ['push', '-q', '--force', '--prune', server.repoPath('acme/prop'), 'refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*']);
        for (const o of [...ops, { kind: 'sync', pick: 0, as: 'head' } as Op]) {
          switch (o.kind) {
            case 'commit': {
              const files = Object.fromEntries(o.files);
              work.commit(files, 'random');
              if (o.remove) {
                const tracked = work.git(['ls-files']).split('\n').filter(Boolean);
                if (tracked.length > 1) {
                  work.git(['rm', '-q', tracked[0]!]);
                  work.git(['commit', '-q', '-m', 'remove']);
                }
              }
              if (o.files.some(([f]) => f === 'run.sh')) {
                // executable in the worktree too, or Git sees a local change that blocks the next switch
                chmodSync(join(work.dir, 'run.sh'), 0o755);
                work.git(['add', 'run.sh']);
                work.git(['commit', '-q', '--allow-empty', '-m', 'exec']);
              }
              break;
            }
            case 'branch':
              work.git(['branch', '-f', o.name, 'HEAD']);
              break;
            case 'switch':
              if (work.git(['branch', '--list', o.name]) !== '') work.git(['checkout', '-q', o.name]);
              break;
            case 'reset': {
              const depth = Number(work.git(['rev-list', '--count', 'HEAD']));
              if (depth > o.back) work.git(['reset', '-q', '--hard', `HEAD~${o.back}`]);
              break;
            }
            case 'amend':
              work.commit({ 'amended.txt': o.content }, 'amend');
              work.git(['commit', '-q', '--amend', '-m', `amended ${o.content.length}`]);
              break;
            case 'tag':
              work.git(['tag', '-f', o.name]);
              break;
            case 'sync': {
              push();
              const branches = work.git(['for-each-ref', '--format=%(refname:short)', 'refs/heads']).split('\n').filter(Boolean);
              const tags = work.git(['tag', '--list']).split('\n').filter(Boolean);
              let ref: string | undefined;
              let expected: string;
              if (o.as === 'tag' && tags.length > 0) {
                ref = tags[o.pick % tags.length]!;
                expected = work.git(['rev-parse', `${ref}^{commit}`]);
              } else if (o.as === 'head') {
                ref = undefined;
                expected = work.git(['rev-parse', 'main']);
              } else {
                const branch = branches[o.pick % branches.length]!;
                if (o.as === 'branch') {
                  ref = branch;
                  expected = work.git(['rev-parse', branch]);
                } else {
                  // any commit reachable from a branch, possibly older than the shallow depth
                  const history = work.git(['rev-list', branch]).split('\n').filter(Boolean);
                  expected = history[o.pick % history.length]!;
                  ref = o.as === 'sha' ? expected : expected.slice(0, 10);
                }
              }
              const j = job(url, ref);
              const checkout = await provider.checkout(j.source, j, context());
              try {
                expect(checkout.repository.commit).toBe(expected);
                const archive = await archiveOf(work.dir, expected);
                try {
                  expect(await snapshot(checkout.dir)).toEqual(await snapshot(archive.path));
                } finally {
                  await archive.cleanup();
                }
              } finally {
                await checkout.dispose();
              }
              break;
            }
          }
        }
      }),
      { numRuns: 15 },
    );
  });
});
