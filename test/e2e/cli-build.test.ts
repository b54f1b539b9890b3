// `oci-build build` end to end, as a user runs it: the built CLI, real Go/Maven/.NET, real buildah
// (vfs + chroot, a temp storage root), a real registry on loopback, skopeo to read it back.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { isolatedEnv, runCli } from '../helpers/cli.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startRegistry } from '../helpers/registry.js';
import { hasTool } from '../helpers/toolchains.js';

let sandbox: TempDir;
let env: Record<string, string>;
const repos: FixtureRepo[] = [];

async function repo(name: string): Promise<FixtureRepo> {
  const r = await fixtureRepo(name);
  repos.push(r);
  return r;
}

function buildah(args: string[], root = env.OCI_BUILD_IMAGE_ROOT!, runRoot = env.OCI_BUILD_IMAGE_RUN_ROOT!): string {
  return execFileSync('buildah', ['--root', root, '--runroot', runRoot, '--storage-driver', 'vfs', ...args], { encoding: 'utf8' }).trim();
}

function parseRecord(stdout: string): BuildRecord {
  return JSON.parse(stdout) as BuildRecord;
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-e2e-');
  env = isolatedEnv(sandbox.path);
});

afterAll(async () => {
  for (const r of repos) await r.cleanup();
  await sandbox?.cleanup();
});

