// Result reuse (README, "Result reuse") with `oci-build build` as a user runs it: real toolchains,
// real buildah, a real registry. A reused image must be the image a rebuild with reuse off gives:
// same digest, for every fixture.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { isolatedEnv, runCli } from '../helpers/cli.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { seedBusybox, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { hasTool } from '../helpers/toolchains.js';
import { waitFor } from '../helpers/ports.js';

let sandbox: TempDir;
let env: Record<string, string>;
let registry: TestRegistry;
const repos: FixtureRepo[] = [];

async function repo(name: string, repoName?: string): Promise<FixtureRepo> {
  const r = await fixtureRepo(name, repoName ? { repoName } : {});
  repos.push(r);
  return r;
}

function buildah(args: string[]): string {
  return execFileSync('buildah', ['--root', env.OCI_BUILD_IMAGE_ROOT!, '--runroot', env.OCI_BUILD_IMAGE_RUN_ROOT!, '--storage-driver', 'vfs', ...args], { encoding: 'utf8' }).trim();
}

async function build(dir: string, args: string[] = [], extraEnv: Record<string, string> = {}): Promise<BuildRecord> {
  const result = await runCli(['build', dir, '--json', ...args], { env: { ...env, ...extraEnv } });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as BuildRecord;
}

function buildPhase(record: BuildRecord) {
  return record.phases.find((p) => p.name === 'build');
}

function logOf(record: BuildRecord): string {
  return readFileSync(record.logPath!, 'utf8');
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-reuse-');
  env = isolatedEnv(sandbox.path);
  registry = await startRegistry();
}, 60_000);

afterAll(async () => {
  for (const r of repos) await r.cleanup();
  await registry?.stop();
  await sandbox?.cleanup();
});

describe('reuse of a local build (Go)', () => {
  let go: FixtureRepo;
  let first: BuildRecord;

  beforeAll(async () => {
    go = await repo('sample-go-repo');
    first = await build(go.dir);
  });

  it('the first build builds and records its digest', () => {
    expect(first.images[0]?.reusedFrom).toBeUndefined();
    expect(buildPhase(first)?.status).toBe('succeeded');
    expect(first.images[0]?.digest).toMatch(/^sha256:/);
  });

  it('the same commit again runs no toolchain and no buildah bud; the image is the first build’s, tagged again', async () => {
    const again = await build(go.dir);
    expect(again.images[0]).toMatchObject({ reusedFrom: first.id, digest: first.images[0]!.digest, tags: first.images[0]!.tags });
    expect(again.projects?.[0]?.reusedFrom).toBe(first.id);
    expect(buildPhase(again)?.status).toBe('skipped');
    const log = logOf(again);
    expect(log).not.toMatch(/buildah bud/);
    expect(log).toMatch(/reuses the image of build/);
    // It has those tags already: no buildah process at all.
    expect(log).toMatch(/already tagged/);
    expect(log).not.toMatch(/buildah tag/);
    const summary = await runCli(['status', again.id], { env });
    expect(summary.stdout).toMatch(/reused from/);
  });

  it('the same commit on a new branch is reused and gets the branch tag in the store', async () => {
    execFileSync('git', ['checkout', '-q', '-b', 'feature-x'], { cwd: go.dir });
    try {
      const branched = await build(go.dir);
      expect(branched.images[0]).toMatchObject({ reusedFrom: first.id, digest: first.images[0]!.digest });
      expect(branched.images[0]!.tags).toContain('feature-x');
      expect(logOf(branched)).toMatch(/buildah tag/);
      const names = JSON.parse(buildah(['images', '--json'])).flatMap((i: { names?: string[] }) => i.names ?? []);
      expect(names).toContain(`localhost/${branched.images[0]!.repository}:feature-x`);
    } finally {
      execFileSync('git', ['checkout', '-q', '-'], { cwd: go.dir });
    }
  });

  it('a rebuild with reuse off (--no-reuse, OCI_BUILD_BUILD_REUSE=false) gives the digest the reused image has', async () => {
    const noReuse = await build(go.dir, ['--no-reuse']);
    expect(noReuse.images[0]?.reusedFrom).toBeUndefined();
    expect(buildPhase(noReuse)?.status).toBe('succeeded');
    expect(noReuse.images[0]?.digest).toBe(first.images[0]!.digest);
    const offByEnv = await build(go.dir, [], { OCI_BUILD_BUILD_REUSE: 'false' });
    expect(offByEnv.images[0]?.reusedFrom).toBeUndefined();
    expect(logOf(offByEnv)).toMatch(/buildah bud/);
  });

  it('an image gone from storage is a miss: built again, with the same digest', async () => {
    buildah(['rmi', '--all', '--force']);
    const rebuilt = await build(go.dir);
    expect(rebuilt.images[0]?.reusedFrom).toBeUndefined();
    expect(logOf(rebuilt)).toMatch(/is gone: building again/);
    expect(rebuilt.images[0]?.digest).toBe(first.images[0]!.digest);
  });

  it('a dirty worktree never reuses', async () => {
    writeFileSync(join(go.dir, 'main.go'), `${readFileSync(join(go.dir, 'main.go'), 'utf8')}\n// changed\n`);
    const dirty = await build(go.dir);
    expect(dirty.repository.dirty).toBe(true);
    expect(dirty.images[0]?.reusedFrom).toBeUndefined();
    expect(logOf(dirty)).toMatch(/uncommitted changes/);
    execFileSync('git', ['checkout', '--', 'main.go'], { cwd: go.dir });
  });
});

