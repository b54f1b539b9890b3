// The buildah adapter without buildah: a fake CommandRunner records every argv, so the flags,
// their order (global options before the subcommand) and the error mapping are pinned here.

import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  BuildFailedError,
  CancelledError,
  CommandFailedError,
  InputError,
  ServiceUnavailableError,
  ToolUnavailableError,
} from '../../src/core/errors.js';
import type { ImageSpec, LogSink } from '../../src/core/ports.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/exec/run-command.js';
import { budArgs, globalArgs, pushArgs } from '../../src/image/buildah-args.js';
import { classifyBuildahFailure, hasRegistryHost, registryHostOf } from '../../src/image/buildah-errors.js';
import type { StorageProbe } from '../../src/image/buildah-storage.js';
import {
  ImagePushError,
  RegistryAuthError,
  checkBuildah,
  createBuildahImageBuilder,
  resolveStorage,
  type BuildahOptions,
} from '../../src/image/buildah.js';

interface Call {
  file: string;
  args: readonly string[];
  options: RunOptions | undefined;
}

const IMAGE_ID = 'e'.repeat(64);
const LOCAL_DIGEST = `sha256:${'d'.repeat(64)}`;
const REMOTE_DIGEST = `sha256:${'a'.repeat(64)}`;

/** Plays buildah: writes the iid/digest files it is asked for, or fails with the given output. */
function fakeBuildah(behaviour: { fail?: { subcommand: string; output: string[]; times?: number }; stdout?: Record<string, string> } = {}) {
  const calls: Call[] = [];
  let failures = 0;
  const run: CommandRunner = async (file, args, options) => {
    calls.push({ file, args, options });
    const subcommand = args.find((a) => ['bud', 'push', 'images', 'info', '--version'].includes(a)) ?? '';
    const result: RunResult = { exitCode: 0, stdout: behaviour.stdout?.[subcommand] ?? '', stderr: '', durationMs: 1 };
    if (behaviour.fail?.subcommand === subcommand && failures++ < (behaviour.fail.times ?? Infinity)) {
      for (const line of behaviour.fail.output) options?.log?.write(line, 'stderr');
      throw new CommandFailedError(`buildah exited with code 125`, [file, ...args].join(' '), 125);
    }
    const valueOf = (flag: string) => args[args.indexOf(flag) + 1]!;
    if (subcommand === 'bud') writeFileSync(valueOf('--iidfile'), `sha256:${IMAGE_ID}`);
    if (subcommand === 'push') writeFileSync(valueOf('--digestfile'), REMOTE_DIGEST);
    if (subcommand === 'images') result.stdout = JSON.stringify([{ id: `sha256:${IMAGE_ID}`, digest: LOCAL_DIGEST, names: [] }]);
    return result;
  };
  return { run, calls };
}

const nullLog: LogSink = { write: () => undefined };
const ctx = () => ({ signal: new AbortController().signal, log: nullLog });
const vfs: BuildahOptions = { root: '/store/root', runRoot: '/store/run', storageDriver: 'vfs', isolation: 'chroot' };

const spec: ImageSpec = {
  project: 'api',
  contextDir: '/src/app',
  dockerfile: '/src/app/Dockerfile',
  repository: '127.0.0.1:5000/team/app',
  tags: ['sha-abc1234', 'feature-x'],
  labels: { 'org.opencontainers.image.revision': 'abc1234', 'a.label': 'with spaces; $(not a shell)' },
  buildArgs: { VERSION: '1.2.3', TOKEN: 'x y' },
  timestamp: 1_767_225_600,
};

