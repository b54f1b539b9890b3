// The language builders with the real toolchains (go 1.19, Maven 3.8 offline from the Debian
// repository, .NET 10, npm), on the fixtures turned into Git repositories, every command in the
// bubblewrap sandbox with its clean environment (as `oci-build build` and the worker run them).

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { checkToolchains, createCodeBuilder } from '../../src/build/code-builder.js';
import { CacheService } from '../../src/cache/cache-service.js';
import { CancelledError, ToolUnavailableError } from '../../src/core/errors.js';
import type { CodeBuilder, LogSink, LogStream, PhaseContext } from '../../src/core/ports.js';
import type { ProjectBuildOutcome, Workspace } from '../../src/core/types.js';
import { createProjectDetector } from '../../src/detect/detect-projects.js';
import { runCommand } from '../../src/exec/run-command.js';
import { createBuildRunner } from '../../src/exec/sandbox.js';
import { fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { hasTool } from '../helpers/toolchains.js';

class MemoryLog implements LogSink {
  readonly lines: string[] = [];
  write(line: string, _stream?: LogStream): void {
    this.lines.push(line);
  }
}

let work: TempDir;
let fakeHome: TempDir;
let cache: CacheService;
let builder: CodeBuilder;
const repos: FixtureRepo[] = [];
const originalHome = process.env.HOME;

beforeAll(async () => {
  work = await tempDir('oci-build-builders-');
  // The tools must not write into the user's home: point HOME at an empty directory and look at
  // it afterwards. (Test files run in their own process: this changes no other test's HOME.)
  fakeHome = await tempDir('oci-build-home-');
  process.env.HOME = fakeHome.path;
  cache = new CacheService(join(work.path, 'cache'));
  // The work directory is hidden but for the tree and its caches, HOME entirely.
  builder = createCodeBuilder({ run: createBuildRunner({ mode: 'bubblewrap', hide: [work.path, fakeHome.path] }), cache, killGraceMs: 2_000 });
});

afterAll(async () => {
  process.env.HOME = originalHome;
  for (const repo of repos) await repo.cleanup();
  await work?.cleanup();
  await fakeHome?.cleanup();
});

async function checkout(name: string): Promise<FixtureRepo> {
  const repo = await fixtureRepo(name);
  repos.push(repo);
  return repo;
}

async function detectAndBuild(
  dir: string,
  name: string,
  options: { overrides?: Record<string, { command?: string[] }>; signal?: AbortSignal; using?: CodeBuilder } = {},
): Promise<{ workspace: Workspace; outcomes: ProjectBuildOutcome[]; log: MemoryLog }> {
  const log = new MemoryLog();
  const ctx: PhaseContext = { signal: options.signal ?? new AbortController().signal, log };
  const workspace = await createProjectDetector({ overrides: options.overrides ?? {} }).detect(dir, { name }, ctx);
  const outcomes = await (options.using ?? builder).build(workspace, ctx);
  return { workspace, outcomes, log };
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name)).sort();
}

describe('Go', () => {
  test('sample-go-repo builds a static binary into dist/ that prints its greeting', async () => {
    const repo = await checkout('sample-go-repo');
    const { outcomes, log } = await detectAndBuild(repo.dir, 'sample-go-repo');
    expect(outcomes).toEqual([expect.objectContaining({ project: 'sample-go-repo', status: 'succeeded' })]);
    expect(log.lines).toContain('$ go build -trimpath -o dist/ ./...');
    const binary = join(repo.dir, 'dist', 'sample-go-repo');
    const run = await runCommand(binary, []);
    expect(run.stdout).toBe('Hello from sample-go-repo\n');
    // CGO_ENABLED=0: a static binary, runnable FROM scratch.
    const file = await runCommand('go', ['version', '-m', binary]);
    expect(file.stdout).toContain('CGO_ENABLED=0');
    // The build cache is the service's, not ~/.cache/go-build.
    expect((await filesUnder(cache.path('go-build'))).length).toBeGreaterThan(0);
  });

  test('no-dockerfile-repo builds (the missing Dockerfile is the image phase\'s business)', async () => {
    const repo = await checkout('no-dockerfile-repo');
    const { workspace, outcomes } = await detectAndBuild(repo.dir, 'no-dockerfile-repo');
    expect(workspace.projects[0]!.dockerfile).toBeUndefined();
    expect(outcomes[0]!.status).toBe('succeeded');
    expect(existsSync(join(repo.dir, 'dist', 'no-dockerfile-repo'))).toBe(true);
  });

  test('broken-go-repo is a failed outcome (not a throw) whose error carries the compiler\'s message', async () => {
    const repo = await checkout('broken-go-repo');
    const { outcomes, log } = await detectAndBuild(repo.dir, 'broken-go-repo');
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.status).toBe('failed');
    expect(outcomes[0]!.error).toMatch(/^go build -trimpath -o dist\/ \.\/\.\.\. failed with exit code \d+/);
    expect(outcomes[0]!.error).toContain('undefined: greeting');
    expect(outcomes[0]!.error).toContain('main.go:6');
    expect(log.lines.some((l) => l.includes('undefined: greeting'))).toBe(true);
    expect(existsSync(join(repo.dir, 'dist', 'broken-go-repo'))).toBe(false);
  });

  test('a per-project build command replaces the default one', async () => {
    const repo = await checkout('sample-go-repo');
    const { outcomes, log } = await detectAndBuild(repo.dir, 'sample-go-repo', {
      overrides: { 'sample-go-repo': { command: ['go', 'build', '-o', 'dist/custom-name', '.'] } },
    });
    expect(outcomes[0]!.status).toBe('succeeded');
    expect(log.lines).toContain('$ go build -o dist/custom-name .');
    expect(log.lines).not.toContain('$ go build -trimpath -o dist/ ./...');
    expect(await readdir(join(repo.dir, 'dist'))).toEqual(['custom-name']);
  });

  test('a build command whose tool is missing throws ToolUnavailableError (exit 3), not a failed outcome', async () => {
    const repo = await checkout('no-dockerfile-repo');
    const err = await detectAndBuild(repo.dir, 'no-dockerfile-repo', { overrides: { '.': { command: ['oci-build-missing-tool', 'build'] } } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolUnavailableError);
  });
});

