// The ImageBuilder port on buildah: daemonless `buildah bud` into a local store, `buildah push`
// to a registry. Reproducible by construction: the commit time stamps the image and its files
// (see buildah-args.ts), so one commit gives one digest on any machine.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandFailedError, InputError, ToolUnavailableError, describeError } from '../core/errors.js';
import type { BuiltImage, ImageBuilder, ImageSpec, LogSink, LogStream, PhaseContext, PushSpec } from '../core/ports.js';
import { installHint, type CommandRunner } from '../exec/run-command.js';
import { budArgs, imagesArgs, infoArgs, pushArgs, type ResolvedStorage } from './buildah-args.js';
import { REGISTRY_WRITE_RETRIES, REGISTRY_WRITE_RETRY, classifyBuildahFailure, hasRegistryHost, isRegistryWriteCollision, type FailureContext } from './buildah-errors.js';
import { retry } from '../core/retry.js';
import { resolveStorageWith, systemStorageProbe, type StorageProbe } from './buildah-storage.js';
import type { RegistryCheck } from './registry-check.js';

export { RegistryAuthError, ImagePushError } from './buildah-errors.js';

/**
 * `oci-build doctor`'s registry check, loaded when called: it needs node:https (TLS), ~15 ms of
 * loading that a build, which never calls it, should not pay.
 */
export async function checkRegistry(registry: string, tlsVerify: boolean, options: { timeoutMs?: number } = {}): Promise<RegistryCheck> {
  const { checkRegistry: check } = await import('./registry-check.js');
  return check(registry, tlsVerify, options);
}

/** Config['image'] as buildah needs it. */
export interface BuildahOptions {
  root?: string;
  runRoot?: string;
  storageDriver: 'auto' | 'vfs' | 'overlay';
  isolation: 'auto' | 'chroot' | 'oci' | 'rootless';
  authFile?: string;
  /**
   * TLS verification when a build pulls its base image (image.tlsVerify). Default true.
   * An ImageSpec that carries its own `tlsVerify` (a job's --no-tls-verify) wins.
   */
  tlsVerify?: boolean;
}

/** A push the registry failed itself (isRegistryWriteCollision): tried again; `failure` is what it ends with otherwise. */
class RegistryCollision extends Error {
  constructor(readonly failure: unknown) {
    super('the registry failed a write of the push');
  }
}

/** How many output lines a failure message carries. */
const FAILURE_TAIL_LINES = 20;

/**
 * Resolves `auto`: inside a container (/.dockerenv, /run/.containerenv, a `container` environment
 * variable, docker/kubepods/containerd/libpod/lxc in /proc/1/cgroup) → vfs + chroot. Outside one:
 * overlay when running as root with overlay in /proc/filesystems and the storage root not on
 * overlayfs, else vfs; oci isolation (root) or rootless (non-root) when runc or crun is on PATH,
 * else chroot. The full rule and its reasons are in buildah-storage.ts.
 */
export function resolveStorage(options: BuildahOptions, probe: StorageProbe = systemStorageProbe): Promise<{ driver: string; isolation: string }> {
  return resolveStorageWith(options, probe);
}

/** A LogSink that passes every line on and keeps the last few, for the failure message. */
function tailingSink(log: LogSink, size: number): { sink: LogSink; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    sink: {
      write(line: string, stream?: LogStream) {
        lines.push(line);
        if (lines.length > size) lines.shift();
        log.write(line, stream);
      },
    },
  };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** An image as containers/storage's index lists it: its manifest digest and the names it has. */
export interface StoredImage {
  digest?: string;
  /** As the store keeps them: a name without a registry as `localhost/name:tag`. */
  names: string[];
}

/**
 * The image as containers/storage recorded it (`<root>/<driver>-images/images.json`, the very
 * fields `buildah images --digests` prints), read directly: a `buildah images` process cost
 * 50-100 ms after every build. Undefined when the store's root is buildah's own choice (it may come
 * from storage.conf), the file is unreadable, or it does not list the image; the caller then asks
 * buildah.
 */
export async function storedImage(store: ResolvedStorage, imageId: string): Promise<StoredImage | undefined> {
  if (!store.root) return undefined;
  try {
    const images = JSON.parse(await readFile(join(store.root, `${store.driver}-images`, 'images.json'), 'utf8')) as unknown;
    if (!Array.isArray(images)) return undefined;
    const image = (images as Array<{ id?: unknown; digest?: unknown; names?: unknown }>).find((i) => i.id === imageId);
    if (!image) return undefined;
    const names = Array.isArray(image.names) ? image.names.filter((n): n is string => typeof n === 'string') : [];
    return { ...(typeof image.digest === 'string' && DIGEST.test(image.digest) ? { digest: image.digest } : {}), names };
  } catch {
    return undefined;
  }
}

/** The image's manifest digest from the store's index (storedImage), or undefined when it does not say. */
export async function storedDigest(store: ResolvedStorage, imageId: string): Promise<string | undefined> {
  return (await storedImage(store, imageId))?.digest;
}