/** The values of every occurrence of a flag. */
function valuesOf(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

describe('buildah bud arguments', () => {
  it('puts the storage flags before the subcommand and the build flags after it', async () => {
    const { run, calls } = fakeBuildah();
    const built = await createBuildahImageBuilder({ run, options: vfs }).build(spec, ctx());
    expect(built).toEqual({ imageId: IMAGE_ID, digest: LOCAL_DIGEST });

    const bud = calls.find((c) => c.args.includes('bud'))!;
    expect(bud.file).toBe('buildah');
    expect(bud.args.slice(0, 7)).toEqual(['--root', '/store/root', '--runroot', '/store/run', '--storage-driver', 'vfs', 'bud']);
    expect(valuesOf(bud.args, '--isolation')).toEqual(['chroot']);
    expect(valuesOf(bud.args, '-f')).toEqual(['/src/app/Dockerfile']);
    expect(valuesOf(bud.args, '-t')).toEqual(['127.0.0.1:5000/team/app:sha-abc1234', '127.0.0.1:5000/team/app:feature-x']);
    // sorted by key: the same labels in any order give the same history
    expect(valuesOf(bud.args, '--label')).toEqual(['a.label=with spaces; $(not a shell)', 'org.opencontainers.image.revision=abc1234']);
    expect(valuesOf(bud.args, '--build-arg')).toEqual(['TOKEN=x y', 'VERSION=1.2.3']);
    expect(valuesOf(bud.args, '--timestamp')).toEqual(['1767225600']);
    expect(bud.args).toContain('--layers=false');
    expect(bud.args).toContain('--identity-label=false');
    expect(bud.args).toContain('--pull=newer');
    expect(bud.args).toContain('--tls-verify=true');
    expect(bud.args).not.toContain('--authfile');
    expect(bud.args[bud.args.length - 1]).toBe('/src/app');
    expect(bud.options?.cwd).toBe('/src/app');
    expect(bud.options?.capture).toBe(false);

    const images = calls.find((c) => c.args.includes('images'))!;
    expect(images.args).toEqual(['--root', '/store/root', '--runroot', '/store/run', '--storage-driver', 'vfs', 'images', '--json', '--digests', '--no-trunc', IMAGE_ID]);
  });

  it('passes the auth file and the spec’s TLS setting for base-image pulls', async () => {
    const { run, calls } = fakeBuildah();
    const images = createBuildahImageBuilder({ run, options: { ...vfs, authFile: '/secrets/auth.json', tlsVerify: true } });
    await images.build({ ...spec, tlsVerify: false } as ImageSpec, ctx());
    const bud = calls.find((c) => c.args.includes('bud'))!;
    expect(valuesOf(bud.args, '--authfile')).toEqual(['/secrets/auth.json']);
    expect(bud.args).toContain('--tls-verify=false');
    expect(bud.args).not.toContain('--tls-verify=true');
  });

  it('leaves --root/--runroot to buildah when unset', () => {
    expect(globalArgs({ driver: 'overlay', isolation: 'oci' })).toEqual(['--storage-driver', 'overlay']);
  });

  it('never builds a shell string: every value is one argv element, whatever it holds', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9.]{0,20}$/), fc.string()),
        fc.dictionary(fc.stringMatching(/^[A-Z_]{1,10}$/), fc.string()),
        fc.array(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,20}$/), { minLength: 1, maxLength: 4 }),
        (labels, buildArgs, tags) => {
          const args = budArgs({
            storage: { driver: 'vfs', isolation: 'chroot' },
            contextDir: '/ctx dir',
            dockerfile: '/ctx dir/Dockerfile',
            repository: 'r/app',
            tags,
            labels,
            buildArgs,
            timestamp: 1,
            iidFile: '/tmp/iid',
            tlsVerify: true,
          });
          expect(valuesOf(args, '--label').sort()).toEqual(Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort());
          expect(valuesOf(args, '--build-arg').sort()).toEqual(Object.entries(buildArgs).map(([k, v]) => `${k}=${v}`).sort());
          expect(valuesOf(args, '-t')).toEqual(tags.map((t) => `r/app:${t}`));
          expect(args[args.length - 1]).toBe('/ctx dir');
        },
      ),
    );
  });
});

