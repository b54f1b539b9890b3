// `cache size` and `cache clean` over the Git mirrors of remote sources: mirrors and spare
// worktrees made by real builds' syncs from a smart-HTTP server (git http-backend on loopback),
// the repository lock held by another process, and links that lead out of the work directory.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MIRROR_MIN_IDLE_MS, MirrorCache } from '../../src/cache/mirror-cache.js';
import type { PhaseContext } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { createSourceProvider } from '../../src/git/source-provider.js';
import { mirrorLockPath, parseRemoteUrl } from '../../src/git/url.js';
import { spareWorktreePath } from '../../src/git/worktree-pool.js';
import { runCli } from '../helpers/cli.js';
import { REPO_ROOT, tempDir, type TempDir } from '../helpers/fixtures.js';
import { snapshot, startGitServer, workRepo, type GitServer } from '../helpers/git-http-server.js';

const GIT = { depth: 50, retries: 0, retryDelayMs: 10, retryMaxDelayMs: 20, tokenHosts: [] };
const HOUR = 60 * 60_000;
const DAY = 24 * HOUR;
const REPOS = ['acme/widget', 'acme/gadget', 'old-owner/app', 'team/sub/deep'];

let server: GitServer;
let tmp: TempDir;
let jobCounter = 0;

function context(): PhaseContext {
  return { signal: new AbortController().signal, log: { write: () => undefined } };
}

/** What a build does to the work directory: sync the mirror, check out, hand the worktree back. */
async function sync(workDir: string, name: string): Promise<void> {
  jobCounter += 1;
  const job: BuildJob = {
    id: `cache-repos-${jobCounter}`,
    trigger: 'cli',
    source: { kind: 'git', url: server.url(name) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
  const checkout = await createSourceProvider({ workDir, git: GIT }).checkout(job.source, job, context());
  await checkout.dispose();
}

const host = () => `127.0.0.1_${server.port}`;
const mirrorOf = (workDir: string, name: string) => join(workDir, 'repos', host(), ...name.split('/'));
const spareOf = (workDir: string, name: string) => spareWorktreePath(workDir, mirrorOf(workDir, name));
const stateOf = (workDir: string, name: string) => join(mirrorOf(workDir, name), 'oci-build-mirror.json');

async function setTimes(path: string, ago: { atime: number; mtime: number }): Promise<void> {
  const now = Date.now();
  await utimes(path, new Date(now - ago.atime), new Date(now - ago.mtime));
}

/** Makes a synced mirror look last used `ago` ms ago by every signal the clean reads. */
async function age(workDir: string, name: string, ago: number): Promise<void> {
  await setTimes(stateOf(workDir, name), { atime: ago, mtime: ago });
  await setTimes(spareOf(workDir, name), { atime: ago, mtime: ago });
}

/** Bytes and files under `dir`, links counted as themselves and never followed (like `du`, apparent sizes). */
async function du(dir: string): Promise<{ bytes: number; files: number }> {
  const total = { bytes: 0, files: 0 };
  const walk = async (path: string) => {
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        total.bytes += (await lstat(full)).size;
        total.files += 1;
      }
    }
  };
  await walk(dir);
  return total;
}