describe('Java (Maven)', () => {
  let firstRepoFiles: string[];

  test('sample-java-repo builds target/*.jar offline, from the seeded cache', async () => {
    const repo = await checkout('sample-java-repo');
    const { outcomes, log } = await detectAndBuild(repo.dir, 'sample-java-repo');
    expect(outcomes[0], log.lines.slice(-30).join('\n')).toMatchObject({ status: 'succeeded' });
    expect(existsSync(join(repo.dir, 'target', 'sample-java-repo-1.0.0.jar'))).toBe(true);
    expect(cache.mavenOffline).toBe(true);
    expect(log.lines.find((l) => l.startsWith('$ mvn'))).toContain(' -o');
    // The cache holds the seed's plugins (links followed: real files).
    firstRepoFiles = await filesUnder(cache.path('maven'));
    expect(firstRepoFiles.some((f) => /maven-compiler-plugin-3\.10\.1\.jar$/.test(f))).toBe(true);
    // Maven's local repository is the cache, not ~/.m2.
    expect(existsSync(join(fakeHome.path, '.m2'))).toBe(false);
  });

  test('a second build reuses the cache: succeeds offline and downloads nothing', async () => {
    const repo = await checkout('sample-java-repo');
    const { outcomes, log } = await detectAndBuild(repo.dir, 'sample-java-repo');
    expect(outcomes[0]!.status).toBe('succeeded');
    expect(log.lines.some((l) => /Download(ing|ed) from/.test(l))).toBe(false);
    const after = await filesUnder(cache.path('maven'));
    // Only Maven's own bookkeeping (resolver status files) may change; no new artifact.
    const artifacts = (files: string[]) => files.filter((f) => /\.(jar|pom)$/.test(f));
    expect(artifacts(after)).toEqual(artifacts(firstRepoFiles));
  });

  test('Maven started with only the cache environment (as an Nx target would) is offline and uses the cache', async () => {
    const repo = await checkout('sample-java-repo');
    // A plugin version nobody has: an offline Maven says so at once, an online one tries Central.
    const pom = join(repo.dir, 'pom.xml');
    await writeFile(pom, (await readFile(pom, 'utf8')).replace('<version>3.3.0</version>', '<version>9.9.9</version>'));
    const { outcomes } = await detectAndBuild(repo.dir, 'sample-java-repo', { overrides: { '.': { command: ['mvn', '-B', 'package', '-DskipTests'] } } });
    expect(outcomes[0]!.status).toBe('failed');
    expect(outcomes[0]!.error).toContain('offline mode');
    expect(outcomes[0]!.error).toContain('9.9.9');

    const fresh = await checkout('sample-java-repo');
    const ok = await detectAndBuild(fresh.dir, 'sample-java-repo', { overrides: { '.': { command: ['mvn', '-B', 'package', '-DskipTests'] } } });
    expect(ok.outcomes[0]!.status).toBe('succeeded');
    expect(existsSync(join(fresh.dir, 'target', 'sample-java-repo-1.0.0.jar'))).toBe(true);
  });

  test('a compile error is a failed outcome with javac\'s message, not Maven\'s boilerplate', async () => {
    const repo = await checkout('sample-java-repo');
    const app = join(repo.dir, 'src/main/java/dev/ocibuild/sample/App.java');
    await writeFile(app, (await readFile(app, 'utf8')).replace('System.out.println("Hello', 'System.out.println(undefinedVar + "Hello'));
    const { outcomes } = await detectAndBuild(repo.dir, 'sample-java-repo');
    expect(outcomes[0]!.status).toBe('failed');
    expect(outcomes[0]!.error).toContain('cannot find symbol');
    expect(outcomes[0]!.error).toContain('undefinedVar');
    expect(outcomes[0]!.error).not.toContain('Re-run Maven');
  });

  test('cancelling a running build throws CancelledError and leaves no Maven JVM behind', async () => {
    const repo = await checkout('sample-java-repo');
    const controller = new AbortController();
    const log = new MemoryLog();
    const ctx: PhaseContext = { signal: controller.signal, log };
    const workspace = await createProjectDetector({ overrides: {} }).detect(repo.dir, { name: 'sample-java-repo' }, ctx);
    const running = builder.build(workspace, ctx);
    // Abort once the JVM is up and talking.
    await expect.poll(() => log.lines.some((l) => l.includes('Scanning for projects')), { timeout: 60_000 }).toBe(true);
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    const ps = await runCommand('ps', ['-eo', 'args=']);
    expect(ps.stdout.split('\n').filter((l) => l.includes('plexus-classworlds') && l.includes(repo.dir))).toEqual([]);
  });
});

