// A reused image's tags in the registry: a copy the registry answers with a 5xx (several workers
// writing one manifest under other tags at once) is tried again, tag after tag, and the build gets
// its tags; a registry that keeps failing still fails the phase, naming the command.

import { writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CommandFailedError } from '../../src/core/errors.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { CommandRunner } from '../../src/exec/run-command.js';
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
