// Worktrees of finished builds are kept, one per repository, for the next build of that
// repository: moving it into place and rewriting only what differs (checkoutTree) costs a
// directory walk, where a fresh checkout creates every file again. The pool lives under
// <workDir>/worktrees/.spare/ (build ids cannot start with a dot, so it never names a build).

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { WorktreeManifest } from './worktree.js';

/** Inside a pooled worktree while it waits; removed as soon as a build takes the directory. */
const MANIFEST = '.oci-build-worktree.json';

/** The directory holding every spare worktree. */
export function spareWorktreesRoot(workDir: string): string {
  return join(workDir, 'worktrees', '.spare');
}

/** Where the spare worktree of a repository waits; `repositoryKey` is the path of its mirror. */
export function spareWorktreePath(workDir: string, repositoryKey: string): string {
  const key = createHash('sha256').update(repositoryKey).digest('hex').slice(0, 24);
  return join(spareWorktreesRoot(workDir), key);
}

export class WorktreePool {
  private readonly spare: string;

  constructor(workDir: string, repositoryKey: string) {
    this.spare = spareWorktreePath(workDir, repositoryKey);
  }

  /**
   * Moves the spare worktree (if any) to `targetDir`, which must not exist, and returns what it
   * holds. The rename is the claim: of two builds only one gets it.
   */
  async take(targetDir: string): Promise<WorktreeManifest | undefined> {
    try {
      await fs.promises.rename(this.spare, targetDir);
    } catch {
      return undefined;
    }
    const manifestPath = join(targetDir, MANIFEST);
    try {
      const manifest = JSON.parse(await fs.promises.readFile(manifestPath, 'utf8')) as WorktreeManifest;
      await fs.promises.rm(manifestPath, { force: true });
      if (typeof manifest?.commit !== 'string' || typeof manifest.files !== 'object') throw new Error('bad manifest');
      return manifest;
    } catch {
      // Unknown content: start from an empty directory.
      await fs.promises.rm(targetDir, { recursive: true, force: true });
      return undefined;
    }
  }

  /** Keeps `dir` as the spare when there is none; removes it otherwise. */
  async give(dir: string, manifest: WorktreeManifest): Promise<void> {
    try {
      await fs.promises.rm(join(dir, MANIFEST), { recursive: true, force: true });
      await fs.promises.writeFile(join(dir, MANIFEST), JSON.stringify(manifest), { flag: 'wx' });
      await fs.promises.mkdir(join(this.spare, '..'), { recursive: true });
      // Fails when a spare is already there (a directory is not replaced by rename).
      await fs.promises.rename(dir, this.spare);
    } catch {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  }
}
