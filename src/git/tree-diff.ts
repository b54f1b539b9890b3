// Files changed between two commits: a walk of the two trees, skipping identical subtrees by oid.

import type * as nodeFs from 'node:fs';
import git from './isomorphic-git.js';

export interface RepoHandle {
  fs: typeof nodeFs;
  /** A worktree (with `.git`) or, for a bare mirror, leave undefined and set gitdir. */
  dir?: string;
  gitdir?: string;
  cache: object;
}

const NULL_COMMIT = /^0+$/;

export function isNullCommit(sha: string): boolean {
  return sha.length === 0 || NULL_COMMIT.test(sha);
}

/** The full oid of commit `ref` (full or abbreviated SHA) in the repository, or undefined. */
export async function findCommit(repo: RepoHandle, ref: string): Promise<string | undefined> {
  if (!/^[0-9a-f]{4,40}$/i.test(ref)) return undefined;
  const location = { fs: repo.fs, ...(repo.dir ? { dir: repo.dir } : {}), ...(repo.gitdir ? { gitdir: repo.gitdir } : {}), cache: repo.cache };
  let oid: string;
  try {
    oid = ref.length === 40 ? ref.toLowerCase() : await git.expandOid({ ...location, oid: ref.toLowerCase() });
  } catch {
    return undefined;
  }
  try {
    await git.readCommit({ ...location, oid });
    return oid;
  } catch {
    return undefined;
  }
}

/**
 * Paths (relative to the repository root) that differ between `base` and `commit`, or undefined
 * when `base` is not a commit of the repository.
 */
export async function changedFilesBetween(repo: RepoHandle, base: string, commit: string): Promise<string[] | undefined> {
  const baseOid = await findCommit(repo, base);
  if (baseOid === undefined) return undefined;
  const location = { fs: repo.fs, ...(repo.dir ? { dir: repo.dir } : {}), ...(repo.gitdir ? { gitdir: repo.gitdir } : {}), cache: repo.cache };
  const changed: string[] = await git.walk({
    ...location,
    trees: [git.TREE({ ref: baseOid }), git.TREE({ ref: commit })],
    map: async (filepath, [a, b]) => {
      if (filepath === '.') return undefined;
      const [aType, bType] = await Promise.all([a?.type(), b?.type()]);
      const [aOid, bOid] = await Promise.all([a?.oid(), b?.oid()]);
      if (aOid !== undefined && aOid === bOid && aType === bType) {
        // Same oid: same content, and for trees the same everything below — do not descend.
        return null;
      }
      if (aType === 'tree' && bType === 'tree') return undefined;
      const aMode = aType === 'blob' ? await a!.mode() : undefined;
      const bMode = bType === 'blob' ? await b!.mode() : undefined;
      if (aType === 'blob' || bType === 'blob' || aType === 'commit' || bType === 'commit') {
        if (aOid === bOid && aMode === bMode) return undefined;
        return filepath;
      }
      return undefined;
    },
    reduce: async (parent: unknown, children: unknown[]) => {
      const out: string[] = [];
      if (typeof parent === 'string') out.push(parent);
      for (const child of children) {
        if (Array.isArray(child)) out.push(...(child as string[]));
        else if (typeof child === 'string') out.push(child);
      }
      return out;
    },
  });
  return [...new Set(changed ?? [])].sort();
}
