// The tests' entry point to the smart-HTTP Git server (implemented in plain JavaScript,
// git-http-server.mjs, so that the benchmark, which runs outside vitest, shares it), plus small
// repositories to serve and ways to compare checkouts.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { git, tempDir, type TempDir } from './fixtures.js';

export { startGitServer } from './git-http-server.mjs';
export type { GitServer, GitServerRequest } from './git-http-server.mjs';

export interface WorkRepo {
  dir: string;
  /** Writes files (path → content) and commits everything; returns the commit. */
  commit(files: Record<string, string>, message?: string): string;
  /** Native git in the repository (a fresh date each call). */
  git(args: string[]): string;
}

let tick = 0;
/** A new date for every commit, so that two commits of the same tree still differ. */
function nextDate(): string {
  tick += 1;
  return new Date(Date.UTC(2026, 0, 1) + tick * 60_000).toISOString();
}

/** A non-bare repository on branch `main` with no commit yet. */
export async function workRepo(parent: TempDir, name = 'work'): Promise<WorkRepo> {
  const dir = join(parent.path, name);
  await mkdir(dir, { recursive: true });
  git(dir, ['init', '-q', '-b', 'main']);
  return {
    dir,
    commit(files, message = 'change') {
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), content);
      }
      git(dir, ['add', '-A']);
      git(dir, ['commit', '-q', '--allow-empty', '-m', message], nextDate());
      return git(dir, ['rev-parse', 'HEAD']);
    },
    git: (args) => git(dir, args, nextDate()),
  };
}

/** Every file under `dir`: relative path → base64 content (`+x ` prefix when executable) or `-> target`. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const entry of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const full = join(dir, path);
      const info = await lstat(full);
      if (info.isSymbolicLink()) out[path] = `-> ${await readlink(full)}`;
      else if (info.isDirectory()) await walk(path);
      else out[path] = `${info.mode & 0o111 ? '+x ' : ''}${(await readFile(full)).toString('base64')}`;
    }
  };
  await walk('');
  return out;
}

/** `git archive <commit>` of a repository, extracted into a new temp directory. */
export async function archiveOf(repoDir: string, commit: string): Promise<TempDir> {
  const out = await tempDir('oci-build-archive-');
  const tar = execFileSync('git', ['-C', repoDir, 'archive', '--format=tar', commit], { maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', out.path], { input: tar });
  return out;
}
