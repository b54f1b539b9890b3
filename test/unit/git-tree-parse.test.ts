// git/tree-object.ts parseTree: a tree object read from a pack is the entries isomorphic-git's
// readTree gives for it — same names, ids, modes (normalised as isomorphic-git does) and types.
// A tree is written by isomorphic-git and read back raw from its loose object.

import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import git from '../../src/git/isomorphic-git.js';
import { parseTree } from '../../src/git/tree-object.js';
import { unsafeEntryName } from '../../src/git/worktree.js';

let gitdir: string;
beforeAll(async () => {
  gitdir = await mkdtemp(join(tmpdir(), 'oci-build-tree-'));
  await git.init({ fs, gitdir, bare: true });
});
afterAll(async () => {
  await rm(gitdir, { recursive: true, force: true });
});

const name = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._-][A-Za-z0-9._ é-]{0,11}$/),
  fc.constantFrom('.git', '.GIT.', '.git ', 'git~1', '.git::$INDEX_ALLOCATION', '.g\u200Cit', '...', '. .', 'a:b', 'x\u200D'),
);
const oid = fc.stringMatching(/^[0-9a-f]{40}$/);
const mode = fc.constantFrom('100644', '100755', '120000', '040000', '160000', '100664');

describe('parseTree', () => {
  it('gives what isomorphic-git reads for the same tree object', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.record({ path: name, oid, mode }), { selector: (e) => e.path, minLength: 1, maxLength: 8 }), async (entries) => {
        const tree = entries.map((e) => ({ ...e, type: e.mode === '040000' ? ('tree' as const) : e.mode === '160000' ? ('commit' as const) : ('blob' as const) }));
        const treeOid = await git.writeTree({ fs, gitdir, tree }).catch((err: { code?: string }) => {
          // A name isomorphic-git refuses is one the checkout refuses too.
          expect(err.code).toBe('UnsafeFilepathError');
          expect(entries.some((e) => unsafeEntryName(e.path))).toBe(true);
          return undefined;
        });
        if (treeOid === undefined) return;
        // The object's content as git stores it: inflate the loose object, drop the "tree <size>\0" header.
        const stored = inflateSync(fs.readFileSync(join(gitdir, 'objects', treeOid.slice(0, 2), treeOid.slice(2))));
        const content = stored.subarray(stored.indexOf(0) + 1);
        const expected = (await git.readTree({ fs, gitdir, oid: treeOid })).tree;
        // In any order: the object keeps git's (a tree sorts as "name/"), isomorphic-git sorts by name.
        const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
        expect(parseTree(content).sort(byPath)).toEqual(expected.map(({ path, oid: id, mode: m, type }) => ({ path, oid: id, mode: m, type })).sort(byPath));
      }),
      { numRuns: 50 },
    );
  });

  it('refuses a truncated tree, and a mode git does not have', () => {
    expect(() => parseTree(Buffer.from('100644 file\0abc'))).toThrow(/malformed/);
    expect(() => parseTree(Buffer.concat([Buffer.from('777777 file\0'), Buffer.alloc(20)]))).toThrow(/unknown mode/);
  });

  it('the checkout refuses every name git refuses on some file system', () => {
    for (const bad of ['', '.', '..', '...', '. .', '.git', '.GIT', '.git.', '.git ', 'GIT~1', '.git::$INDEX_ALLOCATION', '.g\u200Cit', 'a/b', 'a\\b']) expect(unsafeEntryName(bad)).toBe(true);
    for (const good of ['.gitignore', '.github', 'git', 'a.b', 'x y', '.env']) expect(unsafeEntryName(good)).toBe(false);
  });
});
