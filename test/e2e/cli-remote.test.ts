// `oci-build build <git-url>` end to end, as a user runs it: the built CLI against a real
// smart-HTTP Git server that wants a token, real Go and real buildah, one work directory shared
// by every run (its mirror persists between them).

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { isolatedEnv, runCli, type CliResult } from '../helpers/cli.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.js';

const TOKEN = 'e2e_remote_T0ken_9f8e7d';

let sandbox: TempDir;
let env: Record<string, string>;
let server: GitServer;
let repo: FixtureRepo;
let first: string;
let feature: string;
const outputs: CliResult[] = [];

async function build(args: string[]): Promise<CliResult & { record?: BuildRecord }> {
  const result = await runCli(['build', ...args, '--json'], { env });
  outputs.push(result);
  let record: BuildRecord | undefined;
  try {
    record = JSON.parse(result.stdout) as BuildRecord;
  } catch {
    record = undefined;
  }
  return { ...result, ...(record ? { record } : {}) };
}

/** Every file under `dir`, symbolic links not followed. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-e2e-remote-');
  env = isolatedEnv(sandbox.path);
  server = await startGitServer({ token: TOKEN });
  repo = await fixtureRepo('sample-go-repo');
  first = repo.commit;
  execFileSync('git', ['tag', 'v1.0.0'], { cwd: repo.dir });
  execFileSync('git', ['checkout', '-q', '-b', 'feature/x'], { cwd: repo.dir });
  execFileSync('sh', ['-c', 'echo "feature" > FEATURE.txt'], { cwd: repo.dir });
  feature = repo.commitAll('feature commit', '2026-01-02T00:00:00Z');
  execFileSync('git', ['checkout', '-q', 'main'], { cwd: repo.dir });
  await server.addRepo('acme/sample-go-repo', repo.dir);
});

afterAll(async () => {
  await server?.dispose();
  await repo?.cleanup();
  await sandbox?.cleanup();
});

describe('oci-build build <git-url>', () => {
  it('builds two commits of one repository at once, each in its own worktree, through one mirror', async () => {
    const url = server.url('acme/sample-go-repo', { auth: `ci:${TOKEN}` });
    const [byTag, byBranch] = await Promise.all([build([url, '--ref', 'v1.0.0']), build([url, '--ref', 'feature/x'])]);
    for (const result of [byTag, byBranch]) {
      expect(result.code, result.stderr).toBe(0);
      expect(result.record?.status).toBe('succeeded');
    }
    expect(byTag.record!.repository).toMatchObject({
      fullName: 'acme/sample-go-repo',
      cloneUrl: server.url('acme/sample-go-repo'),
      ref: 'refs/tags/v1.0.0',
      tag: 'v1.0.0',
      commit: first,
    });
    expect(byBranch.record!.repository).toMatchObject({ ref: 'refs/heads/feature/x', branch: 'feature/x', commit: feature });
    expect(byTag.record!.images[0]!.tags).toEqual(expect.arrayContaining([`sha-${first.slice(0, 7)}`, 'v1.0.0']));
    expect(byBranch.record!.images[0]!.tags).toEqual(expect.arrayContaining([`sha-${feature.slice(0, 7)}`]));
    // One mirror, and no build worktree left behind.
    const work = env.OCI_BUILD_WORK_DIR!;
    expect(statSync(join(work, 'repos', `127.0.0.1_${server.port}`, 'acme', 'sample-go-repo')).isDirectory()).toBe(true);
    const worktrees = readdirSync(join(work, 'worktrees')).filter((name) => name !== '.spare');
    expect(worktrees).toEqual([]);
  });

  it('builds by short SHA and by the remote HEAD, fetching into the existing mirror', async () => {
    const url = server.url('acme/sample-go-repo', { auth: `ci:${TOKEN}` });
    const byHead = await build([url]);
    expect(byHead.code, byHead.stderr).toBe(0);
    expect(byHead.record!.repository).toMatchObject({ branch: 'main', commit: first });
    const bySha = await build([url, '--ref', feature.slice(0, 9)]);
    expect(bySha.code, bySha.stderr).toBe(0);
    expect(bySha.record!.repository).toMatchObject({ ref: feature, commit: feature });
    const log = readFileSync(bySha.record!.logPath!, 'utf8');
    expect(log).toContain(`fetching ${server.url('acme/sample-go-repo')}`);
  });

  it('an unknown ref exits 2; a refused token exits 3 without echoing it', async () => {
    const unknown = await build([server.url('acme/sample-go-repo', { auth: `ci:${TOKEN}` }), '--ref', 'no-such-branch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/has no branch, tag or commit "no-such-branch"/);
    const wrong = await build([server.url('acme/sample-go-repo', { auth: 'ci:not-the-token-4242' })]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/refused the credentials/);
    expect(wrong.stderr + wrong.stdout).not.toContain('not-the-token-4242');
  });

  it('builds from the mirror with a warning while the server is down; what the mirror lacks exits 3', async () => {
    const url = server.url('acme/sample-go-repo', { auth: `ci:${TOKEN}` });
    await server.stop();
    try {
      env = { ...env, OCI_BUILD_GIT_RETRIES: '1', OCI_BUILD_GIT_RETRY_DELAY: '10ms' };
      const fallback = await build([url, '--ref', 'feature/x']);
      expect(fallback.code, fallback.stderr).toBe(0);
      expect(fallback.record!.repository.commit).toBe(feature);
      expect(fallback.record!.warnings?.[0]).toMatch(/unreachable .*: built from the mirror as of /);
      expect(fallback.stderr).toMatch(/unreachable .*: built from the mirror as of /);

      const missing = await build([url, '--ref', 'release/9']);
      expect(missing.code).toBe(3);
      expect(missing.stderr).toMatch(/is unreachable \(.*\) and its mirror has no ref release\/9/);
      // Listed under its repository all the same, the URL without the token.
      expect(missing.record?.repository).toEqual({ fullName: 'acme/sample-go-repo', cloneUrl: server.url('acme/sample-go-repo') });
    } finally {
      await server.restart();
    }
  });

  it('the token appears nowhere under the work directory nor in any output', () => {
    expect(outputs.length).toBeGreaterThan(5);
    for (const { stdout, stderr } of outputs) expect(stdout + stderr).not.toContain(TOKEN);
    const work = env.OCI_BUILD_WORK_DIR!;
    const holding = filesUnder(work).filter((file) => readFileSync(file).includes(TOKEN));
    expect(holding).toEqual([]);
  });
});