describe('buildah push arguments', () => {
  it('pushes every tag by image ID with a digest file and returns the registry digest', async () => {
    const { run, calls } = fakeBuildah();
    const images = createBuildahImageBuilder({ run, options: { ...vfs, authFile: '/secrets/auth.json' } });
    const pushed = await images.push({ repository: spec.repository, tags: spec.tags, imageId: IMAGE_ID, tlsVerify: false }, ctx());
    expect(pushed).toEqual({ digest: REMOTE_DIGEST });
    const pushes = calls.filter((c) => c.args.includes('push'));
    expect(pushes).toHaveLength(2);
    for (const [i, tag] of spec.tags.entries()) {
      const args = pushes[i]!.args;
      expect(args.slice(0, 7)).toEqual(['--root', '/store/root', '--runroot', '/store/run', '--storage-driver', 'vfs', 'push']);
      expect(args).toContain('--tls-verify=false');
      expect(valuesOf(args, '--authfile')).toEqual(['/secrets/auth.json']);
      expect(valuesOf(args, '--digestfile')).toHaveLength(1);
      expect(args.slice(-2)).toEqual([IMAGE_ID, `docker://127.0.0.1:5000/team/app:${tag}`]);
    }
  });

  // docker-registry's filesystem driver, while other pushes link the same blobs into the
  // repository (several workers building one commit for several branches): the cluster e2e's
  // failure of 2026-12-03, reproduced with six concurrent `buildah push` of one image.
  const BLOB_RACE = [
    'Getting image source signatures',
    'Copying blob sha256:89ccaef865a6f0b6990d3c54a7a27ea908af771cdbe70095dbb3937da4a87f8f',
    'Copying config sha256:a45dad3c20d8ae44f3dafcec72f893a001b275f360d72418574b3e67ac302633',
    'Writing manifest to image destination',
    'Error: pushing image "a45dad3c20d8" to "docker://127.0.0.1:5000/team/app:sha-abc1234": writing manifest: uploading manifest sha-abc1234 to 127.0.0.1:5000/team/app: errors:',
    'digest invalid',
    'manifest blob unknown: blob unknown to registry',
  ];

  it('pushes again when the registry refused the manifest for blobs other pushes were linking', async () => {
    const { run, calls } = fakeBuildah({ fail: { subcommand: 'push', output: BLOB_RACE, times: 2 } });
    const lines: string[] = [];
    const pushed = await createBuildahImageBuilder({ run, options: vfs }).push(
      { repository: spec.repository, tags: ['sha-abc1234'], imageId: IMAGE_ID, tlsVerify: false },
      { signal: new AbortController().signal, log: { write: (line) => void lines.push(line) } },
    );
    expect(pushed).toEqual({ digest: REMOTE_DIGEST });
    expect(calls.filter((c) => c.args.includes('push'))).toHaveLength(3);
    expect(lines.filter((l) => l.includes('pushing again in'))).toHaveLength(2);
  });

  it('pushes again after a 5xx of the registry, and ends as a transient ServiceUnavailableError when it lasts', async () => {
    const FIVE_HUNDRED = [
      'Copying blob sha256:e9605dad10599d46d8e189ade8b59ee8196a5aa9d3854390ee80daa660d7762a',
      'Error: pushing image "0ec79ebadf66" to "docker://127.0.0.1:5000/team/app:b5": writing blob: failed to read from destination repository team/app: 500 (Internal Server Error)',
    ];
    const once = fakeBuildah({ fail: { subcommand: 'push', output: FIVE_HUNDRED, times: 1 } });
    await expect(createBuildahImageBuilder({ run: once.run, options: vfs }).push({ repository: spec.repository, tags: ['b5'], imageId: IMAGE_ID, tlsVerify: false }, ctx())).resolves.toEqual({ digest: REMOTE_DIGEST });
    expect(once.calls.filter((c) => c.args.includes('push'))).toHaveLength(2);

    const always = fakeBuildah({ fail: { subcommand: 'push', output: FIVE_HUNDRED } });
    const error = await createBuildahImageBuilder({ run: always.run, options: vfs })
      .push({ repository: spec.repository, tags: ['b5'], imageId: IMAGE_ID, tlsVerify: false }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).transient).toBe(true);
    expect((error as Error).message).toContain('the registry 127.0.0.1:5000 is unavailable');
    expect(always.calls.filter((c) => c.args.includes('push'))).toHaveLength(5);
  });

  it('a manifest refused that way every time ends as an ImagePushError that says so; other push failures are not tried again', async () => {
    const { run, calls } = fakeBuildah({ fail: { subcommand: 'push', output: BLOB_RACE } });
    const error = await createBuildahImageBuilder({ run, options: vfs })
      .push({ repository: spec.repository, tags: ['sha-abc1234'], imageId: IMAGE_ID, tlsVerify: false }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ImagePushError);
    expect((error as ImagePushError).message).toContain('refused the image\'s manifest for blobs it had not linked, each of 5 times');
    expect((error as ImagePushError).hint).toMatch(/build again/);
    expect(calls.filter((c) => c.args.includes('push'))).toHaveLength(5);

    const other = fakeBuildah({ fail: { subcommand: 'push', output: ['Error: h:1/t:a: image not known'] } });
    await expect(
      createBuildahImageBuilder({ run: other.run, options: vfs }).push({ repository: spec.repository, tags: ['a'], imageId: IMAGE_ID, tlsVerify: false }, ctx()),
    ).rejects.toBeInstanceOf(ImagePushError);
    expect(other.calls.filter((c) => c.args.includes('push'))).toHaveLength(1);
  });

  it('pushArgs uses no --creds: credentials only ever come from the auth file', () => {
    const args = pushArgs({ storage: { driver: 'vfs', isolation: 'chroot' }, imageId: IMAGE_ID, destination: 'h:1/a:b', tlsVerify: true, digestFile: '/d' });
    expect(args).toEqual(['--storage-driver', 'vfs', 'push', '--tls-verify=true', '--digestfile', '/d', IMAGE_ID, 'docker://h:1/a:b']);
  });

  it('refuses to push a name without a registry (it would go to Docker Hub)', async () => {
    const { run, calls } = fakeBuildah();
    const error = await createBuildahImageBuilder({ run, options: vfs })
      .push({ repository: 'app', tags: ['main'], imageId: IMAGE_ID, tlsVerify: true }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect(calls).toHaveLength(0);
  });
});

