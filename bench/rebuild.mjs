// rebuild: what result reuse (README, "Result reuse") saves, against the raw tools measured in the
// same run on a clean checkout with warm dependency caches (git clone, go build, buildah bud).
// For fixtures/sample-go-repo and for a generated Go repository of GEN_PACKAGES packages:
//   - the same commit built again in a fresh worktree (`oci-build build URL`, a hit in the file
//     index): target ≤ 0.3× the raw tools;
//   - a commit worker A built (webhook → succeeded), built by worker B (its own work directory and
//     image store, one KV result bucket, a real registry): target ≤ 0.3× A's build;
//   - a tag pushed on the built commit, webhook to the tag in the registry: target p50 ≤ 1 s.
// Real nats-server, docker-registry, git http-backend, buildah (vfs, chroot); the CLI, serve and
// the workers run as shipped: the single executable dist/oci-build (made by `npm run build`).

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, median, ms, percentile, startNats } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const executable = join(root, 'dist/oci-build');
const RUNS = Number(process.env.BENCH_REBUILD_RUNS ?? 7);
const TAG_PUSHES = Number(process.env.BENCH_REBUILD_TAGS ?? 7);
const GEN_PACKAGES = Number(process.env.BENCH_REBUILD_PACKAGES ?? 120);
const SECRET = 'bench-rebuild-secret';
const TOKEN = 'bench-rebuild-token-0123456789';
const GIT_ENV = { GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b', GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z' };

const sleep = (msDelay) => new Promise((r) => setTimeout(r, msDelay));

/** `source 120 ms, detect 9 ms, …`: where a build's time went, from its record. */
function phasesOf(record) {
  const wall = new Date(record.finishedAt) - new Date(record.startedAt);
  return `${record.phases.filter((p) => p.status !== 'skipped').map((p) => `${p.name} ${p.durationMs} ms`).join(', ')}; pipeline ${wall} ms`;
}

function timed(file, args, options = {}) {
  const started = process.hrtime.bigint();
  const result = spawnSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.status}):\n${result.stderr}\n${result.stdout}`);
  return { elapsed, stdout: String(result.stdout) };
}

function git(dir, args) {
  return execFileSync('git', args, { cwd: dir, env: { ...process.env, ...GIT_ENV }, encoding: 'utf8' }).trim();
}

/** A Go module of `count` packages in a chain (each imports the next), a main importing the first, and a Dockerfile. */
function generateGoRepo(dir, count) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'go.mod'), 'module example.com/genrepo\n\ngo 1.19\n');
  for (let i = 0; i < count; i++) {
    const name = `p${String(i).padStart(3, '0')}`;
    const next = i + 1 < count ? `p${String(i + 1).padStart(3, '0')}` : undefined;
    mkdirSync(join(dir, 'pkg', name), { recursive: true });
    const body = [
      `package ${name}`,
      '',
      next ? `import "example.com/genrepo/pkg/${next}"` : 'import "strings"',
      '',
      `// Value of package ${name}.`,
      `func Value(n int) int {`,
      next ? `\treturn ${next}.Value(n+${i}) % 1000003` : '\treturn len(strings.Repeat("x", n%7)) + n',
      '}',
      '',
      ...Array.from({ length: 8 }, (_, j) => `func F${j}(s []int) int { t := 0; for _, v := range s { t += v * ${j + 1} }; return t }\n`),
    ];
    writeFileSync(join(dir, 'pkg', name, `${name}.go`), body.join('\n'));
  }
  writeFileSync(join(dir, 'main.go'), 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/genrepo/pkg/p000"\n)\n\nfunc main() { fmt.Println(p000.Value(1)) }\n');
  writeFileSync(join(dir, 'Dockerfile'), 'FROM scratch\nCOPY dist/genrepo /app\nENTRYPOINT ["/app"]\n');
  writeFileSync(join(dir, '.gitignore'), 'dist/\n');
}

