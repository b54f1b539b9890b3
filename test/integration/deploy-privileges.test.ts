// The restrictions deploy/ puts on a worker still let it build (bubblewrap sandbox for `go build`,
// buildah with vfs + chroot for the image):
//   - in a container: root with only the engine's default capabilities plus compose's cap_add
//     succeeds, and fails without the addition (seccomp and AppArmor profiles cannot be applied
//     here: no container engine);
//   - under systemd: the worker unit's filesystem sandbox, rebuilt with mount namespaces (no systemd
//     runs here) from the unit's own directives: a read-only system with only its StateDirectory,
//     RuntimeDirectory, ReadWritePaths and PrivateTmp writable, ProtectHome, NoNewPrivileges, and
//     the unit's Environment= as the worker's environment.

import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { envAssignments, kubernetesObjects, readDeployFile, unitKeys } from '../helpers/deploy-files.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { ensureSeaExecutable } from '../helpers/sea-executable.js';

/**
 * The capabilities Docker, Podman and containerd (Kubernetes) give a container by default
 * (moby's oci/caps/defaults.go; containerd's oci.WithDefaultSpec): the set cap_add adds to.
 */
const ENGINE_DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'];

const compose = parse(readDeployFile('compose.yaml'), { merge: true }) as { services: { worker: { cap_add: string[] } } };
const added = compose.services.worker.cap_add;

let repo: FixtureRepo;
let sandbox: TempDir;

beforeAll(async () => {
  [repo, sandbox] = await Promise.all([fixtureRepo('sample-go-repo'), tempDir('oci-build-caps-')]);
});

afterAll(async () => {
  await Promise.allSettled([repo?.cleanup(), sandbox?.cleanup()]);
});

/** `oci-build build` as root with only `caps` in its bounding set (setpriv), a fresh work directory each time. */
function buildWith(caps: string[], name: string): { code: number | null; record?: BuildRecord; stderr: string } {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  return recorded(
    spawnSync('setpriv', [`--bounding-set=${bounding}`, '--', process.execPath, CLI, 'build', repo.dir, '--json'], {
      cwd: sandbox.path,
      env: { ...process.env, CI: 'true', NO_COLOR: '1', ...isolatedEnv(join(sandbox.path, name)) },
      encoding: 'utf8',
      timeout: 170_000,
    }),
  );
}

function recorded(result: { status: number | null; stdout: string; stderr: string }): { code: number | null; record?: BuildRecord; stderr: string } {
  let record: BuildRecord | undefined;
  try {
    record = JSON.parse(result.stdout) as BuildRecord;
  } catch {
    // no record: the error is on stderr
  }
  return { code: result.status, ...(record ? { record } : {}), stderr: result.stderr };
}

describe('worker container privileges', () => {
  it('compose and Kubernetes add the same capabilities, and nothing else', () => {
    const worker = kubernetesObjects('kubernetes/worker.yaml').find((o) => o.kind === 'Deployment')!;
    expect(worker.spec.template.spec.containers[0].securityContext.capabilities.add).toEqual(added);
    expect(added).toEqual(['SYS_ADMIN']);
  });

  it("a build succeeds with the engine's default capabilities plus cap_add", () => {
    const { code, record, stderr } = buildWith([...ENGINE_DEFAULT_CAPS, ...added], 'with');
    expect(code, stderr).toBe(0);
    expect(record?.status).toBe('succeeded');
    expect(record?.phases.find((p) => p.name === 'build')?.status).toBe('succeeded');
    expect(record?.images[0]?.tags).toContain(`sha-${repo.commit.slice(0, 7)}`);
  });

  it('and fails without it: bubblewrap cannot create its namespaces', () => {
    const { code, record, stderr } = buildWith(ENGINE_DEFAULT_CAPS, 'without');
    expect(code).toBe(3);
    expect(record?.status).toBe('failed');
    expect(`${record?.error?.message ?? ''}${stderr}`).toMatch(/bubblewrap cannot create its sandbox/);
  });
});

/**
 * Runs the rest of its arguments in the mount namespace it sets up (unshare): a fresh, empty /var/lib
 * and /run stand in for the host's (so nothing of the host is written), /tmp is private, /root and
 * /home empty; the paths before `--` stay writable, everything else is remounted read-only.
 */
