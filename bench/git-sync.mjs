// git-sync: the isomorphic-git mirror (sync + the build's worktree, as every build does) against
// native git on the same repository, served by the same smart-HTTP server (in a child process),
// interleaved runs. The repository: ≥ 1,000 commits and a pack ≥ 9 MB of incompressible bytes.
// Cold: a new work directory and full history (git.depth 0) against `git clone`. Warm: 5 new
// commits, then the next build, which reuses the previous build's worktree, against `git fetch`
// + `git checkout`. For reference: a warm build with a fresh worktree, and depth 50 (the default).
// Targets (issue 3): cold ≤ 1.5× `git clone`; warm (5 new commits) ≤ 1.2× `git fetch` + `git checkout`.

import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, ms } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = process.env.OCI_BUILD_BENCH_DIST ?? join(root, 'dist');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const COMMITS = Number(process.env.BENCH_GIT_COMMITS ?? 1100);
const FILE_BYTES = Number(process.env.BENCH_GIT_FILE_BYTES ?? 9000);

const GIT_ENV = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', HOME: tmpdir() };

function git(args, options = {}) {
  const result = spawnSync('git', args, { env: GIT_ENV, maxBuffer: 1 << 30, ...options });
  if (result.status !== 0) throw new Error(`git ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return result.stdout?.toString().trim() ?? '';
}

const execFileAsync = promisify(execFile);

/** Native git against the server: asynchronous, like our client, so both pay one process hop. */
async function gitRemote(args) {
  await execFileAsync('git', args, { env: GIT_ENV, maxBuffer: 1 << 30 });
}

/**
 * The Git server runs in a child process: in this one it would share the event loop (and a
 * core) with the isomorphic-git client being measured, and a synchronous spawn would deadlock it.
 */
async function startServerProcess(serverRoot) {
  const script = `
    const { startGitServer } = await import(${JSON.stringify(pathToFileURL(join(root, 'test/helpers/git-http-server.mjs')).href)});
    const server = await startGitServer({ root: ${JSON.stringify(serverRoot)} });
    process.stdout.write(JSON.stringify({ port: server.port }) + '\\n');
    process.stdin.on('end', () => server.stop().then(() => process.exit(0)));
    process.stdin.resume();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = await once(child.stdout, 'data');
  const { port } = JSON.parse(String(line));
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}.git`,
    stop: async () => {
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

async function timedAsync(fn) {
  const started = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

let clock = 1_700_000_000;
/** A fast-import stream of `count` commits on main, each adding one file of random bytes. */
function fastImportStream(count, first, parent) {
  const chunks = [];
  for (let i = first; i < first + count; i++) {
    const data = randomBytes(FILE_BYTES);
    const message = `commit ${i}\n`;
    clock += 60;
    chunks.push(Buffer.from(`blob\nmark :${2 * i + 1}\ndata ${data.length}\n`), data, Buffer.from('\n'));
    chunks.push(
      Buffer.from(
        `commit refs/heads/main\nmark :${2 * i + 2}\ncommitter Bench <bench@oci-build.invalid> ${clock} +0000\n` +
          `data ${Buffer.byteLength(message)}\n${message}` +
          (i === first && parent ? `from ${parent}\n` : i > first ? `from :${2 * i}\n` : '') +
          `M 100644 :${2 * i + 1} d${i % 25}/f${i}.bin\n\n`,
      ),
    );
  }
  return Buffer.concat(chunks);
}

function packBytes(gitdir) {
  const packDir = join(gitdir, 'objects', 'pack');
  return readdirSync(packDir).filter((f) => f.endsWith('.pack')).reduce((sum, f) => sum + statSync(join(packDir, f)).size, 0);
}

export async function run() {
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-bench-git-'));
  const { createSourceProvider } = await import(pathToFileURL(join(dist, 'git/source-provider.js')).href);
  const serverRoot = join(temp, 'served');
  const server = await startServerProcess(serverRoot);
  try {
    // The repository, generated with native git fast-import (seconds, not minutes).
    const bare = join(serverRoot, 'bench', 'big.git');
    git(['init', '-q', '--bare', '-b', 'main', bare]);
    git(['fast-import', '--quiet'], { cwd: bare, input: fastImportStream(COMMITS, 0) });
    git(['-C', bare, 'repack', '-a', '-d', '-q']);
    const pack = packBytes(bare);
    const url = server.url('bench/big');
    let commitCount = COMMITS;
    const addCommits = (n) => {
      const head = git(['-C', bare, 'rev-parse', 'main']);
      git(['fast-import', '--quiet'], { cwd: bare, input: fastImportStream(n, commitCount, head) });
      commitCount += n;
    };

    const ctx = { signal: new AbortController().signal, log: { write: () => undefined } };
    const gitConfig = (depth) => ({ depth, retries: 0, retryDelayMs: 100, retryMaxDelayMs: 1000 });
    let jobs = 0;
    const job = () => ({ id: `bench-${++jobs}`, trigger: 'cli', source: { kind: 'git', url }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: new Date().toISOString() });
    const ourCheckout = async (provider) => {
      const j = job();
      const { ms: elapsed, value } = await timedAsync(() => provider.checkout(j.source, j, ctx));
      await value.dispose();
      return elapsed;
    };

    const results = { coldOurs: [], coldGit: [], warmOurs: [], warmGit: [], warmOursFresh: [], warmGitWorktree: [], shallowOurs: [], shallowGit: [] };
    // Warm-up: page cache, module loading, the server's first pack.
    {
      const wd = join(temp, 'warmup');
      await ourCheckout(createSourceProvider({ workDir: wd, git: gitConfig(0) }));
      await gitRemote(['clone', '-q', url, join(temp, 'warmup-clone')]);
      rmSync(wd, { recursive: true, force: true });
      rmSync(join(temp, 'warmup-clone'), { recursive: true, force: true });
    }

    for (let i = 0; i < RUNS; i++) {
      const workDir = join(temp, `wd-${i}`);
      const clone = join(temp, `clone-${i}`);
      const provider = createSourceProvider({ workDir, git: gitConfig(0) });
      // cold: full history, then the default branch's files on disk
      if (i % 2 === 0) {
        results.coldOurs.push(await ourCheckout(provider));
        results.coldGit.push((await timedAsync(() => gitRemote(['clone', '-q', url, clone]))).ms);
      } else {
        results.coldGit.push((await timedAsync(() => gitRemote(['clone', '-q', url, clone]))).ms);
        results.coldOurs.push(await ourCheckout(provider));
      }
      // warm: 5 new commits on the server, then bring both up to date
      addCommits(5);
      const gitWarm = async () =>
        (
          await timedAsync(async () => {
            await gitRemote(['-C', clone, 'fetch', '-q', 'origin']);
            await gitRemote(['-C', clone, 'checkout', '-q', 'origin/main']);
          })
        ).ms;
      if (i % 2 === 0) {
        results.warmOurs.push(await ourCheckout(provider));
        results.warmGit.push(await gitWarm());
      } else {
        results.warmGit.push(await gitWarm());
        results.warmOurs.push(await ourCheckout(provider));
      }
      // for reference: a fresh worktree for us (no finished build's worktree to reuse)…
      addCommits(5);
      rmSync(join(workDir, 'worktrees', '.spare'), { recursive: true, force: true });
      results.warmOursFresh.push(await ourCheckout(provider));
      // …and native git giving a build its own fresh directory
      addCommits(5);
      results.warmGitWorktree.push(
        (
          await timedAsync(async () => {
            await gitRemote(['-C', clone, 'fetch', '-q', 'origin']);
            await gitRemote(['-C', clone, 'worktree', 'add', '-q', '--detach', join(temp, `gw-${i}`), 'origin/main']);
          })
        ).ms,
      );
      // the default configuration: shallow (depth 50), all branches
      const shallowWd = join(temp, `swd-${i}`);
      results.shallowOurs.push(await ourCheckout(createSourceProvider({ workDir: shallowWd, git: gitConfig(50) })));
      results.shallowGit.push((await timedAsync(() => gitRemote(['clone', '-q', '--depth', '50', '--no-single-branch', url, join(temp, `sclone-${i}`)]))).ms);
      for (const dir of [workDir, clone, shallowWd, join(temp, `sclone-${i}`), join(temp, `gw-${i}`)]) rmSync(dir, { recursive: true, force: true });
    }

    const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
    const coldRatio = m.coldOurs / m.coldGit;
    const warmRatio = m.warmOurs / m.warmGit;
    const lines = [
      `repository: ${commitCount} commits, pack ${(pack / 1024 / 1024).toFixed(1)} MB, ${RUNS} interleaved runs, medians`,
      `cold  oci-build sync+worktree ${ms(m.coldOurs)} vs git clone ${ms(m.coldGit)}: ${coldRatio.toFixed(2)}x (target <= 1.5x)`,
      `warm  oci-build sync+worktree ${ms(m.warmOurs)} vs git fetch+checkout ${ms(m.warmGit)}: ${warmRatio.toFixed(2)}x (target <= 1.2x)`,
      `      (reusing the previous build's worktree; with a fresh one: ${ms(m.warmOursFresh)} vs git fetch + worktree add ${ms(m.warmGitWorktree)}: ${(m.warmOursFresh / m.warmGitWorktree).toFixed(2)}x)`,
      `shallow (depth 50) oci-build ${ms(m.shallowOurs)} vs git clone --depth 50 --no-single-branch ${ms(m.shallowGit)}: ${(m.shallowOurs / m.shallowGit).toFixed(2)}x`,
    ];
    return { name: 'git-sync', lines, ok: coldRatio <= 1.5 && warmRatio <= 1.2 };
  } finally {
    await server.stop();
    rmSync(temp, { recursive: true, force: true });
  }
}

// `node bench/git-sync.mjs` runs it alone.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await run();
  for (const line of result.lines) console.log(line);
  console.log(result.ok ? 'target met' : 'TARGET MISSED');
}
