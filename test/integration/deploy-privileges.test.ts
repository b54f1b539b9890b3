// The capabilities deploy/ gives a worker container are enough, and the one it adds is needed: a
// build (bubblewrap sandbox for `go build`, buildah with vfs + chroot for the image) run as root
// with only the container engine's default capabilities plus compose's cap_add succeeds, and fails
// without the addition; the same holds with no-new-privileges set, as the systemd worker unit has it.
// Seccomp and AppArmor profiles cannot be applied here (no container engine).

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { kubernetesObjects, readDeployFile, unitKeys } from '../helpers/deploy-files.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';

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

/**
 * `oci-build build` as root with only `caps` in its bounding set (setpriv), a fresh work directory
 * each time; `noNewPrivs` as systemd's NoNewPrivileges=yes sets it.
 */
function buildWith(caps: string[], name: string, options: { noNewPrivs?: boolean } = {}): { code: number | null; record?: BuildRecord; stderr: string } {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const flags = [`--bounding-set=${bounding}`, ...(options.noNewPrivs ? ['--no-new-privs'] : [])];
  const result = spawnSync('setpriv', [...flags, '--', process.execPath, CLI, 'build', repo.dir, '--json'], {
    cwd: sandbox.path,
    env: { ...process.env, CI: 'true', NO_COLOR: '1', ...isolatedEnv(join(sandbox.path, name)) },
    encoding: 'utf8',
    timeout: 170_000,
  });
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

  it("a build succeeds with the engine's default capabilities plus cap_add, also under the worker unit's NoNewPrivileges", () => {
    expect(unitKeys('systemd/oci-build-worker@.service').get('NoNewPrivileges')).toEqual(['yes']);
    const { code, record, stderr } = buildWith([...ENGINE_DEFAULT_CAPS, ...added], 'with', { noNewPrivs: true });
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