describe('oci-build build (Go)', () => {
  let go: FixtureRepo;
  let record: BuildRecord;

  beforeAll(async () => {
    go = await repo('sample-go-repo');
    const result = await runCli(['build', go.dir, '--json'], { env });
    expect(result.stderr).not.toMatch(/internal error/);
    expect(result.code, result.stderr).toBe(0);
    record = parseRecord(result.stdout);
  });

  it('records a succeeded build with every phase, the commit and the branch', () => {
    expect(record.status).toBe('succeeded');
    expect(record.trigger).toBe('cli');
    expect(record.repository).toMatchObject({ commit: go.commit, branch: 'main' });
    expect(record.phases.map((p) => p.name)).toEqual(['source', 'detect', 'build', 'image']);
    expect(record.phases.every((p) => p.status === 'succeeded' && p.durationMs >= 0)).toBe(true);
  });

  it('tags the image with the commit and the branch and labels it', () => {
    expect(record.images).toHaveLength(1);
    const image = record.images[0]!;
    expect(image.repository).toBe('sample-go-repo');
    expect(image.tags).toEqual([`sha-${go.commit.slice(0, 7)}`, 'main']);
    const inspect = JSON.parse(buildah(['inspect', '--type', 'image', `sample-go-repo:main`])) as { OCIv1: { config: { Labels: Record<string, string> }; created: string } };
    const labels = inspect.OCIv1.config.Labels;
    expect(labels['org.opencontainers.image.revision']).toBe(go.commit);
    expect(labels['org.opencontainers.image.ref.name']).toBeUndefined();
    expect(labels['org.opencontainers.image.created']).toBe('2026-01-01T00:00:00.000Z');
    expect(inspect.OCIv1.created).toMatch(/^2026-01-01T00:00:00/);
    // both tags name the same image
    expect(buildah(['images', '--format', '{{.ID}}', `sample-go-repo:sha-${go.commit.slice(0, 7)}`])).toBe(buildah(['images', '--format', '{{.ID}}', 'sample-go-repo:main']));
  });

  it("the image's binary runs and prints what the fixture prints", () => {
    const container = buildah(['from', 'sample-go-repo:main']);
    try {
      const mount = buildah(['mount', container]);
      const output = execFileSync(join(mount, 'app'), { encoding: 'utf8' });
      expect(output.trim()).toBe('Hello from sample-go-repo');
    } finally {
      buildah(['rm', container]);
    }
  });

  it('keeps the record and the log, and `status` shows them', async () => {
    expect(record.logPath).toBeTruthy();
    expect(existsSync(record.logPath!)).toBe(true);
    const list = await runCli(['status', '--json'], { env });
    expect(list.code).toBe(0);
    const builds = (JSON.parse(list.stdout) as { builds: BuildRecord[] }).builds;
    expect(builds.map((b) => b.id)).toContain(record.id);

    const table = await runCli(['status'], { env });
    expect(table.stdout).toContain(record.id);
    expect(table.stdout).toContain(go.commit.slice(0, 7));
    expect(table.stdout).toContain('succeeded');

    const one = await runCli(['status', record.id], { env });
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(record.logPath!);
    expect(one.stdout).toContain('sha-');

    const unknown = await runCli(['status', 'no-such-build'], { env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/No build with id no-such-build/);
  });

  it('marks a worktree with uncommitted changes -dirty', async () => {
    const dirty = await repo('sample-go-repo');
    writeFileSync(join(dirty.dir, 'main.go'), readFileSync(join(dirty.dir, 'main.go'), 'utf8').replace('Hello', 'Howdy'));
    const result = await runCli(['build', dirty.dir, '--json', '--no-image'], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(parseRecord(result.stdout).repository.dirty).toBe(true);
    const imaged = await runCli(['build', dirty.dir, '--json'], { env });
    expect(parseRecord(imaged.stdout).images[0]?.tags[0]).toBe(`sha-${dirty.commit.slice(0, 7)}-dirty`);
  });

  it('prints a summary with the image and its tags when not --json', async () => {
    const result = await runCli(['build', go.dir], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('sample-go-repo');
    expect(result.stdout).toContain(`sha-${go.commit.slice(0, 7)}`);
    // a second build of the same commit: its own output (dist/, ignored) does not make it dirty
    expect(result.stdout).not.toContain('-dirty');
    // progress lines go to stderr, one per phase, plain in CI
    expect(result.stderr).toMatch(/source/);
    expect(result.stderr).toMatch(/image/);
  });
});

describe('oci-build build failures', () => {
  it('a compile error exits 1 with the compiler error in the log and no image phase', async () => {
    const broken = await repo('broken-go-repo');
    const result = await runCli(['build', broken.dir, '--json'], { env });
    expect(result.code).toBe(1);
    const record = parseRecord(result.stdout);
    expect(record.status).toBe('failed');
    expect(record.error?.phase).toBe('build');
    expect(record.phases.some((p) => p.name === 'image')).toBe(false);
    const log = readFileSync(record.logPath!, 'utf8');
    expect(log).toMatch(/undefined: /);
  });

  it('a missing Dockerfile exits 1 naming the paths looked at', async () => {
    const plain = await repo('no-dockerfile-repo');
    const result = await runCli(['build', plain.dir], { env });
    expect(result.code).toBe(1);
    const output = result.stdout + result.stderr;
    expect(output).toContain(join(plain.dir, 'Dockerfile'));
    expect(output).toContain(join(plain.dir, 'Containerfile'));
  });

  it('a directory that is not a Git repository exits 2 and says how to fix it', async () => {
    const dir = await tempDir();
    try {
      execFileSync('cp', ['-r', join(import.meta.dirname, '../../fixtures/sample-go-repo/.'), dir.path]);
      const result = await runCli(['build', dir.path], { env });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/not a Git repository|git init/i);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace for a user's mistake
    } finally {
      await dir.cleanup();
    }
  });

  it('bad usage and bad config exit 2 with every problem listed', async () => {
    const noDir = await runCli(['build', '/no/such/dir'], { env });
    expect(noDir.code).toBe(2);
    expect(noDir.stderr).toContain('/no/such/dir');

    const config = join(sandbox.path, 'bad.yaml');
    writeFileSync(config, 'build:\n  timeout: soon\nimage:\n  colour: red\n');
    const bad = await runCli(['build', '.', '-c', config], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('build.timeout');
    expect(bad.stderr).toContain('image.colour');

    const push = await runCli(['build', '.', '--push'], { env });
    expect(push.code).toBe(2);
    expect(push.stderr).toMatch(/registry/);

    const affected = await runCli(['build', '.', '--affected'], { env });
    expect(affected.code).toBe(2);
    expect(affected.stderr).toMatch(/--base/);
  });
});

describe('oci-build build with a registry', () => {
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('pushes both tags; skopeo shows the tags, the labels and the digest the record reports', async () => {
    const go = await repo('sample-go-repo');
    const result = await runCli(['build', go.dir, '--registry', `${registry.host}/team`, '--push', '--no-tls-verify', '--json'], { env });
    expect(result.code, result.stderr).toBe(0);
    const record = parseRecord(result.stdout);
    const image = record.images[0]!;
    expect(image).toMatchObject({ repository: `${registry.host}/team/sample-go-repo`, pushed: true });
    expect(image.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(record.phases.at(-1)).toMatchObject({ name: 'push', status: 'succeeded' });

    const inspect = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/team/sample-go-repo:main`], { encoding: 'utf8' }),
    ) as { Digest: string; RepoTags: string[]; Labels: Record<string, string> };
    expect(inspect.Digest).toBe(image.digest);
    expect(inspect.RepoTags.sort()).toEqual(['main', `sha-${go.commit.slice(0, 7)}`].sort());
    expect(inspect.Labels['org.opencontainers.image.revision']).toBe(go.commit);
  });

  it('the same commit built in two separate storage roots gives the same digest', async () => {
    const go = await repo('sample-go-repo');
    const digests: string[] = [];
    for (const name of ['a', 'b']) {
      const isolated = isolatedEnv(join(sandbox.path, `repro-${name}`));
      const result = await runCli(['build', go.dir, '--registry', `${registry.host}/repro-${name}`, '--push', '--no-tls-verify', '--json'], { env: isolated });
      expect(result.code, result.stderr).toBe(0);
      digests.push(parseRecord(result.stdout).images[0]!.digest!);
    }
    expect(digests[0]).toMatch(/^sha256:/);
    expect(digests[1]).toBe(digests[0]);
  });

  it('a registry that does not answer fails the push phase with exit 3', async () => {
    const go = await repo('sample-go-repo');
    const result = await runCli(['build', go.dir, '--registry', '127.0.0.1:1/team', '--push', '--no-tls-verify', '--json'], { env });
    expect(result.code).toBe(3);
    expect(parseRecord(result.stdout).error?.phase).toBe('push');
  });
});

describe('oci-build build (Java and .NET)', () => {
  // The images are FROM scratch, with no runtime in them: what they hold is read from a mount of
  // the image and run with the host's runtime (the one that built it), so a wrong or empty COPY,
  // or a build output that is not the fixture's program, fails here.
  it('builds the Maven fixture into an image holding the jar', async () => {
    const java = await repo('sample-java-repo');
    const result = await runCli(['build', java.dir, '--json'], { env });
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const record = parseRecord(result.stdout);
    expect(record.images[0]?.tags).toContain('main');
    expect(record.projects?.[0]?.language).toBe('java');
    withMountedImage(`${record.images[0]!.repository}:main`, (root) => {
      expect(readdirSync(join(root, 'app'))).toEqual(['sample-java-repo-1.0.0.jar']);
      const jar = join(root, 'app', 'sample-java-repo-1.0.0.jar');
      const output = execFileSync('java', ['-cp', jar, 'dev.ocibuild.sample.App'], { encoding: 'utf8' });
      expect(output.trim()).toBe('Hello from sample-java-repo');
    });
  });

  it.skipIf(!hasTool('dotnet'))('builds the .NET fixture into an image', async () => {
    const dotnet = await repo('sample-dotnet-repo');
    const result = await runCli(['build', dotnet.dir, '--json'], { env });
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const record = parseRecord(result.stdout);
    expect(record.projects?.[0]?.language).toBe('dotnet');
    expect(record.images[0]?.repository).toBe('sample-dotnet-repo');
    withMountedImage('sample-dotnet-repo:main', (root) => {
      // What `dotnet publish -o dist` writes: the app's dll and what the runtime needs to start it.
      expect(readdirSync(join(root, 'app'))).toEqual(expect.arrayContaining(['sample-dotnet-repo.dll', 'sample-dotnet-repo.runtimeconfig.json']));
      const output = execFileSync('dotnet', [join(root, 'app', 'sample-dotnet-repo.dll')], {
        encoding: 'utf8',
        env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1' },
      });
      expect(output.trim()).toBe('Hello from sample-dotnet-repo');
    });
  });
});

/** Runs `check` on the root filesystem of a local image (a working container's mount), then removes the container. */
function withMountedImage(image: string, check: (root: string) => void): void {
  const container = buildah(['from', image]);
  try {
    check(buildah(['mount', container]));
  } finally {
    buildah(['rm', container]);
  }
}