/** Debian's docker-registry on a free port with its own storage. */
async function startRegistry(dir) {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = join(dir, 'registry.yml');
  writeFileSync(config, ['version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'registry-data')}`, 'http:', `  addr: ${host}`, ''].join('\n'));
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://${host}/v2/`)).ok) return { host, stop: () => child.kill('SIGTERM') };
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error('docker-registry did not start (apt-get install -y docker-registry)');
}

function daemon(args, env) {
  const child = spawn(executable, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  child.output = () => output;
  return child;
}

/**
 * test/helpers/git-http-server.mjs in a process of its own: the bench runs git, go and buildah
 * synchronously, which would block a server living on this process's event loop (a clone of it
 * would never finish). Repositories are added the way its addRepo does.
 */
async function startGitServerProcess(dir) {
  const serverRoot = join(dir, 'git-server');
  mkdirSync(serverRoot, { recursive: true });
  const module = pathToFileURL(join(root, 'test/helpers/git-http-server.mjs')).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `const { startGitServer } = await import(${JSON.stringify(module)}); const s = await startGitServer({ root: ${JSON.stringify(serverRoot)} }); console.log(s.port);`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`the git server exited (${code})`)));
  });
  const repoPath = (name) => join(serverRoot, `${name}.git`);
  return {
    port,
    url: (name) => `http://127.0.0.1:${port}/${name}.git`,
    repoPath,
    addRepo(name, fromDir) {
      mkdirSync(dirname(repoPath(name)), { recursive: true });
      execFileSync('git', ['clone', '--quiet', '--bare', fromDir, repoPath(name)], { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } });
      execFileSync('git', ['-C', repoPath(name), 'config', 'uploadpack.allowReachableSHA1InWant', 'true']);
    },
    stop: () => stopDaemon(child),
  };
}

/** Resolves once a worker has logged its start line (connected, consumer bound). */
async function started(child) {
  for (let i = 0; !child.output().includes('"msg":"oci-build worker started"'); i++) {
    if (i > 600 || child.exitCode !== null) throw new Error(`the worker did not start:\n${child.output().slice(-3000)}`);
    await sleep(50);
  }
}

