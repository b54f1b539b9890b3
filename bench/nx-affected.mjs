// Benchmark nx-affected: in fixtures/sample-nx-monorepo, one app (go-app) changed. Times through
// runPipeline with the real Nx detector and builder (images left out: a stand-in image builder):
//   full build       every project built by its toolchain (Nx cache empty, toolchain caches warm)
//   affected build   --affected --base <previous commit>: only go-app
//   unchanged build  the same commit again in a fresh directory: every task from the Nx cache
// Expected: affected ≈ one app's build + Nx's own start; unchanged does no toolchain work.
// Needs `npm run build` first (imports ../dist).

import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CacheService } from '../dist/cache/cache-service.js';
import { runPipeline } from '../dist/core/pipeline.js';
import { createNxBuilder } from '../dist/build/nx-builder.js';
import { createNxDetector } from '../dist/detect/nx-detector.js';
import { runCommand } from '../dist/exec/run-command.js';
import { createSourceProvider } from '../dist/git/source-provider.js';

const FIXTURE = resolve(import.meta.dirname, '../fixtures/sample-nx-monorepo');
const OUTPUTS = /[\\/](node_modules|dist|target|bin|obj|\.nx)$/;

function git(dir, args) {
  const date = '2026-01-01T00:00:00Z';
  return execFileSync('git', ['-c', 'init.defaultBranch=main', '-c', 'commit.gpgsign=false', ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'bench',
      GIT_AUTHOR_EMAIL: 'bench@oci-build.invalid',
      GIT_COMMITTER_NAME: 'bench',
      GIT_COMMITTER_EMAIL: 'bench@oci-build.invalid',
      GIT_AUTHOR_DATE: date,
      GIT_COMMITTER_DATE: date,
      GIT_CONFIG_NOSYSTEM: '1',
    },
  }).trim();
}

const fakeImages = { build: async (spec) => ({ imageId: `bench-${spec.project}` }), push: async () => ({ digest: 'sha256:bench' }) };
const memoryStore = () => {
  const records = new Map();
  return { put: async (r) => void records.set(r.id, r), get: async (id) => records.get(id), list: async () => [...records.values()] };
};
const quietReporter = { phaseStarted() {}, phaseEnded() {}, warn() {} };