const UNIT_FILESYSTEM = `set -eu
sandbox=$1; shift
mount --bind "$sandbox/var-lib" /var/lib
mount --bind "$sandbox/run" /run
mount --bind "$sandbox/tmp" /tmp
mount --bind "$sandbox/empty" /root
mount --bind "$sandbox/empty" /home
while [ "$1" != -- ]; do mkdir -p "$1"; mount --bind "$1" "$1"; shift; done
shift
for path in / /var/lib /run /root /home; do mount -o remount,bind,ro "$path"; done
exec "$@"
`;

describe('the systemd worker unit', () => {
  const unit = unitKeys('systemd/oci-build-worker@.service');
  const expand = (value: string) => value.replaceAll('%i', '1').replaceAll('%H', hostname());
  const list = (key: string) => (unit.get(key) ?? []).flatMap((value) => value.split(/\s+/)).filter(Boolean).map(expand);
  let unitSandbox: string;

  beforeAll(() => {
    // Under /var/tmp, which the unit leaves writable (ReadWritePaths), so it is still there inside.
    unitSandbox = mkdtempSync('/var/tmp/oci-build-unit-');
    for (const dir of ['var-lib', 'run', 'tmp', 'empty']) mkdirSync(join(unitSandbox, dir));
    execFileSync('git', ['clone', '-q', repo.dir, join(unitSandbox, 'src')]);
    // The unit runs the single executable (ExecStart /usr/local/bin/oci-build): a copy here, since
    // the checkout may be under /tmp, which the unit's PrivateTmp hides.
    mkdirSync(join(unitSandbox, 'bin'));
    cpSync(ensureSeaExecutable(), join(unitSandbox, 'bin', 'oci-build'));
    // The Go build cache of the build above, so that this one compiles only the fixture (a cache,
    // not a result: the build phase still runs).
    const goCache = join(sandbox.path, 'with', 'work', 'cache', 'go-build');
    const workDir = envAssignments(unit.get('Environment') ?? []).OCI_BUILD_WORK_DIR!;
    if (existsSync(goCache)) cpSync(goCache, join(unitSandbox, 'var-lib', workDir.slice('/var/lib/'.length), 'cache', 'go-build'), { recursive: true });
  });
  afterAll(() => {
    if (unitSandbox) rmSync(unitSandbox, { recursive: true, force: true });
  });

  it('builds inside its own sandboxing directives', () => {
    expect(unit.get('ProtectSystem')).toEqual(['strict']);
    expect(unit.get('ProtectHome')).toEqual(['yes']);
    expect(unit.get('PrivateTmp')).toEqual(['yes']);
    expect(unit.get('NoNewPrivileges')).toEqual(['yes']);
    const writable = [...list('StateDirectory').map((d) => `/var/lib/${d}`), ...list('RuntimeDirectory').map((d) => `/run/${d}`), ...list('ReadWritePaths').map((p) => p.replace(/^-/, '')), '/tmp'];
    const env = Object.fromEntries(Object.entries(envAssignments(unit.get('Environment') ?? [])).map(([key, value]) => [key, expand(value)]));
    const [file, ...args] = unit.get('ExecStart')![0]!.split(' ');
    expect([file, ...args]).toEqual(['/usr/local/bin/oci-build', 'worker']);
    const result = spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', UNIT_FILESYSTEM, 'sh', unitSandbox, ...writable, '--', 'setpriv', '--no-new-privs', '--', join(unitSandbox, 'bin', 'oci-build'), 'build', join(unitSandbox, 'src'), '--json'],
      { cwd: unitSandbox, env: { PATH: process.env.PATH!, HOME: '/root', CI: 'true', NO_COLOR: '1', ...env }, encoding: 'utf8', timeout: 170_000 },
    );
    const { code, record, stderr } = recorded(result);
    expect(code, stderr).toBe(0);
    expect(record?.status).toBe('succeeded');
    expect(record?.phases.find((p) => p.name === 'build')?.status).toBe('succeeded');
    // It ran where the unit says: its work directory and buildah store (inside the stand-in /var/lib).
    expect(existsSync(join(unitSandbox, 'var-lib', env.OCI_BUILD_WORK_DIR!.slice('/var/lib/'.length), 'logs'))).toBe(true);
    expect(existsSync(join(unitSandbox, 'var-lib', env.OCI_BUILD_IMAGE_ROOT!.slice('/var/lib/'.length)))).toBe(true);
  });
});
