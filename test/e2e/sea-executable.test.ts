// The single executable alone: dist/oci-build copied into an empty directory, run with a PATH that
// has no node, no node_modules anywhere near it. It prints its version and help, checks the
// machine, and builds the Go fixture into an image.

import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolatedEnv } from '../helpers/cli.js';
import { fixtureRepo, REPO_ROOT, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { ensureSeaExecutable, nodelessPath, runExecutable, type NodelessPath } from '../helpers/sea-executable.js';

let dir: TempDir;
let exe: string;
let path: NodelessPath;
let repo: FixtureRepo;

beforeAll(async () => {
  const built = ensureSeaExecutable();
  dir = await tempDir('oci-build-sea-');
  exe = join(dir.path, 'oci-build');
  copyFileSync(built, exe);
  path = nodelessPath();
  repo = await fixtureRepo('sample-go-repo');
});
afterAll(async () => {
  path?.cleanup();
  await repo?.cleanup();
  await dir?.cleanup();
});

function run(args: string[], env: Record<string, string> = {}) {
  // Only what a user's shell would have: no NODE_* variables, no node on PATH.
  return runExecutable(exe, args, { cwd: dir.path, env: { PATH: path.path, HOME: join(dir.path, 'home'), CI: 'true', NO_COLOR: '1', ...env } });
}

describe('dist/oci-build, alone', () => {
  it('prints the version of the package it was built from, and its help', async () => {
    const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const printed = await run(['--version']);
    expect(printed).toMatchObject({ code: 0, stdout: `${version}\n` });
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['build', 'status', 'cache', 'config', 'doctor', 'serve', 'worker']) expect(help.stdout).toContain(command);
  });

  it('doctor finds buildah, git and the sandbox', async () => {
    const doctor = await run(['doctor', '--json'], isolatedEnv(dir.path));
    const report = JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean }> };
    const ok = Object.fromEntries(report.checks.map((c) => [c.name, c.ok]));
    expect(ok).toMatchObject({ buildah: true, git: true, go: true, sandbox: true });
  });

  it('builds the Go fixture into an image, validating its configuration with the embedded schema', async () => {
    const built = await run(['build', repo.dir, '--json'], isolatedEnv(dir.path));
    expect(built.stderr).not.toMatch(/internal error/);
    expect(built.code).toBe(0);
    // Text beyond ASCII comes through whole: chunks are decoded as UTF-8 unless they are ASCII.
    expect(built.stderr).toMatch(/ source … done in \d+ms/);
    const record = JSON.parse(built.stdout) as { status: string; images: Array<{ repository: string; tags: string[] }> };
    expect(record.status).toBe('succeeded');
    expect(record.images[0]).toMatchObject({ repository: 'sample-go-repo', tags: expect.arrayContaining([`sha-${repo.commit.slice(0, 7)}`, 'main']) });

    const invalid = await run(['build', repo.dir, '--json'], { ...isolatedEnv(dir.path), OCI_BUILD_WORKER_CONCURRENCY: 'many' });
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('OCI_BUILD_WORKER_CONCURRENCY');
  });

  it("accepts the trained code caches it embeds, and writes back a command's with OCI_BUILD_SEA_TRAIN_DIR (scripts/sea-train.mjs)", async () => {
    const env = isolatedEnv(dir.path);
    const plain = await run(['status', '--json'], env);
    expect(plain.code).toBe(0);
    const trainDir = join(dir.path, 'train');
    mkdirSync(trainDir);
    // An empty directory: every chunk's cache comes from the executable, and V8 takes each of them.
    const training = await run(['status', '--json'], { ...env, OCI_BUILD_SEA_TRAIN_DIR: trainDir });
    expect(training).toMatchObject({ code: 0, stdout: plain.stdout });
    expect(training.stderr).not.toMatch(/was rejected/);
    const written = readdirSync(trainDir);
    expect(written.length).toBeGreaterThan(0);
    for (const name of written) expect(name).toMatch(/\.cjs\.cache$/);
    // A run from those caches takes them too.
    const again = await run(['status', '--json'], { ...env, OCI_BUILD_SEA_TRAIN_DIR: trainDir });
    expect(again).toMatchObject({ code: 0, stdout: plain.stdout });
    expect(again.stderr).not.toMatch(/was rejected/);
  });
});