async function newWorkDir(name: string): Promise<string> {
  const dir = join(tmp.path, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A directory outside the work directory, with a file a clean must never remove. */
async function outsideDir(name: string): Promise<string> {
  const dir = join(tmp.path, 'outside', name);
  await mkdir(join(dir, 'objects'), { recursive: true });
  // Looks like a mirror nobody used for a year: only a followed link could make a clean take it.
  await writeFile(join(dir, 'HEAD'), 'ref: refs/heads/main\n');
  await writeFile(join(dir, 'oci-build-mirror.json'), '{}');
  await writeFile(join(dir, 'objects', 'precious'), 'x'.repeat(100_000));
  for (const file of ['HEAD', 'oci-build-mirror.json', 'objects/precious', 'objects', '.']) {
    await setTimes(join(dir, file), { atime: 365 * DAY, mtime: 365 * DAY });
  }
  return dir;
}

beforeAll(async () => {
  server = await startGitServer();
  tmp = await tempDir('oci-build-cache-repos-');
  const work = await workRepo(tmp);
  work.commit({ 'README.md': 'hello\n', 'src/main.go': 'package main\n\nfunc main() {}\n', 'bin/run.sh': '#!/bin/sh\necho hi\n' }, 'first');
  for (const name of REPOS) await server.addRepo(name, work.dir);
});

afterAll(async () => {
  await server?.dispose();
  await tmp?.cleanup();
});

describe('cache size: Git mirrors', () => {
  it('counts every mirror and spare worktree, with the number of repositories', async () => {
    const workDir = await newWorkDir('size');
    const cache = new MirrorCache(workDir);
    expect(await cache.size()).toMatchObject({ kind: 'git-mirrors', bytes: 0, files: 0, repositories: 0, notes: [] });

    await sync(workDir, 'acme/widget');
    await sync(workDir, 'team/sub/deep'); // an owner of two path segments
    expect(existsSync(join(mirrorOf(workDir, 'team/sub/deep'), 'HEAD'))).toBe(true);
    expect(existsSync(spareOf(workDir, 'acme/widget'))).toBe(true);

    const repos = await du(join(workDir, 'repos'));
    const spares = await du(join(workDir, 'worktrees', '.spare'));
    expect(spares.files).toBeGreaterThanOrEqual(2 * 3); // three files of each checkout
    const usage = await cache.size();
    expect(usage).toMatchObject({ repositories: 2, bytes: repos.bytes + spares.bytes, files: repos.files + spares.files, notes: [] });
    expect(usage.paths).toEqual([join(workDir, 'repos'), join(workDir, 'worktrees', '.spare')]);
  });
});

describe('cache clean: Git mirrors', () => {
  it('removes a mirror unused for longer than the cut-off with its spare worktree, and keeps a recent one', async () => {
    const workDir = await newWorkDir('clean');
    await sync(workDir, 'old-owner/app');
    await sync(workDir, 'acme/widget');
    // A link inside the old mirror that leads out: removing the mirror must not follow it.
    const outside = await outsideDir('from-inside-a-mirror');
    const before = await snapshot(outside);
    await symlink(outside, join(mirrorOf(workDir, 'old-owner/app'), 'escape'));
    await age(workDir, 'old-owner/app', 10 * DAY);
    await age(workDir, 'acme/widget', 2 * DAY);
    const oldBytes = (await du(mirrorOf(workDir, 'old-owner/app'))).bytes + (await du(spareOf(workDir, 'old-owner/app'))).bytes;

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 7 * DAY });

    expect(result.removed.map((m) => m.repository)).toEqual([`${host()}/old-owner/app`]);
    expect(result.removed[0]!.bytes).toBe(oldBytes);
    expect(Date.parse(result.removed[0]!.lastUsedAt)).toBeLessThan(Date.now() - 9 * DAY);
    expect(result).toMatchObject({ kept: 1, skipped: [], removedOrphans: 0, removedBytes: oldBytes });
    expect(existsSync(mirrorOf(workDir, 'old-owner/app'))).toBe(false);
    expect(existsSync(spareOf(workDir, 'old-owner/app'))).toBe(false);
    // The owner directory it leaves empty goes too; nothing is left aside in repos/.
    expect(existsSync(join(workDir, 'repos', host(), 'old-owner'))).toBe(false);
    expect(await readdir(join(workDir, 'repos'))).toEqual([host()]);
    expect(await readdir(join(workDir, 'worktrees', '.spare'))).toEqual([spareOf(workDir, 'acme/widget').split('/').pop()]);
    expect(existsSync(join(mirrorOf(workDir, 'acme/widget'), 'HEAD'))).toBe(true);
    expect(existsSync(spareOf(workDir, 'acme/widget'))).toBe(true);
    expect(await snapshot(outside)).toEqual(before);

    // The next build of the removed repository clones it again.
    await sync(workDir, 'old-owner/app');
    expect(existsSync(stateOf(workDir, 'old-owner/app'))).toBe(true);
  });

  it('counts as used: a completed fetch (mtime), a build reading the mirror (atime), a worktree handed back', async () => {
    const workDir = await newWorkDir('used');
    for (const name of REPOS) await sync(workDir, name);
    await age(workDir, 'acme/widget', 10 * DAY);
    // Fetched two days ago.
    await age(workDir, 'acme/gadget', 10 * DAY);
    await setTimes(stateOf(workDir, 'acme/gadget'), { atime: 10 * DAY, mtime: 2 * DAY });
    // Built from the mirror two days ago (the remote unreachable: no fetch completed since).
    await age(workDir, 'old-owner/app', 10 * DAY);
    await setTimes(stateOf(workDir, 'old-owner/app'), { atime: 2 * DAY, mtime: 10 * DAY });
    // A build handed its worktree back two days ago.
    await age(workDir, 'team/sub/deep', 10 * DAY);
    await setTimes(spareOf(workDir, 'team/sub/deep'), { atime: 10 * DAY, mtime: 2 * DAY });

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 7 * DAY });

    expect(result.removed.map((m) => m.repository)).toEqual([`${host()}/acme/widget`]);
    expect(result.kept).toBe(3);
    for (const name of ['acme/gadget', 'old-owner/app', 'team/sub/deep']) expect(existsSync(stateOf(workDir, name)), name).toBe(true);
  });

  it(`keeps a mirror used in the last ${MIRROR_MIN_IDLE_MS / HOUR}h whatever --older-than says`, async () => {
    const workDir = await newWorkDir('floor');
    await sync(workDir, 'acme/widget');
    await sync(workDir, 'acme/gadget');
    await age(workDir, 'acme/widget', 10 * 60_000);
    await age(workDir, 'acme/gadget', MIRROR_MIN_IDLE_MS + 10 * 60_000);

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 1 });

    expect(result.removed.map((m) => m.repository)).toEqual([`${host()}/acme/gadget`]);
    expect(result.kept).toBe(1);
    expect(existsSync(stateOf(workDir, 'acme/widget'))).toBe(true);
  });

  describe('a mirror whose lock another process holds', () => {
    let holder: ChildProcess | undefined;
    afterEach(() => {
      holder?.kill();
      holder = undefined;
    });

    it('is skipped and kept, and named; the next clean removes it once the lock is free', async () => {
      const workDir = await newWorkDir('locked');
      await sync(workDir, 'acme/widget');
      await sync(workDir, 'acme/gadget');
      await age(workDir, 'acme/widget', 10 * DAY);
      await age(workDir, 'acme/gadget', 10 * DAY);

      // Another process takes the lock exactly as a build does (the compiled lock.ts) and holds it
      // until its stdin closes.
      const lockPath = mirrorLockPath(workDir, parseRemoteUrl(server.url('acme/widget')));
      const lockModule = pathToFileURL(join(REPO_ROOT, 'dist', 'git', 'lock.js')).href;
      const script = `const { withLock } = await import(${JSON.stringify(lockModule)});
await withLock(${JSON.stringify(lockPath)}, () => new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.resume(); process.stdout.write('locked\\n'); }));`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
      holder = child;
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (data: Buffer) => data.toString().includes('locked') && resolve());
        child.on('exit', (code) => reject(new Error(`the lock holder exited with ${code} before taking the lock`)));
      });

      const busy = await new MirrorCache(workDir).clean({ olderThanMs: 7 * DAY });

      expect(busy.skipped).toEqual([{ repository: `${host()}/acme/widget`, reason: expect.stringContaining(`held by pid ${child.pid} `) }]);
      expect(busy.skipped[0]!.reason).toContain(lockPath);
      expect(busy.removed.map((m) => m.repository)).toEqual([`${host()}/acme/gadget`]);
      expect(existsSync(stateOf(workDir, 'acme/widget'))).toBe(true);
      expect(existsSync(spareOf(workDir, 'acme/widget'))).toBe(true);
      expect(existsSync(lockPath)).toBe(true); // the holder's lock, untouched

      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.stdin!.end();
      await exited;
      const free = await new MirrorCache(workDir).clean({ olderThanMs: 7 * DAY });
      expect(free.skipped).toEqual([]);
      expect(free.removed.map((m) => m.repository)).toEqual([`${host()}/acme/widget`]);
      expect(existsSync(mirrorOf(workDir, 'acme/widget'))).toBe(false);
      expect(existsSync(lockPath)).toBe(false); // the clean's own lock, released
    });
  });

  it('follows no link inside repos or the spare worktrees, neither to count nor to remove', async () => {
    const workDir = await newWorkDir('links');
    await sync(workDir, 'acme/widget');
    await age(workDir, 'acme/widget', 10 * DAY);
    const asMirror = await outsideDir('as-a-mirror');
    const asHost = await outsideDir('as-a-host');
    await mkdir(join(asHost, 'acme', 'app', 'objects'), { recursive: true });
    await writeFile(join(asHost, 'acme', 'app', 'HEAD'), 'ref: refs/heads/main\n');
    const asSpare = await outsideDir('as-a-spare');
    await symlink(asMirror, join(mirrorOf(workDir, 'acme/widget'), '..', 'linked'));
    await symlink(asHost, join(workDir, 'repos', 'evil.example'));
    await symlink(asSpare, join(workDir, 'worktrees', '.spare', '0123456789abcdef01234567'));
    const before = { asMirror: await snapshot(asMirror), asHost: await snapshot(asHost), asSpare: await snapshot(asSpare) };

    const usage = await new MirrorCache(workDir).size();
    expect(usage.repositories).toBe(1);
    const counted = (await du(join(workDir, 'repos'))).bytes + (await du(join(workDir, 'worktrees', '.spare'))).bytes;
    expect(usage.bytes).toBe(counted);
    expect(usage.bytes).toBeLessThan(100_000); // the 100 kB outside would show

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 1 });
    expect(result.removed.map((m) => m.repository)).toEqual([`${host()}/acme/widget`]);
    expect(result.removedOrphans).toBe(0);
    expect({ asMirror: await snapshot(asMirror), asHost: await snapshot(asHost), asSpare: await snapshot(asSpare) }).toEqual(before);
    expect((await lstat(join(workDir, 'repos', 'evil.example'))).isSymbolicLink()).toBe(true);
  });

  it('follows no link in place of <workDir>/repos or of the spare directory, and says so', async () => {
    const workDir = await newWorkDir('linked-roots');
    const reposTarget = join(tmp.path, 'outside', 'repos-target');
    await mkdir(reposTarget, { recursive: true });
    const asMirror = await outsideDir('repos-target-mirror');
    await mkdir(join(reposTarget, 'example.com', 'acme'), { recursive: true });
    await symlink(asMirror, join(reposTarget, 'example.com', 'acme', 'app'));
    // A real mirror directory under the link's target: only following `repos` would reach it.
    await sync(await newWorkDir('linked-roots-source'), 'acme/widget');
    const real = mirrorOf(join(tmp.path, 'linked-roots-source'), 'acme/widget');
    await mkdir(join(reposTarget, host(), 'acme'), { recursive: true });
    spawnSync('cp', ['-a', real, join(reposTarget, host(), 'acme', 'widget')]);
    await setTimes(join(reposTarget, host(), 'acme', 'widget', 'oci-build-mirror.json'), { atime: 30 * DAY, mtime: 30 * DAY });
    await symlink(reposTarget, join(workDir, 'repos'));
    const spareTarget = await outsideDir('spare-target');
    await mkdir(join(workDir, 'worktrees'), { recursive: true });
    await symlink(spareTarget, join(workDir, 'worktrees', '.spare'));
    const before = { repos: await snapshot(reposTarget), spare: await snapshot(spareTarget) };

    const usage = await new MirrorCache(workDir).size();
    expect(usage).toMatchObject({ bytes: 0, files: 0, repositories: 0 });
    expect(usage.notes).toEqual([expect.stringContaining(`${join(workDir, 'repos')} is a symbolic link`), expect.stringContaining(`${join(workDir, 'worktrees', '.spare')} is a symbolic link`)]);

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 1 });
    expect(result).toMatchObject({ removed: [], removedBytes: 0, removedOrphans: 0 });
    expect(result.notes).toHaveLength(2);
    expect({ repos: await snapshot(reposTarget), spare: await snapshot(spareTarget) }).toEqual(before);
  });

  it('removes old spare worktrees whose mirror is gone and what a killed clean left, keeps recent ones', async () => {
    const workDir = await newWorkDir('orphans');
    await sync(workDir, 'acme/widget');
    await age(workDir, 'acme/widget', 2 * DAY);
    const spares = join(workDir, 'worktrees', '.spare');
    const oldOrphan = join(spares, 'aaaaaaaaaaaaaaaaaaaaaaaa');
    const newOrphan = join(spares, 'bbbbbbbbbbbbbbbbbbbbbbbb');
    for (const dir of [oldOrphan, newOrphan]) {
      await mkdir(dir);
      await writeFile(join(dir, 'file.txt'), 'x'.repeat(1000));
    }
    await setTimes(oldOrphan, { atime: 10 * DAY, mtime: 10 * DAY });
    await setTimes(newOrphan, { atime: HOUR * 2, mtime: HOUR * 2 });
    // What a clean killed between moving a mirror aside and deleting it leaves (its pid is gone).
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const leftover = join(workDir, 'repos', `.oci-build-removing-${deadPid}-1-1`);
    await mkdir(join(leftover, 'objects'), { recursive: true });
    await writeFile(join(leftover, 'objects', 'pack'), 'y'.repeat(500));

    const result = await new MirrorCache(workDir).clean({ olderThanMs: 7 * DAY });

    expect(result).toMatchObject({ removed: [], kept: 1, removedOrphans: 2, removedBytes: 1500 });
    expect(existsSync(oldOrphan)).toBe(false);
    expect(existsSync(leftover)).toBe(false);
    expect(existsSync(newOrphan)).toBe(true);
    expect(existsSync(spareOf(workDir, 'acme/widget'))).toBe(true);
  });
});