describe.runIf(hasTool('mvn', ['-v']))('reuse through the registry (Java)', () => {
  it('a pushed image is reused by tagging it in the registry; its digest equals a --no-reuse rebuild’s', async () => {
    const java = await repo('sample-java-repo');
    const push = ['--registry', `${registry.host}/reuse`, '--push', '--no-tls-verify'];
    const first = await build(java.dir, push);
    expect(first.images[0]?.pushed).toBe(true);
    // The local store no longer has it: only the registry can serve the reuse.
    buildah(['rmi', '--all', '--force']);
    const again = await build(java.dir, push);
    expect(again.images[0]).toMatchObject({ reusedFrom: first.id, digest: first.images[0]!.digest, pushed: true });
    // Tagged through the distribution API (image/registry-api.ts): a manifest PUT, no layer.
    expect(logOf(again)).toMatch(/PUT \S+:\S+ = sha256:[0-9a-f]{64} \(reused, no layer uploaded\)/);
    expect(logOf(again)).not.toMatch(/buildah (bud|push)/);
    const noReuse = await build(java.dir, [...push, '--no-reuse']);
    expect(noReuse.images[0]?.reusedFrom).toBeUndefined();
    expect(noReuse.images[0]?.digest).toBe(first.images[0]!.digest);
  });
});

describe('two builds of the same commit at once in one work directory', () => {
  it('build it once: the second waits for the first one\'s image (its claim in the work directory) and reuses it', async () => {
    // Two clones of one commit (same name, same tree: one key); a build command slow enough that
    // the second starts while the first holds the key's claim.
    const [a, b] = [await repo('sample-go-repo', 'twin-local'), await repo('sample-go-repo', 'twin-local')];
    const config = join(sandbox.path, 'slow-go.yaml');
    writeFileSync(config, 'build:\n  projects:\n    twin-local:\n      command: ["sh", "-c", "sleep 3 && CGO_ENABLED=0 go build -trimpath -o dist/ ./..."]\n');
    const results = join(env.OCI_BUILD_WORK_DIR!, 'results');
    const first = build(a.dir, ['-c', config]);
    await waitFor(() => existsSync(results) && readdirSync(results).some((f) => f.endsWith('.claim')), { timeoutMs: 60_000, what: 'the first build to claim its key' });
    const [made, waited] = await Promise.all([first, build(b.dir, ['-c', config])]);
    expect(made.images[0]?.reusedFrom).toBeUndefined();
    expect(waited.images[0]).toMatchObject({ reusedFrom: made.id, digest: made.images[0]!.digest });
    expect(buildPhase(waited)?.status).toBe('skipped');
    const log = logOf(waited);
    expect(log).toMatch(new RegExp(`is being built by build ${made.id}: waiting for its image`));
    expect(log).not.toMatch(/buildah bud|sleep 3/);
    expect(readdirSync(results).filter((f) => f.endsWith('.claim'))).toEqual([]);
  }, 240_000);
});

describe('a base image pushed again under the same tag', () => {
  it('rebuilds: its digest is part of the key', async () => {
    const opts = { storageDriver: 'vfs' as const, isolation: 'chroot' as const, root: env.OCI_BUILD_IMAGE_ROOT!, runRoot: env.OCI_BUILD_IMAGE_RUN_ROOT!, tlsVerify: false };
    const base = await seedBusybox(registry.host, opts);
    const app = await repo('sample-go-repo', 'based-app');
    writeFileSync(join(app.dir, 'Dockerfile'), `ARG BASE=${base}\nFROM \${BASE}\nCOPY dist/sample-go-repo /app\nENTRYPOINT ["/app"]\n`);
    app.commitAll('on busybox');
    const args = ['--no-tls-verify'];
    const first = await build(app.dir, args);
    const again = await build(app.dir, args);
    expect(again.images[0]?.reusedFrom).toBe(first.id);

    // Another image under the same tag: a layer more on the busybox.
    const ctx = await tempDir('oci-build-base2-');
    writeFileSync(join(ctx.path, 'Dockerfile'), `FROM ${base}\nCOPY marker /marker\n`);
    writeFileSync(join(ctx.path, 'marker'), 'second base\n');
    buildah(['bud', '--tls-verify=false', '--isolation', 'chroot', '-t', base, ctx.path]);
    buildah(['push', '--tls-verify=false', base, `docker://${base}`]);
    await ctx.cleanup();

    const afterBaseMoved = await build(app.dir, args);
    expect(afterBaseMoved.images[0]?.reusedFrom).toBeUndefined();
    expect(buildPhase(afterBaseMoved)?.status).toBe('succeeded');
    expect(afterBaseMoved.images[0]?.digest).not.toBe(first.images[0]!.digest);
  });
});
