// oci-build's own image, built by oci-build: `oci-build build` of this repository (its committed
// HEAD, cloned) detects a Node package, runs `npm ci` and `npm run build` in the sandbox (which
// write dist/oci-build) and builds ./Containerfile on a Debian base made by mmdebstrap
// (test/helpers/base-image.ts), with the .NET SDK of this machine when it has one. Then, inside
// that image (buildah run, chroot isolation): --version, doctor, and a build of the Go fixture
// whose image runs.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aptPackagesOf, debianBaseTarball, importBaseImage, TEST_CACHE_DIR } from '../helpers/base-image.js';
import { isolatedEnv } from '../helpers/cli.js';
import { fixtureRepo, git, REPO_ROOT, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { ensureSeaExecutable, runExecutable } from '../helpers/sea-executable.js';

const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };

let exe: string;
let dir: TempDir;
let registry: TestRegistry;
let go: FixtureRepo;
let env: Record<string, string>;
let storage: string[];
let base: string;
let dotnetSdk: string | undefined;
let image: string;

/** The machine's .NET SDK directory (the one holding `dotnet` and sdk/), when there is one. */
function machineDotnetSdk(): string | undefined {
  try {
    const root = dirname(realpathSync(execFileSync('sh', ['-c', 'command -v dotnet'], { encoding: 'utf8' }).trim()));
    return existsSync(join(root, 'sdk')) && readdirSync(join(root, 'sdk')).length > 0 ? root : undefined;
  } catch {
    return undefined;
  }
}

function buildah(args: string[]): string {
  return execFileSync('buildah', [...storage, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024, timeout: 600_000 }).trim();
}

function run(file: string, args: string[]) {
  return runExecutable(file, args, { env: { ...process.env, ...env }, timeoutMs: 900_000 });
}

beforeAll(async () => {
  exe = ensureSeaExecutable();
  dir = await tempDir('oci-build-own-image-');
  const isolated = isolatedEnv(dir.path);
  const workDir = join(TEST_CACHE_DIR, 'own-image-work');
  env = {
    ...isolated,
    CI: 'true',
    NO_COLOR: '1',
    // npm's cache (under the work directory) is kept between runs: `npm ci` of this repository
    // then reads the registry for metadata only.
    OCI_BUILD_WORK_DIR: workDir,
  };
  rmSync(join(workDir, 'builds'), { recursive: true, force: true });
  storage = ['--root', join(dir.path, 'storage'), '--runroot', join(dir.path, 'run'), '--storage-driver', 'vfs'];
  registry = await startRegistry();
  // With the Containerfile's packages (and .NET's libicu) preinstalled: see base-image.ts.
  const packages = [...aptPackagesOf(readFileSync(join(REPO_ROOT, 'Containerfile'), 'utf8')), 'libicu72'];
  base = importBaseImage(debianBaseTarball({ include: packages }), registry.host, storage);
  go = await fixtureRepo('sample-go-repo');

  dotnetSdk = machineDotnetSdk();
  if (dotnetSdk) {
    // An image holding only the SDK, at the path Microsoft's SDK images have it.
    const container = buildah(['from', 'scratch']);
    buildah(['copy', '--quiet', container, dotnetSdk, '/usr/share/dotnet']);
    buildah(['commit', '--quiet', '--rm', container, 'localhost/oci-build-test/dotnet-sdk:local']);
  }
}, 1_200_000);
afterAll(async () => {
  await registry?.stop();
  await go?.cleanup();
  await dir?.cleanup();
});

describe("oci-build's own image", () => {
  it('oci-build build of this repository gives oci-build:sha-… from ./Containerfile', async () => {
    const source = join(dir.path, 'oci-build');
    git(dir.path, ['clone', '--quiet', '--no-hardlinks', REPO_ROOT, source]);
    const commit = git(source, ['rev-parse', 'HEAD']);
    const args = ['build', source, '--json', '--no-tls-verify', '--build-arg', `BASE=${base}`];
    if (dotnetSdk) args.push('--build-arg', 'DOTNET_SDK_IMAGE=localhost/oci-build-test/dotnet-sdk:local');
    const built = await run(exe, args);
    expect(built.stderr).not.toMatch(/internal error/);
    const record = JSON.parse(built.stdout) as { status: string; images: Array<{ repository: string; tags: string[] }>; phases: Array<{ name: string; error?: string }> };
    expect(record.phases.filter((p) => p.error)).toEqual([]);
    expect(record.status).toBe('succeeded');
    expect(record.images).toEqual([expect.objectContaining({ repository: 'oci-build', tags: expect.arrayContaining([`sha-${commit.slice(0, 7)}`]) })]);
    image = `oci-build:sha-${commit.slice(0, 7)}`;
    const config = JSON.parse(buildah(['inspect', '--type', 'image', image])) as { OCIv1: { config: { Entrypoint: string[] } } };
    expect(config.OCIv1.config.Entrypoint).toEqual(['oci-build']);
  }, 1_200_000);

  it('inside it: --version, doctor, and a build of the Go fixture whose image runs', async () => {
    expect(image).toBeDefined();
    const container = buildah(['from', '--quiet', '--name', 'oci-build-own-image', image]);
    // Root in the container with CAP_SYS_ADMIN: buildah (its storage, its chroot runs) and
    // bubblewrap (the build sandbox) make mount namespaces.
    const inside = (args: string[]) => run('buildah', [...storage, 'run', '--isolation', 'chroot', '--cap-add', 'CAP_SYS_ADMIN', container, '--', ...args]);
    try {
      expect(await inside(['oci-build', '--version'])).toMatchObject({ code: 0, stdout: `${version}\n` });

      const doctor = await inside(['oci-build', 'doctor', '--json']);
      const checks = Object.fromEntries((JSON.parse(doctor.stdout) as { checks: Array<{ name: string; ok: boolean; detail?: string }> }).checks.map((c) => [c.name, c]));
      for (const name of ['buildah', 'git', 'go', 'mvn', 'java', 'sandbox']) expect(checks[name], name).toMatchObject({ ok: true });
      expect(checks.buildah?.detail).toMatch(/driver vfs, isolation chroot/);
      if (dotnetSdk) expect(checks.dotnet).toMatchObject({ ok: true });

      buildah(['copy', '--quiet', container, go.dir, '/src/sample-go-repo']);
      const built = await inside(['oci-build', 'build', '/src/sample-go-repo', '--json']);
      expect(built.stderr).not.toMatch(/internal error/);
      const record = JSON.parse(built.stdout) as { status: string; images: Array<{ tags: string[] }> };
      expect(record.status).toBe('succeeded');
      const tag = `sample-go-repo:sha-${go.commit.slice(0, 7)}`;
      expect(record.images[0]?.tags).toContain(`sha-${go.commit.slice(0, 7)}`);

      const app = await inside(['buildah', 'from', '--quiet', tag]);
      expect(app.code).toBe(0);
      const hello = await inside(['buildah', 'run', app.stdout.trim(), '--', '/app']);
      expect(hello).toMatchObject({ code: 0, stdout: 'Hello from sample-go-repo\n' });
    } finally {
      buildah(['rm', container]);
    }
  }, 600_000);
});
