// The argument arrays of the buildah commands oci-build runs. Pure: no I/O, so the unit tests can
// pin every flag. Nothing here is ever joined into a shell string.

import type { ImageSpec } from '../core/ports.js';

/** Storage as buildah sees it, after `auto` has been resolved (see buildah-storage.ts). */
export interface ResolvedStorage {
  root?: string;
  runRoot?: string;
  driver: string;
  isolation: string;
}

/**
 * Global options: they go before the subcommand. The driver is always explicit, so a store that
 * was initialised with another driver is never picked up by accident.
 */
export function globalArgs(storage: ResolvedStorage): string[] {
  const args: string[] = [];
  if (storage.root) args.push('--root', storage.root);
  if (storage.runRoot) args.push('--runroot', storage.runRoot);
  args.push('--storage-driver', storage.driver);
  return args;
}

export interface BudArgsInput extends Pick<ImageSpec, 'contextDir' | 'dockerfile' | 'repository' | 'tags' | 'labels' | 'buildArgs' | 'timestamp'> {
  storage: ResolvedStorage;
  /** Where buildah writes the new image's ID. */
  iidFile: string;
  /** For pulling base images from the registry. */
  tlsVerify: boolean;
  authFile?: string;
}

/** Sorted so the same input always gives the same history, hence the same digest. */
function sortedEntries(record: Record<string, string>): Array<[string, string]> {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function budArgs(input: BudArgsInput): string[] {
  const args = [
    ...globalArgs(input.storage),
    'bud',
    '--isolation', input.storage.isolation,
    // Explicit, so BUILDAH_FORMAT/BUILDAH_LAYERS in the environment cannot change the result.
    '--format', 'oci',
    // One layer on top of the base, committed once: no cache of intermediate layers whose reuse
    // could make two builds of one commit differ.
    '--layers=false',
    // `created`, the history and every file's mtime in the new layer become the commit time:
    // one commit gives one digest on any machine.
    '--timestamp', String(input.timestamp),
    // The `io.buildah.version` label would change the digest with every buildah upgrade.
    '--identity-label=false',
    // Buildah's own default ("newer"), spelled out: a moving base tag is picked up, and when the
    // registry cannot be asked, an image already in the store is used. FROM scratch pulls nothing.
    '--pull=newer',
    `--tls-verify=${input.tlsVerify}`,
  ];
  if (input.authFile) args.push('--authfile', input.authFile);
  args.push('--iidfile', input.iidFile, '-f', input.dockerfile);
  for (const tag of input.tags) args.push('-t', `${input.repository}:${tag}`);
  for (const [key, value] of sortedEntries(input.labels)) args.push('--label', `${key}=${value}`);
  for (const [key, value] of sortedEntries(input.buildArgs)) args.push('--build-arg', `${key}=${value}`);
  args.push(input.contextDir);
  return args;
}

/** `buildah images --json` for one image: its manifest digest in the local store. */
export function imagesArgs(storage: ResolvedStorage, imageId: string): string[] {
  return [...globalArgs(storage), 'images', '--json', '--digests', '--no-trunc', imageId];
}

export interface PushArgsInput {
  storage: ResolvedStorage;
  imageId: string;
  /** `registry/name:tag`. */
  destination: string;
  tlsVerify: boolean;
  authFile?: string;
  digestFile: string;
}

export function pushArgs(input: PushArgsInput): string[] {
  const args = [...globalArgs(input.storage), 'push', `--tls-verify=${input.tlsVerify}`];
  if (input.authFile) args.push('--authfile', input.authFile);
  args.push('--digestfile', input.digestFile, input.imageId, `docker://${input.destination}`);
  return args;
}

/** `buildah info`: proves buildah can open the configured store. */
export function infoArgs(storage: ResolvedStorage): string[] {
  return [...globalArgs(storage), 'info'];
}