describe('.NET', () => {
  test.skipIf(!hasTool('dotnet'))('sample-dotnet-repo publishes into dist/, twice in a row, without writing into HOME', async () => {
    const repo = await checkout('sample-dotnet-repo');
    const first = await detectAndBuild(repo.dir, 'sample-dotnet-repo');
    expect(first.outcomes[0], first.log.lines.slice(-30).join('\n')).toMatchObject({ status: 'succeeded' });
    expect(first.log.lines).toContain('$ dotnet publish -c Release -o dist');
    expect(existsSync(join(repo.dir, 'dist', 'sample-dotnet-repo.dll'))).toBe(true);
    const second = await detectAndBuild(repo.dir, 'sample-dotnet-repo');
    expect(second.outcomes[0]!.status).toBe('succeeded');
    const run = await runCommand('dotnet', [join(repo.dir, 'dist', 'sample-dotnet-repo.dll')]);
    expect(run.stdout.trim()).toBe('Hello from sample-dotnet-repo');
    // No MSBuild node or compiler server outlives the build.
    const ps = await runCommand('ps', ['-eo', 'args=']);
    expect(ps.stdout.split('\n').filter((l) => /MSBuild\.dll|VBCSCompiler/.test(l) && !l.includes('ps -eo'))).toEqual([]);
  });
});

describe('Node', () => {
  test('npm ci then npm run build, with the npm cache wired in', async () => {
    const dir = join(work.path, 'node-app');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'node-app', version: '1.0.0', private: true, scripts: { build: 'node -e "require(\'fs\').mkdirSync(\'dist\',{recursive:true});require(\'fs\').writeFileSync(\'dist/out.txt\', process.env.npm_config_cache)"' } }),
    );
    await writeFile(
      join(dir, 'package-lock.json'),
      JSON.stringify({ name: 'node-app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'node-app', version: '1.0.0' } } }),
    );
    const { outcomes, log } = await detectAndBuild(dir, 'node-app');
    expect(outcomes[0], log.lines.join('\n')).toMatchObject({ status: 'succeeded' });
    expect(log.lines).toContain('$ npm ci');
    expect(log.lines).toContain('$ npm run build --if-present');
    expect(await readFile(join(dir, 'dist', 'out.txt'), 'utf8')).toBe(cache.path('npm'));
  });
});

describe('checkToolchains', () => {
  test('reports every toolchain with its version', async () => {
    const checks = await checkToolchains(runCommand);
    expect(checks.map((c) => c.name)).toEqual(['go', 'mvn', 'java', 'dotnet', 'npm']);
    for (const check of checks) {
      expect(check.ok, check.name).toBe(true);
      expect(check.version, check.name).toMatch(/^\d+\.\d+/);
    }
  });

  test('a missing tool is reported with a fix, not thrown', async () => {
    const checks = await checkToolchains((file, args, options) => runCommand(file === 'go' ? 'oci-build-no-go' : file, args, options));
    const go = checks.find((c) => c.name === 'go')!;
    expect(go.ok).toBe(false);
    expect(go.fix).toContain('golang-go');
  });
});

describe('the user\'s home', () => {
  // Last in the file: every build above ran with HOME pointing here.
  test('no build wrote into HOME (caches, settings and tool homes are under the cache root)', async () => {
    expect(await filesUnder(fakeHome.path)).toEqual([]);
  });
});
