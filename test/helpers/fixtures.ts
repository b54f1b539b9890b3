// Test repositories: a fixture directory copied into a temp directory and committed with native
// git (fixed author and dates, so commits and images are reproducible). No nested .git in the tree.

import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';

export const FIXTURES_DIR = resolve(import.meta.dirname, '../../fixtures');
export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

export async function tempDir(prefix = 'oci-build-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'oci-build tests',
  GIT_AUTHOR_EMAIL: 'tests@oci-build.invalid',
  GIT_COMMITTER_NAME: 'oci-build tests',
  GIT_COMMITTER_EMAIL: 'tests@oci-build.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

/** Runs native git in `dir` and returns its trimmed stdout. */
export function git(dir: string, args: string[], date = '2026-01-01T00:00:00Z'): string {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', ...args], {
    cwd: dir,
    env: { ...process.env, ...GIT_ENV, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
    encoding: 'utf8',
  }).trim();
}

export interface FixtureRepo {
  dir: string;
  commit: string;
  /** Commits everything in the worktree; returns the new commit SHA. */
  commitAll(message: string, date?: string): string;
  cleanup(): Promise<void>;
}

/**
 * Copies fixtures/<name> into <parent>/<repoName> (default: the fixture's name), makes it a Git
 * repository on branch `main` with one commit, and returns it.
 */
export async function fixtureRepo(name: string, options: { repoName?: string; branch?: string } = {}): Promise<FixtureRepo> {
  const parent = await tempDir();
  const dir = join(parent.path, options.repoName ?? name);
  await cp(join(FIXTURES_DIR, name), dir, { recursive: true, filter: (src) => !/[\\/](node_modules|dist|target|bin|obj|\.nx)$/.test(src) });
  git(dir, ['init', '-q', '-b', options.branch ?? 'main']);
  const commitAll = (message: string, date?: string) => {
    git(dir, ['add', '-A']);
    git(dir, ['commit', '-q', '--allow-empty', '-m', message], date);
    return git(dir, ['rev-parse', 'HEAD']);
  };
  const commit = commitAll('initial commit');
  return { dir, commit, commitAll, cleanup: parent.cleanup };
}
