// local-overhead: `oci-build build fixtures/sample-go-repo`, run as the single executable
// (dist/oci-build), against the same `go build` and `buildah bud` typed by hand, warm caches,
// interleaved runs in one process.
// Targets: median ratio ≤ 1.25 with NODE_EXTRA_CA_CERTS unset (as on a typical machine; the
// figure with it set, this machine's floor, is printed beside it); `oci-build --version` under
// 200 ms; peak RSS of a build ≤ 150 MB.
// Also printed: what the build sandbox costs (the same build with build.sandbox none, interleaved).

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, ms } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 7);

function timed(file, args, options) {
  const started = process.hrtime.bigint();
  const result = spawnSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.status}):\n${result.stderr}\n${result.stdout}`);
  return elapsed;
}

/**
 * Runs the executable and samples its peak RSS (VmHWM, the kernel's high-water mark, which only
 * grows) every 10 ms until it exits: a Node preload (rss-probe.mjs) cannot be given to a single
 * executable, and the exit status's rusage would count buildah's and go's peaks too.
 */
function timedWithPeakRss(file, args, options) {
  return new Promise((resolveRun, rejectRun) => {
    const started = process.hrtime.bigint();
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
    let stderr = '';
    let peakKb = 0;
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const sample = () => {
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]));
      } catch {
        // exited between two samples
      }
    };
    const timer = setInterval(sample, 10);
    child.once('exit', (code) => {
      clearInterval(timer);
      const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) rejectRun(new Error(`${file} ${args.join(' ')} failed (${code}):\n${stderr}`));
      else resolveRun({ elapsed, peakMb: peakKb / 1024 });
    });
  });
}

export async function run() {
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-bench-'));
  try {
    const repo = join(temp, 'sample-go-repo');
    // The fixture as committed: a dist/ left by an earlier build in this checkout is not part of it.
    cpSync(join(root, 'fixtures/sample-go-repo'), repo, { recursive: true, filter: (src) => !/[\\/]dist$/.test(src) });
    const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b', GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z' };
    for (const args of [['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'bench']]) execFileSync('git', args, { cwd: repo, env: gitEnv });
    const commitTime = execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: repo, encoding: 'utf8' }).trim();

    const workDir = join(temp, 'work');
    const storage = ['--root', join(temp, 'storage'), '--runroot', join(temp, 'run'), '--storage-driver', 'vfs'];
    const env = {
      ...process.env,
      CI: 'true',
      NO_COLOR: '1',
      OCI_BUILD_WORK_DIR: workDir,
      OCI_BUILD_IMAGE_ROOT: join(temp, 'storage'),
      OCI_BUILD_IMAGE_RUN_ROOT: join(temp, 'run'),
      OCI_BUILD_IMAGE_STORAGE_DRIVER: 'vfs',
      OCI_BUILD_IMAGE_ISOLATION: 'chroot',
      OCI_BUILD_BUILD_SANDBOX: 'bubblewrap',
      // Every run does the work, as by hand: no image reused from an earlier build of the same inputs.
      OCI_BUILD_BUILD_REUSE: 'false',
    };
    // NODE_EXTRA_CA_CERTS makes every Node process parse its whole root store at start (Node 20
    // loads it lazily otherwise), the executable too. These machines set it: the target is taken
    // without it, as on a typical machine, and the figure with it is printed beside.
    const extraCa = process.env.NODE_EXTRA_CA_CERTS;
    const { NODE_EXTRA_CA_CERTS: _dropped, ...envWithoutCa } = env;
    const unsandboxedEnv = { ...envWithoutCa, OCI_BUILD_BUILD_SANDBOX: 'none' };
    const executable = join(root, 'dist/oci-build');
    let lastPeakMb = 0;
    const ociBuild = async (extraEnv = envWithoutCa) => {
      // Run from a directory of its own: this checkout's oci-build.config.yaml is not the build's.
      const { elapsed, peakMb } = await timedWithPeakRss(executable, ['build', repo], { cwd: temp, env: extraEnv });
      lastPeakMb = peakMb;
      return elapsed;
    };

    // The same work by hand: the Go build with the same caches, then the image build.
    const goEnv = { ...process.env, CGO_ENABLED: '0', GOCACHE: join(workDir, 'cache/go-build'), GOMODCACHE: join(workDir, 'cache/go-mod'), GOFLAGS: '-modcacherw -buildvcs=false' };
    const byHand = () =>
      timed('go', ['build', '-trimpath', '-o', 'dist/', './...'], { cwd: repo, env: goEnv }) +
      timed('buildah', [...storage, 'bud', '--isolation', 'chroot', '--timestamp', commitTime, '-t', 'sample-go-repo:sha-bench', '-t', 'sample-go-repo:main', '.'], { cwd: repo });

    // Warm-up: fills the caches and loads the binaries into the page cache.
    await ociBuild();
    byHand();
    const ours = [];
    const oursWithCa = [];
    const raw = [];
    const rss = [];
    const nodeStart = [];
    const nodeStartWithCa = [];
    const unsandboxed = [];
    // One sandbox set up and torn down around nothing, against nothing: the cost per build command.
    const bwrapTrue = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp', '--unshare-pid', '--unshare-ipc', '--die-with-parent', '--cap-drop', 'ALL', '--', 'true'];
    const sandboxOnce = [];
    const bareOnce = [];
    await ociBuild(unsandboxedEnv);
    for (let i = 0; i < RUNS; i++) {
      ours.push(await ociBuild());
      rss.push(lastPeakMb);
      unsandboxed.push(await ociBuild(unsandboxedEnv));
      for (let j = 0; j < 5; j++) {
        sandboxOnce.push(timed('bwrap', bwrapTrue, {}));
        bareOnce.push(timed('true', [], {}));
      }
      raw.push(byHand());
      nodeStart.push(timed(process.execPath, ['-e', '0'], { env: envWithoutCa }));
      if (extraCa) {
        oursWithCa.push(await ociBuild(env));
        nodeStartWithCa.push(timed(process.execPath, ['-e', '0'], { env }));
      }
    }
    const versions = [];
    for (let i = 0; i < 10; i++) versions.push(timed(executable, ['--version'], { env: envWithoutCa }));

    const rawMedian = median(raw);
    const ratio = median(ours) / rawMedian;
    const version = median(versions);
    const peak = Math.max(...rss);
    const lines = [
      `dist/oci-build build median ${ms(median(ours))} over ${RUNS} runs (NODE_EXTRA_CA_CERTS unset)`,
      `go build + buildah  median ${ms(rawMedian)} over ${RUNS} runs`,
      `ratio               ${ratio.toFixed(2)} (target ≤ 1.25)`,
      `node -e 0           median ${ms(median(nodeStart))}: Node's own start; no Node CLI beats (raw + this) / raw = ${((rawMedian + median(nodeStart)) / rawMedian).toFixed(2)}`,
      `overhead            ${ms(median(ours) - rawMedian)} a build over the raw tools (the target allows ${ms(0.25 * rawMedian)}); Node's start is ${ms(median(nodeStart))} of it`,
    ];
    if (extraCa) {
      lines.push(
        `with NODE_EXTRA_CA_CERTS=${extraCa} (this machine's floor): node -e 0 ${ms(median(nodeStartWithCa))}, oci-build build ${ms(median(oursWithCa))}, ratio ${(median(oursWithCa) / rawMedian).toFixed(2)}`,
      );
    }
    const sandboxCost = median(ours) - median(unsandboxed);
    lines.push(
      `build.sandbox none  median ${ms(median(unsandboxed))}: the bubblewrap sandbox costs ${ms(sandboxCost)} a build (${((sandboxCost / median(unsandboxed)) * 100).toFixed(1)}%); bwrap around \`true\` ${ms(median(sandboxOnce))} against ${ms(median(bareOnce))} bare`,
    );
    lines.push(`oci-build --version median ${ms(version)} (target < 200 ms)`, `peak RSS of a build ${peak.toFixed(0)} MB (the executable's own, sampled; target ≤ 150 MB)`);
    return { name: 'local-overhead', lines, ok: ratio <= 1.25 && version < 200 && peak <= 150 };
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}