/**
 * Whether an image the store lists under `names` already has the name `name` (`repo:tag`). A name
 * without a registry host is kept as `localhost/…` (containers/image's short-name rule); one that
 * is not found in either form is not there, so at worst buildah is asked to tag it again.
 */
export function hasStoredName(names: readonly string[], name: string): boolean {
  if (names.includes(name)) return true;
  const first = name.split('/')[0]!;
  const hasHost = name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return !hasHost && names.includes(`localhost/${name}`);
}

async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-build-buildah-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function createBuildahImageBuilder(deps: {
  run: CommandRunner;
  options: BuildahOptions;
  killGraceMs?: number;
  /** For tests of the `auto` rule; the machine's own by default. */
  storageProbe?: StorageProbe;
}): ImageBuilder {
  const { run, options } = deps;
  let storage: Promise<ResolvedStorage> | undefined;
  const resolvedStorage = () =>
    (storage ??= resolveStorage(options, deps.storageProbe).then((resolved) => ({
      ...(options.root ? { root: options.root } : {}),
      ...(options.runRoot ? { runRoot: options.runRoot } : {}),
      ...resolved,
    })));

  /**
   * Only a non-zero exit is buildah's verdict; cancellation and a missing buildah pass through as
   * they are. The cause keeps the exit status but not the command line: build-arg values may be tokens.
   */
  const translate = (err: unknown, context: Omit<FailureContext, 'cause'>, command: string): unknown =>
    err instanceof CommandFailedError
      ? classifyBuildahFailure({ ...context, cause: new CommandFailedError(err.message, command, err.exitStatus) })
      : err;

  async function localDigest(store: ResolvedStorage, imageId: string, ctx: PhaseContext): Promise<string | undefined> {
    const stored = await storedDigest(store, imageId);
    if (stored) return stored;
    const result = await run('buildah', imagesArgs(store, imageId), { signal: ctx.signal, killGraceMs: deps.killGraceMs, displayName: 'buildah images' });
    try {
      const images = JSON.parse(result.stdout) as Array<{ id?: string; digest?: string }>;
      const image = images.find((i) => i.id?.replace(/^sha256:/, '') === imageId) ?? images[0];
      return image?.digest && /^sha256:[0-9a-f]{64}$/.test(image.digest) ? image.digest : undefined;
    } catch {
      ctx.log.write(`warning: could not read the digest of image ${imageId} from \`buildah images\``, 'system');
      return undefined;
    }
  }

  return {
    async build(spec: ImageSpec & { tlsVerify?: boolean }, ctx: PhaseContext): Promise<BuiltImage> {
      const store = await resolvedStorage();
      const names = spec.tags.map((tag) => `${spec.repository}:${tag}`);
      return withTempDir(async (dir) => {
        const iidFile = join(dir, 'iid');
        const args = budArgs({
          storage: store,
          contextDir: spec.contextDir,
          dockerfile: spec.dockerfile,
          repository: spec.repository,
          tags: spec.tags,
          labels: spec.labels,
          buildArgs: spec.buildArgs,
          timestamp: Math.floor(spec.timestamp),
          iidFile,
          tlsVerify: spec.tlsVerify ?? options.tlsVerify ?? true,
          ...(options.authFile ? { authFile: options.authFile } : {}),
        });
        // Build-arg values stay out of the log: they may be tokens.
        ctx.log.write(`buildah bud ${names.join(', ') || spec.repository} from ${spec.dockerfile} (storage ${store.driver}, isolation ${store.isolation})`, 'system');
        const tail = tailingSink(ctx.log, FAILURE_TAIL_LINES);
        try {
          await run('buildah', args, {
            cwd: spec.contextDir,
            signal: ctx.signal,
            log: tail.sink,
            killGraceMs: deps.killGraceMs,
            // A long build's output is streamed, not held.
            capture: false,
            displayName: 'buildah bud',
          });
        } catch (err) {
          throw translate(err, {
            action: 'build',
            reference: names[0] ?? spec.repository,
            lastLines: tail.lines,
            project: spec.project,
            ...(options.authFile ? { authFile: options.authFile } : {}),
          }, 'buildah bud');
        }
        const imageId = (await readFile(iidFile, 'utf8')).trim().replace(/^sha256:/, '');
        const digest = await localDigest(store, imageId, ctx);
        ctx.log.write(`image ${imageId.slice(0, 12)}${digest ? ` ${digest}` : ''}`, 'system');
        return { imageId, ...(digest ? { digest } : {}) };
      });
    },

    async push(spec: PushSpec, ctx: PhaseContext): Promise<{ digest: string }> {
      if (!hasRegistryHost(spec.repository)) {
        throw new InputError(`Cannot push ${spec.repository}: the image name does not start with a registry`, {
          hint: 'Set image.registry (or --registry), e.g. 127.0.0.1:5000/team, so the image is pushed where you mean.',
        });
      }
      if (spec.tags.length === 0) throw new InputError(`Cannot push ${spec.repository}: no tags to push`);
      const store = await resolvedStorage();
      const digests: string[] = [];
      for (const tag of spec.tags) {
        const destination = `${spec.repository}:${tag}`;
        const digest = await withTempDir(async (dir) => {
          const digestFile = join(dir, 'digest');
          const pushOnce = async () => {
            ctx.log.write(`buildah push ${destination}`, 'system');
            const tail = tailingSink(ctx.log, FAILURE_TAIL_LINES);
            try {
              await run(
                'buildah',
                pushArgs({
                  storage: store,
                  imageId: spec.imageId,
                  destination,
                  tlsVerify: spec.tlsVerify,
                  digestFile,
                  ...(options.authFile ? { authFile: options.authFile } : {}),
                }),
                { signal: ctx.signal, log: tail.sink, killGraceMs: deps.killGraceMs, capture: false, displayName: 'buildah push' },
              );
            } catch (err) {
              const failure = translate(err, {
                action: 'push',
                reference: destination,
                lastLines: tail.lines,
                ...(options.authFile ? { authFile: options.authFile } : {}),
              }, 'buildah push');
              throw err instanceof CommandFailedError && isRegistryWriteCollision(tail.lines) ? new RegistryCollision(failure) : failure;
            }
          };
          // A 5xx, or a manifest refused for blobs the registry had not linked yet (other pushes of
          // the same layers, isRegistryWriteCollision): the same push again, which finds them.
          await retry(pushOnce, {
            policy: REGISTRY_WRITE_RETRY,
            retries: REGISTRY_WRITE_RETRIES,
            retryable: (err): err is RegistryCollision => err instanceof RegistryCollision,
            signal: ctx.signal,
            onRetry: (_err, delayMs) =>
              ctx.log.write(`the registry failed the push of ${destination} (its own error, or a manifest refused for blobs it had not linked yet: other pushes of the same layers); pushing again in ${delayMs} ms`, 'system'),
          }).catch((err: unknown) => {
            throw err instanceof RegistryCollision ? err.failure : err;
          });
          return (await readFile(digestFile, 'utf8')).trim();
        });
        if (!/^sha256:[0-9a-f]{64}$/.test(digest)) {
          throw new CommandFailedError(`buildah push of ${destination} wrote no digest (got ${JSON.stringify(digest)})`, 'buildah push', 0);
        }
        digests.push(digest);
      }
      const [digest] = digests as [string, ...string[]];
      if (digests.some((d) => d !== digest)) {
        // Every tag names the same image; a different digest means the registry rewrote a manifest.
        ctx.log.write(`warning: the tags of ${spec.repository} got different digests: ${digests.join(', ')}`, 'system');
      }
      ctx.log.write(`pushed ${spec.repository} ${digest}`, 'system');
      return { digest };
    },
  };
}