export async function run() {
  const lines = [];
  const work = await mkdtemp(join(tmpdir(), 'oci-build-bench-nx-'));
  try {
    const cache = new CacheService(join(work, 'cache'));
    const logs = new Map();
    const deps = {
      source: createSourceProvider({ workDir: join(work, 'work'), git: { depth: 1, retries: 0, retryDelayMs: 0, retryMaxDelayMs: 0 } }),
      detector: createNxDetector({ run: runCommand, cache }),
      builder: createNxBuilder({ run: runCommand, cache }),
      images: fakeImages,
      store: memoryStore(),
      reporter: quietReporter,
      logs: {
        open: async (id) => {
          const buffer = [];
          logs.set(id, buffer);
          return { write: (line) => void buffer.push(line), close: async () => {} };
        },
      },
    };
    let n = 0;
    const build = async (dir, extra = {}) => {
      const id = `bench-${++n}`;
      const t0 = performance.now();
      const { record, error } = await runPipeline(
        { id, trigger: 'cli', source: { kind: 'local', path: dir }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: new Date().toISOString(), ...extra },
        deps,
      );
      const ms = performance.now() - t0;
      if (error) throw new Error(`bench build ${id} failed: ${error.message}\n${(logs.get(id) ?? []).slice(-30).join('\n')}`);
      const builds = record.phases.filter((p) => p.name === 'build');
      const detect = record.phases.find((p) => p.name === 'detect')?.durationMs ?? 0;
      return {
        ms,
        detect,
        tasks: builds.length ? Math.max(...builds.map((p) => Date.parse(p.startedAt) + p.durationMs)) - Math.min(...builds.map((p) => Date.parse(p.startedAt))) : 0,
        built: builds.map((p) => p.project).sort(),
        cached: builds.filter((p) => p.cached).map((p) => p.project).sort(),
      };
    };
    const repoAt = async (name) => {
      const dir = join(work, name);
      await cp(FIXTURE, dir, { recursive: true, filter: (src) => !OUTPUTS.test(src) });
      git(dir, ['init', '-q', '-b', 'main']);
      git(dir, ['add', '-A']);
      git(dir, ['commit', '-q', '-m', 'initial commit']);
      return dir;
    };
    const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
    const describe = (r) => `${s(r.ms)} (detect ${s(r.detect)}, Nx tasks ${s(r.tasks)}; built ${r.built.join(', ') || 'nothing'}; from the Nx cache: ${r.cached.join(', ') || 'none'})`;

    // Setup: npm ci and a first build warm the npm and toolchain caches (Go build cache, NuGet, Maven).
    const repo = await repoAt('repo');
    const first = await build(repo);
    lines.push(`setup: npm ci + first build with every cache cold: ${s(first.ms)}`);
    // Empty Nx cache (outputs and its database), toolchain caches kept.
    await rm(cache.path('nx'), { recursive: true, force: true });
    for (const out of ['apps/go-app/dist', 'apps/cli-tool/dist', 'apps/dotnet-app/dist', 'apps/java-app/target']) await rm(join(repo, out), { recursive: true, force: true });

    const full = await build(repo);
    lines.push(`full build: ${describe(full)}`);

    const base = git(repo, ['rev-parse', 'HEAD']);
    const main = join(repo, 'apps/go-app/main.go');
    await writeFile(main, (await readFile(main, 'utf8')).replace('"go-app"', '"go-app (bench change)"'));
    git(repo, ['commit', '-q', '-am', 'change go-app']);
    const affected = await build(repo, { affectedBase: base });
    lines.push(`affected build (go-app changed): ${describe(affected)}`);

    // The same commit in a fresh directory, as a worker's new worktree (node_modules copied: no npm ci).
    const again = join(work, 'again');
    git(work, ['clone', '-q', repo, again]);
    await cp(join(repo, 'node_modules'), join(again, 'node_modules'), { recursive: true, verbatimSymlinks: true });
    const unchanged = await build(again);
    lines.push(`unchanged rebuild (same commit, fresh directory): ${describe(unchanged)}`);
    // What a worker's fresh worktree pays on top: no node_modules, so npm ci (warm npm cache).
    const bare = join(work, 'bare');
    git(work, ['clone', '-q', repo, bare]);
    const unchangedBare = await build(bare);
    lines.push(`unchanged rebuild, fresh directory without node_modules (npm ci in detect): ${describe(unchangedBare)}`);

    const everything = ['cli-tool', 'dotnet-app', 'go-app', 'java-app', 'shared'];
    const checks = [
      [full.built.join() === everything.join() && full.cached.length === 0, 'full build built every app by its toolchain'],
      [affected.built.join() === 'go-app' && affected.cached.length === 0, 'affected build built only go-app'],
      [unchanged.built.join() === everything.join() && unchanged.cached.join() === everything.join(), 'unchanged rebuild came entirely from the Nx cache'],
      [unchangedBare.cached.join() === everything.join(), 'unchanged rebuild after npm ci came entirely from the Nx cache'],
      [affected.ms < full.ms, 'affected build faster than the full build'],
    ];
    for (const [ok, what] of checks) lines.push(`${ok ? 'ok' : 'NOT OK'}: ${what}`);
    lines.push(`affected/full: ${(affected.ms / full.ms).toFixed(2)}, unchanged/full: ${(unchanged.ms / full.ms).toFixed(2)}`);
    return { name: 'nx-affected', lines, ok: checks.every(([ok]) => ok) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await run();
  console.log(`${result.name}: ${result.ok ? 'ok' : 'NOT OK'}`);
  for (const line of result.lines) console.log(`  ${line}`);
  process.exitCode = result.ok ? 0 : 1;
}
