// Files changed between two commits: a walk of the two trees, skipping identical subtrees by oid.

import type * as nodeFs from 'node:fs';
import git from './isomorphic-git.js';
import { isGitRefName } from './url.js';

export interface RepoHandle {
  fs: typeof nodeFs;
  /** A worktree (with `.git`) or, for a bare mirror, leave undefined and set gitdir. */
  dir?: string;
  gitdir?: string;
  cache: object;
}

const NULL_COMMIT = /^0+$/;
const SHA_PREFIX = /^[0-9a-f]{4,40}$/i;

/** Could name a commit by its SHA: 4 to 40 hex digits. */
export function looksLikeSha(text: string): boolean {
  return SHA_PREFIX.test(text);
}

/** The repository as isomorphic-git's commands take it. */
function locationOf(repo: RepoHandle) {
  return { fs: repo.fs, ...(repo.dir ? { dir: repo.dir } : {}), ...(repo.gitdir ? { gitdir: repo.gitdir } : {}), cache: repo.cache };
}

export function isNullCommit(sha: string): boolean {
  return sha.length === 0 || NULL_COMMIT.test(sha);
}

/** The full oid of commit `ref` (full or abbreviated SHA) in the repository, or undefined. */
export async function findCommit(repo: RepoHandle, ref: string): Promise<string | undefined> {
  if (!looksLikeSha(ref)) return undefined;
  const location = locationOf(repo);
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

export type RevisionResult = { commit: string } | { missing: 'name' | 'history' };

/**
 * The commit a revision names, as `git rev-parse` reads the common forms: a ref name (each name
 * `refNames` gives is tried in order; annotated tags are peeled) or a full or abbreviated SHA,
 * followed by any `~N` (N first parents back) and `^N` (the Nth parent) steps. `missing` says
 * whether the name itself is unknown or the history stops short (a shallow repository).
 */
export async function resolveRevision(repo: RepoHandle, revision: string, refNames: (name: string) => string[]): Promise<RevisionResult> {
  const match = /^(.*?)((?:[~^]\d*)*)$/.exec(revision.trim());
  const name = match?.[1] ?? '';
  const steps = match?.[2]?.match(/[~^]\d*/g) ?? [];
  if (name.length === 0) return { missing: 'name' };
  const location = locationOf(repo);
  // The commit `oid` names (an annotated tag peeled), or undefined when the repository lacks it.
  const read = (oid: string) => git.readCommit({ ...location, oid }).catch(() => undefined);

  let current: Awaited<ReturnType<typeof read>>;
  if (isGitRefName(name)) {
    for (const ref of refNames(name)) {
      const target = await git.resolveRef({ ...location, ref }).catch(() => undefined);
      current = target ? await read(target) : undefined;
      if (current) break;
    }
  }
  if (!current) {
    const oid = await findCommit(repo, name);
    current = oid ? await read(oid) : undefined;
  }
  if (!current) return { missing: looksLikeSha(name) ? 'history' : 'name' };

  for (const step of steps) {
    const n = step.length > 1 ? Number(step.slice(1)) : 1;
    // `~N` walks N first parents; `^N` takes the Nth parent (`^0` is the commit itself).
    const walk = step[0] === '~' ? Array.from({ length: n }, () => 1) : n === 0 ? [] : [n];
    for (const parentIndex of walk) {
      const parent: string | undefined = current.commit.parent[parentIndex - 1];
      // No such parent (past the root commit): the revision names nothing. A parent the
      // repository lacks: the history stops short of it (shallow).
      if (parent === undefined) return { missing: 'name' };
      const next = await read(parent);
      if (!next) return { missing: 'history' };
      current = next;
    }
  }
  return { commit: current.oid };
}

/**
 * Paths (relative to the repository root) that differ between `base` and `commit`, or undefined
 * when `base` is not a commit of the repository.
 */
export async function changedFilesBetween(repo: RepoHandle, base: string, commit: string): Promise<string[] | undefined> {
  const baseOid = await findCommit(repo, base);
  if (baseOid === undefined) return undefined;
  const location = locationOf(repo);
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