describe('failures', () => {
  it('a failed RUN step is a BuildFailedError with the last lines of output', async () => {
    const { run } = fakeBuildah({
      fail: { subcommand: 'bud', output: ['STEP 2/2: RUN make', 'make: *** [all] Error 2', 'Error: building at STEP "RUN make": exit status 2'] },
    });
    const error = await createBuildahImageBuilder({ run, options: vfs }).build(spec, ctx()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BuildFailedError);
    expect((error as Error).message).toContain('make: *** [all] Error 2');
    expect((error as Error).message).toContain('project api');
    // build-arg values (maybe tokens) appear nowhere in the error, its cause included
    const cause = (error as Error).cause as CommandFailedError;
    expect(cause.command).toBe('buildah bud');
    expect(JSON.stringify({ ...(error as BuildFailedError).toJSON(), cause: { ...cause, message: cause.message } })).not.toContain('1.2.3');
  });

  it('"permission denied" inside a RUN step is the Dockerfile’s failure, not the registry’s', () => {
    const error = classifyBuildahFailure({
      action: 'build',
      reference: 'r/app:main',
      lastLines: ['sh: /opt/x: Permission denied', 'Error: building at STEP "RUN /opt/x": exit status 126'],
      cause: undefined,
    });
    expect(error).toBeInstanceOf(BuildFailedError);
  });

  it.each([
    ['connection refused', 'Error: pushing image "x" to "docker://127.0.0.1:5999/t:a": trying to reuse blob sha256:04 at destination: pinging container registry 127.0.0.1:5999: Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused'],
    ['5xx', 'Error: pushing image "x" to "docker://127.0.0.1:5999/t:a": trying to reuse blob sha256:04 at destination: pinging container registry 127.0.0.1:5999: invalid status code from registry 503 (Service Unavailable)'],
    ['no such host', 'Error: pushing image "x" to "docker://reg.invalid/t:a": pinging container registry reg.invalid: Get "https://reg.invalid/v2/": dial tcp: lookup reg.invalid: no such host'],
  ])('a push that meets %s is a transient ServiceUnavailableError naming the registry', (_name, line) => {
    const error = classifyBuildahFailure({ action: 'push', reference: '127.0.0.1:5999/t:a', lastLines: ['Copying blob sha256:04', line], cause: undefined });
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error.transient).toBe(true);
    expect(error.exitCode).toBe(3);
    expect(error.message).toMatch(/registry (127\.0\.0\.1:5999|reg\.invalid) is unavailable/);
  });

  it('refused credentials are a RegistryAuthError that points at image.authFile', async () => {
    const { run } = fakeBuildah({
      fail: {
        subcommand: 'push',
        output: ['Error: pushing image "x" to "docker://127.0.0.1:5401/t:a": trying to reuse blob sha256:04 at destination: checking whether a blob sha256:04 exists in 127.0.0.1:5401/t: unauthorized: authentication required'],
      },
    });
    const error = await createBuildahImageBuilder({ run, options: { ...vfs, authFile: '/secrets/auth.json' } })
      .push({ repository: '127.0.0.1:5401/t', tags: ['a'], imageId: IMAGE_ID, tlsVerify: false }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryAuthError);
    expect((error as RegistryAuthError).transient).toBe(false);
    expect((error as RegistryAuthError).message).toContain('127.0.0.1:5401');
    expect((error as RegistryAuthError).hint).toContain('/secrets/auth.json');
    expect((error as RegistryAuthError).hint).toContain('buildah login 127.0.0.1:5401');
  });

  it('a plain-HTTP registry with TLS verification on is a usage problem with the fix', () => {
    const error = classifyBuildahFailure({
      action: 'push',
      reference: '127.0.0.1:5999/t:a',
      lastLines: ['Error: pushing image "x" to "docker://127.0.0.1:5999/t:a": pinging container registry 127.0.0.1:5999: Get "https://127.0.0.1:5999/v2/": http: server gave HTTP response to HTTPS client'],
      cause: undefined,
    });
    expect(error).toBeInstanceOf(InputError);
    expect(error.hint).toMatch(/tlsVerify: false|--no-tls-verify/);
  });

  it('an unknown push failure is an ImagePushError', () => {
    const error = classifyBuildahFailure({ action: 'push', reference: 'h:1/t:a', lastLines: ['Error: h:1/t:a: image not known'], cause: undefined });
    expect(error).toBeInstanceOf(ImagePushError);
  });

  it('a missing base image is the Dockerfile’s failure', () => {
    const error = classifyBuildahFailure({
      action: 'build',
      reference: 'r/app:main',
      lastLines: ['Error: creating build container: initializing source docker://127.0.0.1:5999/library/nothere:latest: reading manifest latest in 127.0.0.1:5999/library/nothere: manifest unknown: manifest unknown'],
      cause: undefined,
    });
    expect(error).toBeInstanceOf(BuildFailedError);
    expect(error.message).toContain('127.0.0.1:5999');
  });

  it('cancellation and a missing buildah pass through untouched', async () => {
    const cancelled = new CancelledError('buildah bud was cancelled');
    const missing = new ToolUnavailableError('buildah is not installed');
    for (const thrown of [cancelled, missing]) {
      const run: CommandRunner = async () => {
        throw thrown;
      };
      await expect(createBuildahImageBuilder({ run, options: vfs }).build(spec, ctx())).rejects.toBe(thrown);
    }
  });
});

