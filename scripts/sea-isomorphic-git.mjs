// A change the single executable (scripts/sea.mjs) makes to isomorphic-git as it bundles it.
//
// isomorphic-git hashes with WebCrypto wherever the platform has it (its browser path), and Node
// has it: the first digest loads Node's webcrypto (~1.5 ms), its support test runs one more, and
// every digest after is a promise through the thread pool. It hashes the index's checksum and
// every loose object it reads (a local build reads HEAD's commit): ~2.5 ms of a local build
// before its first tool ran (bench/local-overhead). Its fallback is node:crypto's SHA-1 — the same
// digest, synchronous — so the bundled copy is told WebCrypto is unsupported and uses that.
// The module is otherwise untouched; where the line is no longer there (another isomorphic-git
// version) the build says so and bundles it as it is (test/unit/sea-isomorphic-git.test.ts).

export const WEBCRYPTO_PROBE = 'let supportsSubtleSHA1 = null;';
const NODE_SHA1 = 'let supportsSubtleSHA1 = false;';

/** isomorphic-git's CommonJS entry with WebCrypto's SHA-1 turned off, or undefined when it has no such switch. */
export function withNodeSha1(code) {
  return code.includes(WEBCRYPTO_PROBE) ? code.replace(WEBCRYPTO_PROBE, NODE_SHA1) : undefined;
}

/** The rolldown plugin. */
export const isomorphicGitNodeSha1 = {
  name: 'isomorphic-git-node-sha1',
  transform(code, id) {
    if (!/[\\/]isomorphic-git[\\/]index\.c?js$/.test(id)) return null;
    const patched = withNodeSha1(code);
    if (patched === undefined) {
      console.error(`scripts/sea-isomorphic-git.mjs: ${id} has no "${WEBCRYPTO_PROBE}": isomorphic-git hashes through WebCrypto in the executable (see that file)`);
      return null;
    }
    return patched;
  },
};