async function stopDaemon(child) {
  child.stopped = true;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(20_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

export async function run() {
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-bench-rebuild-'));
  const { signWebhookBody } = await import(pathToFileURL(join(root, 'dist/server/webhook-signature.js')).href);
  const pushTemplate = JSON.parse(readFileSync(join(root, 'test/fixtures/github/push.json'), 'utf8'));
  const nats = await startNats();
  const gitServer = await startGitServerProcess(temp);
  const registry = await startRegistry(temp);
  const daemons = [];
  const lines = [];
  let ok = true;
  try {
    const port = await freePort();
    const serveUrl = `http://127.0.0.1:${port}`;
    const baseEnv = {
      ...process.env,
      CI: 'true',
      NO_COLOR: '1',
      OCI_BUILD_NATS_URL: nats.url,
      OCI_BUILD_SERVER_PORT: String(port),
      OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
      OCI_BUILD_SERVER_API_TOKENS: TOKEN,
      OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
      OCI_BUILD_IMAGE_REGISTRY: `${registry.host}/bench`,
      OCI_BUILD_IMAGE_PUSH: 'true',
      OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
      OCI_BUILD_IMAGE_STORAGE_DRIVER: 'vfs',
      OCI_BUILD_IMAGE_ISOLATION: 'chroot',
    };
    /** A machine of its own: work directory and image store. */
    const machine = (name) => ({
      ...baseEnv,
      OCI_BUILD_WORK_DIR: join(temp, name, 'work'),
      OCI_BUILD_IMAGE_ROOT: join(temp, name, 'storage'),
      OCI_BUILD_IMAGE_RUN_ROOT: join(temp, name, 'run'),
      OCI_BUILD_WORKER_NAME: name,
    });
    const serve = daemon(['serve'], machine('serve'));
    daemons.push(serve);
    for (let i = 0; !(await fetch(`${serveUrl}/health`).then((r) => r.ok, () => false)); i++) {
      if (i > 600 || serve.exitCode !== null) throw new Error(`serve did not answer /health:\n${serve.output().slice(-3000)}`);
      await sleep(100);
    }

    const api = async (path) => (await fetch(`${serveUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    const webhook = async (name, ref, commit) => {
      const payload = structuredClone(pushTemplate);
      Object.assign(payload, { ref, before: '0'.repeat(40), after: commit });
      Object.assign(payload.repository, { name, full_name: `acme/${name}`, clone_url: gitServer.url(`acme/${name}`), html_url: `http://127.0.0.1:${gitServer.port}/acme/${name}` });
      payload.head_commit.id = commit;
      const body = JSON.stringify(payload);
      const response = await fetch(`${serveUrl}/webhooks/github`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signWebhookBody(SECRET, body) },
        body,
      });
      if (response.status !== 202) throw new Error(`webhook answered ${response.status}: ${await response.text()}`);
      if (serve.exitCode !== null) throw new Error(`serve exited:\n${serve.output().slice(-3000)}`);
      return (await response.json()).jobId;
    };
    /** Throws with the daemons' last output when one of them died. */
    const alive = () => {
      const dead = daemons.find((d) => d.exitCode !== null && !d.stopped);
      if (dead) throw new Error(`a daemon exited (${dead.exitCode}):\n${dead.output().slice(-3000)}`);
    };
    const finished = async (id) => {
      const deadline = Date.now() + 300_000;
      for (;;) {
        alive();
        if (Date.now() > deadline) throw new Error(`build ${id} did not finish in 5 minutes`);
        const record = await api(`/builds/${id}`).catch(() => undefined);
        if (record && ['succeeded', 'failed', 'cancelled', 'skipped'].includes(record.status)) {
          if (record.status !== 'succeeded') throw new Error(`build ${id} ${record.status}: ${JSON.stringify(record.error)}`);
          return record;
        }
        await sleep(20);
      }
    };
    const timedBuild = async (name, ref, commit) => {
      const started = performance.now();
      const record = await finished(await webhook(name, ref, commit));
      return { record, elapsed: performance.now() - started };
    };

    const repos = [
      { name: 'sample-go-repo', make: (dir) => cpSync(join(root, 'fixtures/sample-go-repo'), dir, { recursive: true, filter: (src) => !/[\\/]dist$/.test(src) }) },
      { name: `gen-go-${GEN_PACKAGES}`, make: (dir) => generateGoRepo(dir, GEN_PACKAGES) },
    ];
    for (const { name, make } of repos) {
      const dir = join(temp, 'src', name);
      make(dir);
      git(dir, ['init', '-q', '-b', 'main']);
      git(dir, ['add', '-A']);
      git(dir, ['commit', '-q', '-m', 'bench']);
      const warmCommit = git(dir, ['rev-parse', 'HEAD']);
      // The commit measured: another tree than the warm-up's, so the warm-up does not make it a hit.
      writeFileSync(join(dir, 'NOTES'), 'measured commit\n');
      git(dir, ['add', '-A']);
      git(dir, ['commit', '-q', '-m', 'measured']);
      const commit = git(dir, ['rev-parse', 'HEAD']);
      const commitTime = git(dir, ['log', '-1', '--format=%ct']);
      gitServer.addRepo(`acme/${name}`, dir);
      const url = gitServer.url(`acme/${name}`);

      // ---- the raw tools: clone, go build with warm caches, buildah bud ----
      const rawDir = join(temp, 'raw', name);
      const goCaches = { GOCACHE: join(temp, 'raw-cache', 'go-build'), GOMODCACHE: join(temp, 'raw-cache', 'go-mod') };
      const storage = ['--root', join(temp, 'raw', 'storage'), '--runroot', join(temp, 'raw', 'run'), '--storage-driver', 'vfs'];
      const rawOnce = () => {
        rmSync(rawDir, { recursive: true, force: true });
        const clone = timed('git', ['clone', '-q', url, rawDir]).elapsed;
        const build = timed('go', ['build', '-trimpath', '-o', 'dist/', './...'], { cwd: rawDir, env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false', ...goCaches } }).elapsed;
        const bud = timed('buildah', [...storage, 'bud', '--isolation', 'chroot', '--layers=false', '--timestamp', commitTime, '-t', `${name}:raw`, '.'], { cwd: rawDir }).elapsed;
        return clone + build + bud;
      };
      rawOnce(); // warms the Go cache and the page cache
      const raw = [];
      for (let i = 0; i < RUNS; i++) raw.push(rawOnce());

      // ---- the same commit again in a fresh worktree: `oci-build build URL`, file index ----
      const local = machine(`local-${name}`);
      // NODE_EXTRA_CA_CERTS unset, as on a typical machine (it makes a Node process parse a whole
      // CA bundle at start: ~35 ms here; local-overhead prints both).
      const { NODE_EXTRA_CA_CERTS: _extraCa, ...localWithoutCa } = local;
      // Run from a directory of its own: this checkout's oci-build.config.yaml is not the build's.
      const cliBuild = (extra = []) => timed(executable, ['build', url, '--json', ...extra], { cwd: temp, env: { ...localWithoutCa, OCI_BUILD_IMAGE_PUSH: 'false', OCI_BUILD_IMAGE_REGISTRY: '' } });
      cliBuild(['--ref', warmCommit]); // warm caches (a miss: another tree)
      const firstLocal = cliBuild();
      const again = [];
      let againRecord;
      for (let i = 0; i < RUNS; i++) {
        const { elapsed, stdout } = cliBuild();
        againRecord = JSON.parse(stdout);
        if (!againRecord.images[0]?.reusedFrom) throw new Error(`${name}: the rebuild did not reuse`);
        again.push(elapsed);
      }
      const againRatio = median(again) / median(raw);

      // ---- worker A builds it, worker B builds it again ----
      const workerA = daemon(['worker'], machine(`a-${name}`));
      daemons.push(workerA);
      await timedBuild(name, 'refs/heads/warm', warmCommit); // A's caches warm, as a worker's are
      const first = await timedBuild(name, 'refs/heads/main', commit);
      await stopDaemon(workerA);
      const workerB = daemon(['worker'], machine(`b-${name}`));
      daemons.push(workerB);
      // Measured from the webhook to B's record, B already running (as a second worker is): its
      // own start is no part of the build. And B has worked before, as A had: the warm-up commit,
      // on a branch of its own (a reuse of A's build), so B's mirror holds the repository but not
      // the commit measured, and its code has run once (as a long-running worker's has).
      await started(workerB);
      const warmB = await timedBuild(name, 'refs/heads/warm-b', warmCommit);
      if (!warmB.record.images[0]?.reusedFrom) throw new Error(`${name}: worker B's warm-up did not reuse worker A's image`);
      // Another push of the commit (serve drops a replay of the same push): a branch made from it.
      const second = await timedBuild(name, 'refs/heads/release', commit);
      if (second.record.images[0]?.reusedFrom !== first.record.id) throw new Error(`${name}: worker B did not reuse worker A's image`);
      const acrossRatio = second.elapsed / first.elapsed;

      // ---- tag pushes on the built commit: webhook → the tag in the registry ----
      const repository = second.record.images[0].repository.slice(registry.host.length + 1);
      const tagLatencies = [];
      for (let i = 0; i < TAG_PUSHES; i++) {
        const tag = `v0.${i}.0`;
        git(dir, ['tag', tag, commit]);
        execFileSync('git', ['push', '-q', gitServer.repoPath(`acme/${name}`), `refs/tags/${tag}`], { cwd: dir, stdio: 'ignore' });
        const started = performance.now();
        const id = await webhook(name, `refs/tags/${tag}`, commit);
        const deadline = Date.now() + 60_000;
        for (;;) {
          alive();
          if (Date.now() > deadline) throw new Error(`the tag ${tag} did not reach the registry in a minute (build ${id})`);
          const response = await fetch(`http://${registry.host}/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
          if (response.ok) break;
          await sleep(10);
        }
        tagLatencies.push(performance.now() - started);
        const record = await finished(id);
        if (!record.images[0]?.reusedFrom) throw new Error(`${name}: the tag push did not reuse`);
      }
      await stopDaemon(workerB);
      const p50 = percentile(tagLatencies, 50);

      const met = againRatio <= 0.3 && acrossRatio <= 0.3 && p50 <= 1000;
      ok &&= met;
      lines.push(
        `${name}: raw tools (clone + go build + buildah bud, warm caches) median ${ms(median(raw))}; first oci-build build ${ms(firstLocal.elapsed)}`,
        `  same commit again, fresh worktree (NODE_EXTRA_CA_CERTS unset): median ${ms(median(again))} = ${againRatio.toFixed(2)}× raw (target ≤ 0.30); last: ${phasesOf(againRecord)}`,
        `  built by worker A ${ms(first.elapsed)} (${phasesOf(first.record)}), then by worker B ${ms(second.elapsed)} = ${acrossRatio.toFixed(2)}× (target ≤ 0.30; ${phasesOf(second.record)})`,
        `  tag push → tag in the registry: p50 ${ms(p50)}, max ${ms(Math.max(...tagLatencies))} over ${TAG_PUSHES} (target p50 ≤ 1000 ms)`,
      );
    }
  } finally {
    for (const child of daemons) await stopDaemon(child);
    registry.stop();
    await gitServer.stop();
    await nats.stop();
    rmSync(temp, { recursive: true, force: true });
  }
  return { name: 'rebuild', lines, ok };
}
