// A reused image (core/result-reuse.ts) gets its new tags without being built again: in the
// registry, `skopeo copy --preserve-digests` of repo@digest to repo:tag, which finds every blob
// already there and uploads none (only the manifest is PUT under the new tag); in the local store,
// `buildah tag` (none when the store's index shows the image has those tags already). Both check
// the digest: an image that is gone is a miss, never a wrong image.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandFailedError } from '../core/errors.js';
import { retry } from '../core/retry.js';
import type { PhaseContext, ResultEntry, ReuseSource, ReuseTarget } from '../core/ports.js';
import type { CommandRunner } from '../exec/run-command.js';
import { globalArgs, imagesArgs, type ResolvedStorage } from './buildah-args.js';
import { REGISTRY_WRITE_RETRIES, REGISTRY_WRITE_RETRY, hasRegistryHost } from './buildah-errors.js';
import { RegistryApi } from './registry-api.js';
import { hasStoredName, resolveStorage, storedDigest, storedImage, type BuildahOptions } from './buildah.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/**
 * A registry's 5xx to a manifest PUT. A registry answering one manifest write with a 5xx while
 * others write the same manifest under other tags (docker-registry's filesystem driver does, seen
 * with several workers reusing one image at once) must not fail a build that has nothing left to
 * build: each tag's PUT or copy is tried again a few times (REGISTRY_WRITE_RETRY), one tag after
 * the other.
 */
class BusyRegistry extends Error {}

/** A manifest PUT, again after a 5xx; undefined: unsure (or still busy), skopeo writes the tag. */
async function putWithRetries(put: () => Promise<string | 'retry' | undefined>, ctx: PhaseContext): Promise<string | undefined> {
  const written = () =>
    put().then((result) => {
      if (result === 'retry') throw new BusyRegistry();
      return result;
    });
  return retry(written, { policy: REGISTRY_WRITE_RETRY, retries: REGISTRY_WRITE_RETRIES, retryable: (err): err is BusyRegistry => err instanceof BusyRegistry, signal: ctx.signal }).catch((err: unknown) => {
    if (err instanceof BusyRegistry) return undefined;
    throw err;
  });
}

export interface ImageReuse {
  locate(entry: ResultEntry, target: ReuseTarget, ctx: PhaseContext): Promise<ReuseSource | undefined>;
  retag(source: ReuseSource, target: ReuseTarget, ctx: PhaseContext): Promise<{ digest?: string; imageId?: string; pushed: boolean }>;
}

