// The Git object id of a path in a commit (`git rev-parse <commit>:<path>`): a tree for a
// directory, a blob for a file. Result keys (core/result-key.ts) are made of these: one id names
// everything under a path, without reading a file of the worktree.

import { posix } from 'node:path';
import git from './isomorphic-git.js';
import { treePath } from './tree-object.js';
import type { RepoHandle } from './tree-diff.js';

/** The object id of `path` (relative to the repository root, '' or '.' for the root) in `commit`; undefined when absent. */
export async function objectIdAt(repo: RepoHandle, commit: string, path: string): Promise<string | undefined> {
  const location = { fs: repo.fs, ...(repo.dir ? { dir: repo.dir } : {}), ...(repo.gitdir ? { gitdir: repo.gitdir } : {}), cache: repo.cache };
  const normal = treePath(path);
  if (normal === undefined) return undefined;
  if (normal === '') return (await git.readTree({ ...location, oid: commit })).oid;
  const parent = posix.dirname(normal);
  try {
    const { tree } = await git.readTree({ ...location, oid: commit, ...(parent === '.' ? {} : { filepath: parent }) });
    return tree.find((entry) => entry.path === posix.basename(normal))?.oid;
  } catch {
    return undefined;
  }
}
