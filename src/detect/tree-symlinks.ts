// The symbolic links of a tree about to be built. A committed `dist -> /some/dir` makes a build
// (a Go binary written to dist/, an npm script, buildah reading the context) act on whatever the
// link names, so every link must lead somewhere inside the tree, checked before any command runs.

import { readdir, readlink, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UnsafeSymlinkError } from '../core/errors.js';

export interface EscapingSymlink {
  /** The link, relative to the tree (with `/`). */
  link: string;
  /** What the link says (readlink). */
  target: string;
  /** Where it leads: the real path when the target exists, else the target resolved lexically. */
  resolved: string;
}

/** How many links the error message names; `details` carries them all. */
const NAMED_IN_MESSAGE = 10;

/**
 * Every symbolic link under `tree` whose target lies outside it. `.git` is not walked (Git's own
 * data, never built); `node_modules` is, since a hostile repository may commit one. Links are
 * never followed during the walk: a link to a directory is checked, not entered.
 */
export async function findEscapingSymlinks(tree: string): Promise<EscapingSymlink[]> {
  const root = await realpath(resolve(tree));
  const found: EscapingSymlink[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== '.git') await walk(path);
        continue;
      }
      if (!entry.isSymbolicLink()) continue;
      const target = await readlink(path);
      // A target that exists is judged by where the kernel would lead (links in its way
      // followed); a dangling one by its text, which is what a later write would create.
      const resolved = await realpath(path).catch(() => resolve(dirname(path), target));
      if (!inside(root, resolved)) found.push({ link: relative(root, path).split(sep).join('/'), target, resolved });
    }
  };
  await walk(root);
  return found.sort((a, b) => a.link.localeCompare(b.link));
}

/** Fails with E_UNSAFE_SYMLINK when a link of `tree` leads outside it. */
export async function assertNoEscapingSymlinks(tree: string): Promise<void> {
  const escaping = await findEscapingSymlinks(tree);
  if (escaping.length === 0) return;
  const named = escaping.slice(0, NAMED_IN_MESSAGE).map((e) => `${e.link} -> ${e.target}${e.resolved !== e.target ? ` (${e.resolved})` : ''}`);
  const more = escaping.length > NAMED_IN_MESSAGE ? `, and ${escaping.length - NAMED_IN_MESSAGE} more` : '';
  throw new UnsafeSymlinkError(
    `${escaping.length === 1 ? 'A symbolic link leads' : `${escaping.length} symbolic links lead`} outside the repository (${tree}), so nothing was built: ${named.join(', ')}${more}`,
    {
      hint: 'Remove the link from the repository, or make it relative to a path inside the repository (a build may only write inside its own tree).',
      details: { links: escaping },
    },
  );
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}
