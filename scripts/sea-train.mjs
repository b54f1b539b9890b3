// Trains the code caches of the single executable's chunks (scripts/sea.mjs) on real commands.
//
// V8 compiles a function when it is first called. scripts/sea-code-cache.cjs caches what a chunk
// compiles while it loads; what a command compiles while it runs (execa's spawn, isomorphic-git's
// status walk, the configuration's validation, the pipeline) was compiled again at every start:
// about 15 ms of a local build, before its first tool ran. Here the executable made from the
// same chunks runs the commands users run most, `build` of a directory and of a Git URL, each
// twice (a build, then the same commit again: reused), and `status`, in a directory with the
// documented default configuration file, with
// OCI_BUILD_SEA_TRAIN_DIR set: each chunk's cache is read from that directory and written back
// when the process exits, with every function that run compiled. Each run starts from the
// caches the previous one wrote, so the last ones hold them all. The final executable embeds
// those caches.
//
// Only code is cached, no value a command computed: a cache is V8's compiled functions of the
// chunk's own source, which the executable checks against that source when it loads it.
// A command that cannot run here (no go, no buildah, no bubblewrap) is skipped with what it
// compiled before it failed: the executable works the same, only less of it is cached.

import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { withLockIfFree } from '../dist/git/lock.js';
import { startGitServer } from '../test/helpers/git-http-server.mjs';

const run = promisify(execFile);

/**
 * @param {{ root: string, executable: string, cacheDir: string }} options
 *   cacheDir holds `<chunk>.cache` for every chunk; they are updated in place.
 * @returns {Promise<string[]>} the commands that failed (trained only as far as they got)
 */
export async function trainCodeCaches({ root, executable, cacheDir }) {
  // The work directory outlives the build, for its dependency caches: the Go build's standard
  // library is compiled once, not at every `npm run build`. Its records, logs and result index are
  // emptied first. One build at a time uses it, under the lock oci-build's own housekeeping takes
  // (two test files may build at once): another one trains in a work directory of its own, from
  // cold caches.
  const shared = join(root, 'node_modules/.cache/oci-build/sea-training');
  mkdirSync(shared, { recursive: true });
  const inShared = await withLockIfFree(join(shared, 'lock'), () => {
    const workDir = join(shared, 'work');
    mkdirSync(workDir, { recursive: true });
    for (const entry of readdirSync(workDir)) if (entry !== 'cache') rmSync(join(workDir, entry), { recursive: true, force: true });
    return runTraining({ root, executable, cacheDir, workDir });
  });
  if (inShared.acquired) return inShared.value;
  const own = mkdtempSync(join(tmpdir(), 'oci-build-sea-train-work-'));
  try {
    return await runTraining({ root, executable, cacheDir, workDir: own });
  } finally {
    rmSync(own, { recursive: true, force: true });
  }
}

async function runTraining({ root, executable, cacheDir, workDir }) {
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-sea-train-'));
  const failed = [];
  let server;
  try {
    const repo = join(temp, 'sample-go-repo');
    cpSync(join(root, 'fixtures/sample-go-repo'), repo, { recursive: true, filter: (src) => !/[\\/]dist$/.test(src) });
    const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'sea', GIT_AUTHOR_EMAIL: 'sea@localhost', GIT_COMMITTER_NAME: 'sea', GIT_COMMITTER_EMAIL: 'sea@localhost' };
    for (const args of [['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'training']]) execFileSync('git', args, { cwd: repo, env: gitEnv });
    // The documented default configuration, as ./oci-build.config.yaml: its YAML is read as
    // a user's would be (the environment below overrides it).
    copyFileSync(join(root, 'oci-build.config.yaml'), join(temp, 'oci-build.config.yaml'));
    server = await startGitServer({ root: join(temp, 'git') });
    await server.addRepo('sample-go-repo', repo);

    // None of the builder's own settings (OCI_BUILD_*) reach a training run; nor does a CA bundle,
    // as on a typical machine.
    const parent = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OCI_BUILD_') && name !== 'NODE_EXTRA_CA_CERTS'));
    const env = {
      ...parent,
      CI: 'true',
      NO_COLOR: '1',
      OCI_BUILD_SEA_TRAIN_DIR: cacheDir,
      OCI_BUILD_WORK_DIR: workDir,
      OCI_BUILD_IMAGE_ROOT: join(temp, 'storage'),
      OCI_BUILD_IMAGE_RUN_ROOT: join(temp, 'run'),
      OCI_BUILD_IMAGE_STORAGE_DRIVER: 'vfs',
      OCI_BUILD_IMAGE_ISOLATION: 'chroot',
      OCI_BUILD_IMAGE_PUSH: 'false',
    };
    const commands = [
      ['build', repo],
      ['build', repo],
      ['build', server.url('sample-go-repo')],
      ['build', server.url('sample-go-repo')],
      ['status'],
    ];
    for (const args of commands) {
      let stderr;
      try {
        ({ stderr } = await run(executable, args, { env, cwd: temp, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }));
      } catch (err) {
        stderr = String(err.stderr ?? '');
        failed.push(`oci-build ${args.join(' ')}: ${(stderr.trim() || err.message).split('\n').slice(-1)[0]}`);
      }
      // A cache V8 refuses (made by another V8, or from other source) would be thrown away at
      // every start of the executable: a broken build, not a command that could not run here.
      const rejected = /the code cache of \S+ was rejected/.exec(stderr);
      if (rejected) throw new Error(`training the code caches: oci-build ${args.join(' ')}: ${rejected[0]}`);
    }
  } finally {
    await server?.dispose();
    rmSync(temp, { recursive: true, force: true });
  }
  return failed;
}
