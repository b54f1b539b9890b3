// The single executable's isomorphic-git hashes with node:crypto, not WebCrypto
// (scripts/sea-isomorphic-git.mjs): the same digests, without loading Node's webcrypto.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { runInThisContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a build script, plain JavaScript without declarations
import { WEBCRYPTO_PROBE, withNodeSha1 } from '../../scripts/sea-isomorphic-git.mjs';

const require = createRequire(import.meta.url);
const entry = require.resolve('isomorphic-git');

/** isomorphic-git's CommonJS entry, transformed, loaded as a module of its own with globalThis.crypto hidden from it. */
function loadPatched(subtleUsed: { count: number }) {
  const code = withNodeSha1(readFileSync(entry, 'utf8')) as string;
  const module = { exports: {} as Record<string, unknown> };
  const factory = runInThisContext(`(function (exports, require, module, __filename, __dirname, crypto) {${code}\n})`, { filename: entry }) as (...args: unknown[]) => void;
  const watchedCrypto = new Proxy(globalThis.crypto, {
    get(target, key) {
      if (key === 'subtle') subtleUsed.count++;
      return Reflect.get(target, key);
    },
  });
  factory(module.exports, createRequire(entry), module, entry, dirname(entry), watchedCrypto);
  return module.exports as unknown as typeof import('isomorphic-git');
}

describe("the executable's isomorphic-git", () => {
  it('is the version the patch was written for: its WebCrypto switch is where the patch expects it', () => {
    expect(readFileSync(entry, 'utf8')).toContain(WEBCRYPTO_PROBE);
    expect(withNodeSha1('no such switch')).toBeUndefined();
  });

  it('hashes objects to the same ids as the original, and never asks WebCrypto', async () => {
    const subtle = { count: 0 };
    const patched = loadPatched(subtle);
    const original = require('isomorphic-git') as typeof import('isomorphic-git');
    for (const text of ['', 'hello\n', 'x'.repeat(100_000)]) {
      const object = new TextEncoder().encode(text);
      const [ours, theirs] = await Promise.all([patched.hashBlob({ object }), original.hashBlob({ object })]);
      expect(ours.oid).toBe(theirs.oid);
    }
    expect((await patched.hashBlob({ object: new TextEncoder().encode('hello\n') })).oid).toBe('ce013625030ba8dba906f756967f9e9ca394464a');
    expect(subtle.count).toBe(0);
  });
});