describe('registry names', () => {
  it.each([
    ['127.0.0.1:5000/team/app', '127.0.0.1:5000', true],
    ['localhost/app', 'localhost', true],
    ['ghcr.io/owner/app', 'ghcr.io', true],
    ['team/app', 'docker.io', false],
    ['app', 'docker.io', false],
  ])('%s → %s', (reference, host, named) => {
    expect(registryHostOf(reference)).toBe(host);
    expect(hasRegistryHost(reference)).toBe(named);
  });
});

describe('resolveStorage', () => {
  const probe = (overrides: Partial<StorageProbe>): StorageProbe => ({
    inContainer: async () => false,
    isRoot: () => true,
    overlaySupported: async () => true,
    filesystemOf: async () => 'ext4',
    ociRuntimeAvailable: async () => true,
    ...overrides,
  });
  const auto: BuildahOptions = { storageDriver: 'auto', isolation: 'auto' };

  it('inside a container: vfs + chroot', async () => {
    expect(await resolveStorage(auto, probe({ inContainer: async () => true }))).toEqual({ driver: 'vfs', isolation: 'chroot' });
  });
  it('on a host with overlay and an OCI runtime, as root: overlay + oci', async () => {
    expect(await resolveStorage(auto, probe({}))).toEqual({ driver: 'overlay', isolation: 'oci' });
  });
  it('overlay is not used on top of overlay, nor without kernel support, nor as non-root', async () => {
    expect((await resolveStorage(auto, probe({ filesystemOf: async () => 'overlay' }))).driver).toBe('vfs');
    expect((await resolveStorage(auto, probe({ overlaySupported: async () => false }))).driver).toBe('vfs');
    expect(await resolveStorage(auto, probe({ isRoot: () => false }))).toEqual({ driver: 'vfs', isolation: 'rootless' });
  });
  it('without runc or crun: chroot', async () => {
    expect((await resolveStorage(auto, probe({ ociRuntimeAvailable: async () => false }))).isolation).toBe('chroot');
  });
  it('explicit values are kept, without probing', async () => {
    const refuse = async (): Promise<never> => {
      throw new Error('must not probe');
    };
    const noProbe: StorageProbe = { inContainer: refuse, isRoot: () => true, overlaySupported: refuse, filesystemOf: refuse, ociRuntimeAvailable: refuse };
    expect(await resolveStorage({ storageDriver: 'overlay', isolation: 'oci' }, noProbe)).toEqual({ driver: 'overlay', isolation: 'oci' });
  });
  it('the builder resolves auto once and passes the result as flags', async () => {
    const { run, calls } = fakeBuildah();
    let probes = 0;
    const images = createBuildahImageBuilder({
      run,
      options: auto,
      storageProbe: probe({ inContainer: async () => (probes++, true) }),
    });
    await images.build(spec, ctx());
    await images.build(spec, ctx());
    expect(probes).toBe(1);
    for (const call of calls.filter((c) => c.args.includes('bud'))) {
      expect(call.args.slice(0, 3)).toEqual(['--storage-driver', 'vfs', 'bud']);
      expect(valuesOf(call.args, '--isolation')).toEqual(['chroot']);
    }
  });
});

describe('checkBuildah', () => {
  it('reports a missing buildah with the install command', async () => {
    const run: CommandRunner = async () => {
      throw new ToolUnavailableError('buildah is not installed (no buildah on PATH)');
    };
    expect(await checkBuildah(run, vfs)).toMatchObject({ ok: false, fix: 'Install it: apt-get install -y buildah' });
  });
  it('reports a store buildah cannot open, with what to change', async () => {
    const { run } = fakeBuildah({
      stdout: { '--version': 'buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)\n' },
      fail: { subcommand: 'info', output: ['Error: database storage graph driver "overlay" does not match our storage graph driver "vfs"'] },
    });
    const result = await checkBuildah(run, vfs);
    expect(result.ok).toBe(false);
    expect(result.version).toBe('1.28.2');
    expect(result.detail).toContain('/store/root');
    expect(result.fix).toContain('image.storageDriver');
  });
});