describe('oci-build cache (the CLI, built)', () => {
  it('size --json and the table show the mirrors; clean removes an old one', async () => {
    const workDir = await newWorkDir('cli');
    await sync(workDir, 'acme/widget');
    await sync(workDir, 'acme/gadget');
    await mkdir(join(workDir, 'cache', 'npm'), { recursive: true });
    await writeFile(join(workDir, 'cache', 'npm', 'entry'), 'z'.repeat(2048));
    const mirrors = { bytes: (await du(join(workDir, 'repos'))).bytes + (await du(join(workDir, 'worktrees', '.spare'))).bytes };
    const env = { OCI_BUILD_WORK_DIR: workDir };

    const size = await runCli(['cache', 'size', '--json'], { env });
    expect(size.code, size.stderr).toBe(0);
    const report = JSON.parse(size.stdout) as { root: string; caches: Array<{ kind: string; bytes: number; repositories?: number }>; totalBytes: number };
    expect(report.root).toBe(join(workDir, 'cache'));
    expect(report.caches.map((c) => c.kind)).toEqual(['go-mod', 'go-build', 'maven', 'nuget', 'npm', 'nx', 'git-mirrors']);
    expect(report.caches.find((c) => c.kind === 'npm')?.bytes).toBe(2048);
    expect(report.caches.find((c) => c.kind === 'git-mirrors')).toMatchObject({ repositories: 2, bytes: mirrors.bytes });
    expect(report.totalBytes).toBe(report.caches.reduce((sum, c) => sum + c.bytes, 0));

    const table = await runCli(['cache', 'size'], { env });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^npm\s+2\.0 KiB {2}1 files$/m);
    expect(table.stdout).toMatch(/^git mirrors\s+[\d.]+ (?:B|KiB|MiB) {2}\d+ files, 2 repositories$/m);

    await age(workDir, 'acme/gadget', 10 * DAY);
    const clean = await runCli(['cache', 'clean', '--older-than', '7d'], { env });
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/^Removed 0 files \(0 B\) not used for 7d$/m);
    expect(clean.stdout).toContain(`Removed 1 Git mirror (`);
    expect(clean.stdout).toContain(`not used for 7d: ${host()}/acme/gadget\n`);
    expect(clean.stdout).toContain('Kept 1 Git mirror used in the last 7d');
    expect(existsSync(mirrorOf(workDir, 'acme/gadget'))).toBe(false);
    expect(existsSync(mirrorOf(workDir, 'acme/widget'))).toBe(true);
  });
});
