// `oci-build build` of the Nx monorepo fixture, as a user runs it: the built CLI, the real Nx from
// the fixture's lockfile (npm ci on the first build), real Go, Maven and .NET, real buildah.

import { execFileSync } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { isolatedEnv, runCli } from '../helpers/cli.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { hasTool } from '../helpers/toolchains.js';

let sandbox: TempDir;
let env: Record<string, string>;
let repo: FixtureRepo;

function buildah(args: string[]): string {
  return execFileSync('buildah', ['--root', env.OCI_BUILD_IMAGE_ROOT!, '--runroot', env.OCI_BUILD_IMAGE_RUN_ROOT!, '--storage-driver', 'vfs', ...args], {
    encoding: 'utf8',
  }).trim();
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-e2e-nx-');
  env = isolatedEnv(sandbox.path);
  repo = await fixtureRepo('sample-nx-monorepo');
});

afterAll(async () => {
  await repo?.cleanup();
  await sandbox?.cleanup();
});

// The monorepo holds a .NET app: without dotnet its build fails.
describe.skipIf(!hasTool('dotnet'))('oci-build build <nx monorepo>', () => {
  it('builds every project and gives each app with a Dockerfile its image NAME/PROJECT', async () => {
    const result = await runCli(['build', repo.dir, '--json'], { env });
    expect(result.code, result.stderr.slice(-3000)).toBe(0);
    const record = JSON.parse(result.stdout) as BuildRecord;
    expect(record.images.map((i) => i.repository).sort()).toEqual(['sample-nx-monorepo/dotnet-app', 'sample-nx-monorepo/go-app', 'sample-nx-monorepo/java-app']);
    expect(record.phases.filter((p) => p.name === 'image').map((p) => p.project).sort()).toEqual(['dotnet-app', 'go-app', 'java-app']);
    const listed = buildah(['images', '--format', '{{.Name}}:{{.Tag}}']);
    for (const app of ['dotnet-app', 'go-app', 'java-app']) expect(listed).toContain(`sample-nx-monorepo/${app}:sha-${repo.commit.slice(0, 7)}`);
    // The Go app's image runs the binary Nx built, with the shared library in it.
    const container = buildah(['from', `localhost/sample-nx-monorepo/go-app:sha-${repo.commit.slice(0, 7)}`]);
    try {
      const mount = buildah(['mount', container]);
      expect(execFileSync(join(mount, 'app'), { encoding: 'utf8' })).toContain('(shared v1)');
    } finally {
      buildah(['rm', container]);
    }
  });

  it('--affected --base HEAD~1 after a change to the Go app builds and images only it', async () => {
    await appendFile(join(repo.dir, 'apps/go-app/main.go'), '\n// changed\n');
    const commit = repo.commitAll('go-app: change', '2026-01-05T00:00:00Z');
    const result = await runCli(['build', repo.dir, '--affected', '--base', 'HEAD~1', '--json'], { env });
    expect(result.code, result.stderr.slice(-3000)).toBe(0);
    const record = JSON.parse(result.stdout) as BuildRecord;
    expect(record.phases.filter((p) => p.name === 'build' || p.name === 'image').map((p) => `${p.name} ${p.project}`)).toEqual(['build go-app', 'image go-app']);
    expect(record.images.map((i) => i.repository)).toEqual(['sample-nx-monorepo/go-app']);
    expect(result.stderr).toContain('build go-app');
    expect(result.stderr).not.toMatch(/java-app|dotnet-app/);
    expect(buildah(['images', '--format', '{{.Name}}:{{.Tag}}'])).toContain(`sample-nx-monorepo/go-app:sha-${commit.slice(0, 7)}`);
  });

  it('--project of an app without a Dockerfile builds it, then exits 1 naming the Dockerfile looked for', async () => {
    const result = await runCli(['build', repo.dir, '--project', 'cli-tool'], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(join(repo.dir, 'apps/cli-tool/Dockerfile'));
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
