// Which storage driver and isolation buildah gets when the config says `auto`.
//
// The rule (DESIGN.md, "Configuration": image.storageDriver / image.isolation):
//   - inside a container (/.dockerenv, /run/.containerenv, a `container` environment variable, or
//     docker/kubepods/containerd/libpod/lxc in /proc/1/cgroup) → vfs + chroot. Overlay mounts and
//     the namespaces an OCI runtime needs are usually refused there, while vfs and chroot need
//     nothing from the kernel beyond what the container already has;
//   - otherwise the driver is overlay only when it can work: running as root, `overlay` listed in
//     /proc/filesystems, and the storage root not itself on overlayfs (overlay on overlay fails);
//     else vfs;
//   - otherwise the isolation is oci (root) or rootless (non-root) when an OCI runtime (runc or
//     crun) is on PATH; else chroot.
// Explicit values are passed through untouched: the user knows their machine.

import { access, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

export interface StorageSettings {
  root?: string;
  storageDriver: 'auto' | 'vfs' | 'overlay';
  isolation: 'auto' | 'chroot' | 'oci' | 'rootless';
}

/** What the rule looks at; tests hand in a fixed one. */
export interface StorageProbe {
  inContainer(): Promise<boolean>;
  isRoot(): boolean;
  overlaySupported(): Promise<boolean>;
  /** Filesystem type holding `path` (e.g. `ext4`, `overlay`), when it can be told. */
  filesystemOf(path: string): Promise<string | undefined>;
  ociRuntimeAvailable(): Promise<boolean>;
}

/** buildah's own default graph root for root. */
const DEFAULT_ROOT = '/var/lib/containers/storage';

export async function resolveStorageWith(
  options: StorageSettings,
  probe: StorageProbe,
): Promise<{ driver: string; isolation: string }> {
  const needsProbe = options.storageDriver === 'auto' || options.isolation === 'auto';
  const contained = needsProbe ? await probe.inContainer() : false;

  let driver: string = options.storageDriver;
  if (driver === 'auto') {
    if (contained || !probe.isRoot() || !(await probe.overlaySupported())) driver = 'vfs';
    else driver = (await probe.filesystemOf(options.root ?? DEFAULT_ROOT)) === 'overlay' ? 'vfs' : 'overlay';
  }

  let isolation: string = options.isolation;
  if (isolation === 'auto') {
    if (contained || !(await probe.ociRuntimeAvailable())) isolation = 'chroot';
    else isolation = probe.isRoot() ? 'oci' : 'rootless';
  }
  return { driver, isolation };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

/** The probe of this machine. */
export const systemStorageProbe: StorageProbe = {
  async inContainer() {
    if (process.env.container) return true;
    if ((await exists('/.dockerenv')) || (await exists('/run/.containerenv'))) return true;
    return /docker|kubepods|containerd|libpod|lxc/.test(await readText('/proc/1/cgroup'));
  },
  isRoot() {
    return typeof process.getuid === 'function' && process.getuid() === 0;
  },
  async overlaySupported() {
    return /\boverlay$/m.test(await readText('/proc/filesystems'));
  },
  async filesystemOf(path) {
    // The longest mount point that is a prefix of the path (the path may not exist yet).
    const target = resolve(path);
    let best: { mountPoint: string; type: string } | undefined;
    for (const line of (await readText('/proc/self/mountinfo')).split('\n')) {
      const [before, after] = line.split(' - ');
      const mountPoint = before?.split(' ')[4]?.replace(/\\040/g, ' ');
      const type = after?.split(' ')[0];
      if (!mountPoint || !type) continue;
      const covers = target === mountPoint || target.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
      if (covers && (!best || mountPoint.length >= best.mountPoint.length)) best = { mountPoint, type };
    }
    return best?.type;
  },
  async ociRuntimeAvailable() {
    for (const dir of (process.env.PATH ?? '').split(delimiter)) {
      if (!dir) continue;
      for (const runtime of ['crun', 'runc']) {
        try {
          await access(join(dir, runtime), constants.X_OK);
          return true;
        } catch {
          // not here
        }
      }
    }
    return false;
  },
};