export interface BuildahCheck {
  ok: boolean;
  version?: string;
  detail?: string;
  fix?: string;
}

/** For `oci-build doctor`: buildah is installed and opens the configured store. */
export async function checkBuildah(run: CommandRunner, options: BuildahOptions, probe: StorageProbe = systemStorageProbe): Promise<BuildahCheck> {
  let version: string | undefined;
  try {
    const result = await run('buildah', ['--version'], { displayName: 'buildah --version' });
    version = /version\s+(\S+)/.exec(result.stdout)?.[1] ?? result.stdout.trim();
  } catch (err) {
    return {
      ok: false,
      detail: describeError(err),
      fix: err instanceof ToolUnavailableError ? installHint('buildah') : 'Check that `buildah --version` runs for this user.',
    };
  }
  const resolved = await resolveStorage(options, probe);
  const store: ResolvedStorage = {
    ...(options.root ? { root: options.root } : {}),
    ...(options.runRoot ? { runRoot: options.runRoot } : {}),
    ...resolved,
  };
  const where = `${store.root ?? "buildah's default root"} (driver ${store.driver}, isolation ${store.isolation})`;
  try {
    const result = await run('buildah', infoArgs(store), { displayName: 'buildah info' });
    let graph: { GraphDriverName?: string; GraphRoot?: string } = {};
    try {
      graph = (JSON.parse(result.stdout) as { store?: typeof graph }).store ?? {};
    } catch {
      // older buildah prints something else; the command's success is what counts
    }
    if (graph.GraphDriverName && graph.GraphDriverName !== store.driver) {
      return {
        ok: false,
        version,
        detail: `buildah uses driver ${graph.GraphDriverName} at ${graph.GraphRoot ?? where}, not ${store.driver}`,
        fix: `Set image.storageDriver: ${graph.GraphDriverName}, or point image.root at a new directory.`,
      };
    }
    return { ok: true, version, detail: `storage ${graph.GraphRoot ?? store.root ?? 'default'} (driver ${store.driver}, isolation ${store.isolation})` };
  } catch (err) {
    return {
      ok: false,
      version,
      detail: `buildah cannot open its storage at ${where}: ${describeError(err)}`,
      fix:
        'If the store was created with another driver, set image.storageDriver to it or point image.root at a new directory; ' +
        'inside a container use image.storageDriver: vfs and image.isolation: chroot.',
    };
  }
}
