// A reused image's tags in the registry: a copy the registry answers with a 5xx (several workers
// writing one manifest under other tags at once) is tried again, tag after tag, and the build gets
// its tags; a registry that keeps failing still fails the phase, naming the command. In the local
// store, an image that has every tag already is not tagged again; anything else is.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CommandFailedError } from '../../src/core/errors.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { CommandRunner } from '../../src/exec/run-command.js';
import { hasStoredName } from '../../src/image/buildah.js';
import { createImageReuse } from '../../src/image/registry-tag.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const ctx: PhaseContext = { signal: new AbortController().signal, log: { write: () => undefined } };

/** skopeo as a fake: fails the first `failures` copies with a 500, then writes the digest file. */
function skopeo(failures: number): { run: CommandRunner; copies: string[] } {
  const copies: string[] = [];
  let left = failures;
  const run: CommandRunner = async (file, args) => {
    expect(file).toBe('skopeo');
    const dest = args[args.length - 1]!;
    copies.push(dest);
    if (left-- > 0) throw new CommandFailedError('skopeo copy exited with code 1: received unexpected HTTP status: 500 Internal Server Error', 'skopeo copy', 1);
    await writeFile(args[args.indexOf('--digestfile') + 1]!, DIGEST);
    return { exitCode: 0, stdout: '', stderr: '', durationMs: 1 };
  };
  return { run, copies };
}

describe('registry retag of a reused image', () => {
  it('retries a copy the registry failed, one tag after the other, and keeps the digest', async () => {
    const fake = skopeo(2);
    const reuse = createImageReuse({ run: fake.run, options: { storageDriver: 'vfs', isolation: 'chroot' } });
    const result = await reuse.retag({ kind: 'registry', digest: DIGEST }, { repository: 'reg.test/ci/app', tags: ['main', 'sha-1234567'], push: true, tlsVerify: false }, ctx);
    expect(result).toEqual({ digest: DIGEST, pushed: true });
    expect(fake.copies).toEqual(['docker://reg.test/ci/app:main', 'docker://reg.test/ci/app:main', 'docker://reg.test/ci/app:main', 'docker://reg.test/ci/app:sha-1234567']);
  });

  it('a registry that keeps failing fails the phase with the command error', async () => {
    const fake = skopeo(100);
    const reuse = createImageReuse({ run: fake.run, options: { storageDriver: 'vfs', isolation: 'chroot' } });
    await expect(reuse.retag({ kind: 'registry', digest: DIGEST }, { repository: 'reg.test/ci/app', tags: ['main'], push: true, tlsVerify: false }, ctx)).rejects.toBeInstanceOf(CommandFailedError);
    expect(fake.copies).toHaveLength(5);
  });
});

describe('local retag of a reused image', () => {
  const IMAGE_ID = 'b'.repeat(64);

  /** A store whose images.json lists the image under `names` with `digest`; buildah as a fake that records its calls. */
  async function local(names: string[], digest = DIGEST) {
    const root = await mkdtemp(join(tmpdir(), 'oci-build-retag-test-'));
    await mkdir(join(root, 'vfs-images'));
    await writeFile(join(root, 'vfs-images', 'images.json'), JSON.stringify([{ id: 'c'.repeat(64), names: ['localhost/other:main'] }, { id: IMAGE_ID, digest, names }]));
    const calls: string[][] = [];
    const run: CommandRunner = async (file, args) => {
      expect(file).toBe('buildah');
      calls.push([...args]);
      return { exitCode: 0, stdout: '', stderr: '', durationMs: 1 };
    };
    const reuse = createImageReuse({ run, options: { root, storageDriver: 'vfs', isolation: 'chroot' } });
    return { reuse, calls, cleanup: () => rm(root, { recursive: true, force: true }) };
  }
  const target = (tags: string[]) => ({ repository: 'app', tags, push: false, tlsVerify: true });

  it('starts no buildah when the store shows the image has every tag (the same commit built again)', async () => {
    const store = await local(['localhost/app:sha-1234567', 'localhost/app:main']);
    try {
      const result = await store.reuse.retag({ kind: 'local', imageId: IMAGE_ID, digest: DIGEST }, target(['sha-1234567', 'main']), ctx);
      expect(result).toEqual({ imageId: IMAGE_ID, digest: DIGEST, pushed: false });
      expect(store.calls).toEqual([]);
    } finally {
      await store.cleanup();
    }
  });

  it('tags with buildah when one tag is new, when the index names another digest, and when the image is not listed', async () => {
    for (const [names, digest, tags] of [
      [['localhost/app:sha-1234567', 'localhost/app:main'], DIGEST, ['sha-1234567', 'feature']],
      [['localhost/app:main'], `sha256:${'d'.repeat(64)}`, ['main']],
      [['localhost/other:main'], DIGEST, ['main']],
    ] as Array<[string[], string, string[]]>) {
      const store = await local(names, digest);
      try {
        await store.reuse.retag({ kind: 'local', imageId: IMAGE_ID, digest: DIGEST }, target(tags), ctx);
        expect(store.calls).toHaveLength(1);
        expect(store.calls[0]!.slice(-2 - tags.length)).toEqual(['tag', IMAGE_ID, ...tags.map((tag) => `app:${tag}`)]);
      } finally {
        await store.cleanup();
      }
    }
  });

  it('a name matches as the store keeps it: exact, or under localhost/ when it names no registry', () => {
    expect(hasStoredName(['localhost/app:main'], 'app:main')).toBe(true);
    expect(hasStoredName(['localhost/team/app:main'], 'team/app:main')).toBe(true);
    expect(hasStoredName(['127.0.0.1:5000/team/app:main'], '127.0.0.1:5000/team/app:main')).toBe(true);
    expect(hasStoredName(['localhost/127.0.0.1:5000/team/app:main'], '127.0.0.1:5000/team/app:main')).toBe(false);
    expect(hasStoredName(['localhost/reg.example/app:main'], 'reg.example/app:main')).toBe(false);
    expect(hasStoredName(['localhost/app:main'], 'app:main2')).toBe(false);
    expect(hasStoredName(['localhost/app:main'], 'localhost/app:main')).toBe(true);
  });
});