export function createImageReuse(deps: { run: CommandRunner; options: BuildahOptions; killGraceMs?: number }): ImageReuse {
  const { run, options } = deps;
  let storage: Promise<ResolvedStorage> | undefined;
  const store = () =>
    (storage ??= resolveStorage(options).then((resolved) => ({
      ...(options.root ? { root: options.root } : {}),
      ...(options.runRoot ? { runRoot: options.runRoot } : {}),
      ...resolved,
    })));
  const auth = options.authFile ? ['--authfile', options.authFile] : [];

  /** The manifest digest the registry serves for `reference`, or undefined when it has none. */
  async function registryDigest(reference: string, tlsVerify: boolean, ctx: PhaseContext): Promise<string | undefined> {
    try {
      const result = await run('skopeo', ['inspect', '--raw', `--tls-verify=${tlsVerify}`, ...auth, `docker://${reference}`], {
        signal: ctx.signal,
        displayName: 'skopeo inspect',
        killGraceMs: deps.killGraceMs,
      });
      // --raw: the manifest's bytes as served; a by-digest pull that answers proves the digest.
      return result.stdout.trim().length > 0 ? reference.slice(reference.lastIndexOf('@') + 1) : undefined;
    } catch (err) {
      if (err instanceof CommandFailedError) return undefined;
      throw err;
    }
  }

  /** The image's manifest digest in the local store, or undefined when the store does not hold it. */
  async function localImage(imageId: string, ctx: PhaseContext): Promise<{ digest?: string } | undefined> {
    // The store's own index, read directly when its root is known: a `buildah images` process costs 50-100 ms.
    const stored = await storedDigest(await store(), imageId);
    if (stored) return { digest: stored };
    try {
      const result = await run('buildah', imagesArgs(await store(), imageId), { signal: ctx.signal, displayName: 'buildah images', killGraceMs: deps.killGraceMs });
      const images = JSON.parse(result.stdout) as Array<{ id?: string; digest?: string }>;
      const image = images.find((i) => i.id?.replace(/^sha256:/, '') === imageId);
      if (!image) return undefined;
      return image.digest && DIGEST.test(image.digest) ? { digest: image.digest } : {};
    } catch (err) {
      if (err instanceof CommandFailedError || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  const api = (repository: string, tlsVerify: boolean, ctx: PhaseContext) => RegistryApi.for(repository, { tlsVerify, signal: ctx.signal, ...(options.authFile ? { authFile: options.authFile } : {}) });

  return {
    async locate(entry, target, ctx) {
      if (target.push && entry.pushed && entry.repository === target.repository && hasRegistryHost(target.repository) && DIGEST.test(entry.digest)) {
        // The distribution API first (registry-api.ts); skopeo when it is not sure.
        const served = await api(entry.repository, target.tlsVerify, ctx)?.hasManifest(entry.digest);
        if (served) return { kind: 'registry', digest: entry.digest };
        const digest = served === false ? undefined : await registryDigest(`${entry.repository}@${entry.digest}`, target.tlsVerify, ctx);
        if (digest === entry.digest) return { kind: 'registry', digest };
      }
      if (entry.imageId) {
        const local = await localImage(entry.imageId, ctx);
        if (local) return { kind: 'local', imageId: entry.imageId, ...(local.digest ? { digest: local.digest } : {}) };
      }
      return undefined;
    },

    async retag(source, target, ctx) {
      if (source.kind === 'local') {
        const names = target.tags.map((tag) => `${target.repository}:${tag}`);
        const result = { imageId: source.imageId, ...(source.digest ? { digest: source.digest } : {}), pushed: false };
        // The same tags again (the same commit built again): the store's index says so, and no
        // buildah process is started for nothing. Anything not plainly there is tagged by buildah.
        const stored = await storedImage(await store(), source.imageId);
        if (stored && (!source.digest || stored.digest === source.digest) && names.every((name) => hasStoredName(stored.names, name))) {
          ctx.log.write(`image ${source.imageId.slice(0, 12)} already tagged ${names.join(' ')} (reused, not built)`, 'system');
          return result;
        }
        ctx.log.write(`buildah tag ${source.imageId.slice(0, 12)} ${names.join(' ')} (reused, not built)`, 'system');
        // `buildah tag` fails when the store no longer holds the ID: the image tagged is the one located.
        await run('buildah', [...globalArgs(await store()), 'tag', source.imageId, ...names], { signal: ctx.signal, displayName: 'buildah tag', killGraceMs: deps.killGraceMs, log: ctx.log });
        return result;
      }
      const registry = api(target.repository, target.tlsVerify, ctx);
      const manifest = await registry?.manifest(source.digest);
      let tags = target.tags;
      if (registry && manifest) {
        tags = [];
        for (const tag of target.tags) {
          ctx.log.write(`PUT ${target.repository}:${tag} = ${source.digest} (reused, no layer uploaded)`, 'system');
          const digest = await putWithRetries(() => registry.putManifest(tag, manifest), ctx);
          if (digest === undefined) tags.push(tag);
          else if (digest !== source.digest) {
            throw new CommandFailedError(`The registry gave ${target.repository}:${tag} the digest ${digest}, not the reused image's ${source.digest}`, `PUT ${target.repository}:${tag}`, 0);
          }
        }
        if (tags.length === 0) return { digest: source.digest, pushed: true };
      }
      const from = `docker://${target.repository}@${source.digest}`;
      const dir = await mkdtemp(join(tmpdir(), 'oci-build-retag-'));
      try {
        // One copy per tag the API did not write, one after the other: each only writes a manifest.
        for (const tag of tags) {
          const digestFile = join(dir, `${tag}.digest`);
          ctx.log.write(`skopeo copy --preserve-digests ${target.repository}@${source.digest} → :${tag} (reused, no layer uploaded)`, 'system');
          await retry(
            () =>
              run(
                'skopeo',
                ['copy', '--preserve-digests', `--src-tls-verify=${target.tlsVerify}`, `--dest-tls-verify=${target.tlsVerify}`, ...auth, '--digestfile', digestFile, from, `docker://${target.repository}:${tag}`],
                { signal: ctx.signal, displayName: 'skopeo copy', killGraceMs: deps.killGraceMs, log: ctx.log },
              ),
            {
              policy: REGISTRY_WRITE_RETRY,
              retries: REGISTRY_WRITE_RETRIES,
              retryable: (err): err is CommandFailedError => err instanceof CommandFailedError,
              signal: ctx.signal,
              onRetry: (_err, delayMs) => ctx.log.write(`skopeo copy to :${tag} failed; trying again in ${delayMs} ms`, 'system'),
            },
          );
          const digest = (await readFile(digestFile, 'utf8')).trim();
          if (digest !== source.digest) {
            throw new CommandFailedError(`The registry gave ${target.repository}:${tag} the digest ${digest}, not the reused image's ${source.digest}`, 'skopeo copy', 0);
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      return { digest: source.digest, pushed: true };
    },
  };
}
