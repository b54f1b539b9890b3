// The Nx detector and builder against a fake Nx: a temp workspace tree (nx.json, project roots, a
// stand-in nx.js) and a CommandRunner answering the Nx and npm commands they run, recording them.
// The real Nx is exercised by test/integration/nx-monorepo.test.ts.

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NxCacheAccess } from '../../src/build/nx-cli.js';
import { createNxBuilder } from '../../src/build/nx-builder.js';
import { BuildFailedError, CancelledError, CommandFailedError, InputError, ServiceUnavailableError } from '../../src/core/errors.js';
import type { DetectOptions, LogSink, PhaseContext } from '../../src/core/ports.js';
import type { Workspace } from '../../src/core/types.js';
import { createNxDetector } from '../../src/detect/nx-detector.js';
import type { CommandRunner, RunOptions, RunResult } from '../../src/exec/run-command.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
/** Every fake workspace made, removed after each test. */
const created: TempDir[] = [];

interface FakeProject {
  name: string;
  root: string;
  targets: string[];
  /** Files written under the root (marker files, Dockerfile). */
  files?: Record<string, string>;
}

interface Call {
  file: string;
  args: string[];
  options: RunOptions;
}

interface RunManyAnswer {
  exitCode?: number;
  /** Written as the NX_PROFILE file; omitted: no profile. */
  profile?: Array<{ taskId: string; status: string; startMs?: number; durationMs?: number }>;
  output?: string[];
}

interface FakeNx {
  dir: string;
  calls: Call[];
  run: CommandRunner;
  cache: NxCacheAccess & { prepared: Array<readonly string[] | undefined> };
  affected: string[];
  runMany: RunManyAnswer;
  graphFails?: boolean;
  tmp: TempDir;
}

async function fakeNxWorkspace(projects: FakeProject[], options: { installed?: boolean; lockfile?: boolean; nxJson?: boolean } = {}): Promise<FakeNx> {
  const tmp = await tempDir('oci-build-nx-unit-');
  created.push(tmp);
  const dir = join(tmp.path, 'ws');
  const write = async (path: string, text: string) => {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  };
  if (options.nxJson !== false) await write('nx.json', '{}');
  await write('package.json', '{"private":true}');
  if (options.lockfile !== false) await write('package-lock.json', '{}');
  const installNx = async () => {
    await write('node_modules/nx/package.json', JSON.stringify({ name: 'nx', bin: { nx: './dist/bin/nx.js' } }));
    await write('node_modules/nx/dist/bin/nx.js', '// stand-in');
  };
  if (options.installed !== false) await installNx();
  for (const p of projects) {
    await mkdir(join(dir, p.root), { recursive: true });
    for (const [name, text] of Object.entries(p.files ?? {})) await write(join(p.root, name), text);
  }

  const fake: FakeNx = {
    dir,
    calls: [],
    affected: [],
    runMany: { exitCode: 0, profile: [] },
    tmp,
    cache: {
      prepared: [],
      path: (kind) => join(tmp.path, 'cache', kind),
      prepare: async (kinds) => {
        fake.cache.prepared.push(kinds);
      },
      toolEnv: () => ({ GOCACHE: join(tmp.path, 'cache', 'go-build'), NX_CACHE_DIRECTORY: join(tmp.path, 'cache', 'nx') }),
    },
    run: async (file, args, runOptions = {}): Promise<RunResult> => {
      fake.calls.push({ file, args: [...args], options: runOptions });
      const ok = (stdout = '', exitCode = 0): RunResult => ({ exitCode, stdout, stderr: '', durationMs: 1 });
      if (file === 'npm') {
        await installNx();
        return ok();
      }
      const [, command, ...rest] = args;
      if (command === 'graph') {
        if (fake.graphFails) throw new CommandFailedError('nx graph exited with code 1:\nCannot find project.json', 'nx graph', 1);
        const out = rest.find((a) => a.startsWith('--file='))!.slice('--file='.length);
        const nodes = Object.fromEntries(
          projects.map((p) => [p.name, { name: p.name, type: 'app', data: { root: p.root, targets: Object.fromEntries(p.targets.map((t) => [t, {}])) } }]),
        );
        await writeFile(out, JSON.stringify({ graph: { nodes, dependencies: {} } }));
        return ok();
      }
      if (command === 'show') return ok(`${JSON.stringify(fake.affected)}\n`);
      if (command === 'run-many') {
        const answer = fake.runMany;
        for (const line of answer.output ?? []) runOptions.log?.write(line, 'stdout');
        const profilePath = runOptions.env?.NX_PROFILE;
        if (answer.profile && profilePath) {
          await writeFile(
            join(runOptions.cwd!, profilePath),
            JSON.stringify(
              answer.profile.map((t) => ({
                name: t.taskId,
                ph: 'X',
                ts: (t.startMs ?? 1_700_000_000_000) * 1000,
                dur: (t.durationMs ?? 1000) * 1000,
                args: { target: { project: t.taskId.split(':')[0], target: t.taskId.split(':')[1] }, status: t.status },
              })),
            ),
          );
        }
        const exitCode = answer.exitCode ?? 0;
        if (!(runOptions.okExitCodes ?? [0]).includes(exitCode)) throw new CommandFailedError(`nx run-many exited with code ${exitCode}`, 'nx run-many', exitCode);
        return ok('', exitCode);
      }
      throw new Error(`unexpected command ${file} ${args.join(' ')}`);
    },
  };
  return fake;
}

function captureCtx(): PhaseContext & { lines: string[] } {
  const lines: string[] = [];
  const log: LogSink = { write: (line) => void lines.push(line) };
  return { signal: new AbortController().signal, log, lines };
}

/** The Nx subcommands run, e.g. ['graph', 'show', 'run-many']. */
function nxCommands(fake: FakeNx): string[] {
  return fake.calls.map((c) => (c.file === 'npm' ? `npm ${c.args[0]}` : c.args[1]!));
}

const PROJECTS: FakeProject[] = [
  { name: 'go-app', root: 'apps/go-app', targets: ['build'], files: { 'go.mod': 'module x\n', Dockerfile: 'FROM scratch\n' } },
  { name: 'java-app', root: 'apps/java-app', targets: ['build', 'test'], files: { 'pom.xml': '<project/>', Containerfile: 'FROM scratch\n' } },
  { name: 'dotnet-app', root: 'apps/dotnet-app', targets: ['build'], files: { 'app.csproj': '<Project/>' } },
  { name: 'shared', root: 'libs/shared', targets: ['vet'], files: { 'go.mod': 'module s\n' } },
];

let fake: FakeNx | undefined;
afterEach(async () => {
  for (const tmp of created.splice(0)) await tmp.cleanup();
  fake = undefined;
});

async function detect(options: Partial<DetectOptions> = {}, setup: Parameters<typeof fakeNxWorkspace>[1] = {}) {
  fake = await fakeNxWorkspace(PROJECTS, setup);
  const ctx = captureCtx();
  const detector = createNxDetector({ run: fake.run, cache: fake.cache });
  const workspace = await detector.detect(fake.dir, { name: 'mono', ...options }, ctx);
  return { workspace, ctx, fake };
}

describe('createNxDetector', () => {
  it('takes projects and roots from the Nx graph, selects those with a build target, adds language and Dockerfile', async () => {
    const { workspace, fake } = await detect();
    expect(workspace.kind).toBe('nx');
    expect(workspace.dir).toBe(fake.dir);
    expect(workspace.name).toBe('mono');
    expect(workspace.projects.map((p) => [p.name, p.root, p.language])).toEqual([
      ['dotnet-app', 'apps/dotnet-app', 'dotnet'],
      ['go-app', 'apps/go-app', 'go'],
      ['java-app', 'apps/java-app', 'java'],
      ['shared', 'libs/shared', 'go'],
    ]);
    expect(workspace.selected).toEqual(['dotnet-app', 'go-app', 'java-app']);
    const byName = Object.fromEntries(workspace.projects.map((p) => [p.name, p]));
    expect(byName['go-app']!.dockerfile).toBe(join(fake.dir, 'apps/go-app/Dockerfile'));
    expect(byName['java-app']!.dockerfile).toBe(join(fake.dir, 'apps/java-app/Containerfile'));
    expect(byName['dotnet-app']!.dockerfile).toBeUndefined();
    expect(byName['dotnet-app']!.dockerfileCandidates).toEqual([join(fake.dir, 'apps/dotnet-app/Dockerfile'), join(fake.dir, 'apps/dotnet-app/Containerfile')]);
    expect(workspace.selectionNote).toMatch(/3 of 4 projects have a build target/);
    // One Nx run, with the Nx environment
    expect(nxCommands(fake)).toEqual(['graph']);
    const call = fake.calls[0]!;
    expect(call.file).toBe(process.execPath);
    expect(call.args[0]).toBe(join(fake.dir, 'node_modules/nx/dist/bin/nx.js'));
    expect(call.options.cwd).toBe(fake.dir);
    expect(call.options.env).toMatchObject({ NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_CACHE_DIRECTORY: fake.cache.path('nx') });
    expect(call.options.env!.NX_WORKSPACE_DATA_DIRECTORY).toBe(join(fake.cache.path('nx'), 'workspace-data', 'mono'));
  });

  it('refuses a directory without nx.json', async () => {
    await expect(detect({}, { nxJson: false })).rejects.toThrow(/no nx\.json/);
  });

  it('installs with npm ci (npm cache of the cache service) when Nx is not in node_modules', async () => {
    const { fake } = await detect({}, { installed: false });
    expect(nxCommands(fake)).toEqual(['npm ci', 'graph']);
    const npm = fake.calls[0]!;
    expect(npm.options.cwd).toBe(fake.dir);
    expect(npm.options.env!.npm_config_cache).toBe(fake.cache.path('npm'));
  });

  it('npm ci failing: transient when the registry is unreachable, a build failure otherwise', async () => {
    for (const [output, type, retry] of [
      ['npm error code EAI_AGAIN\nnpm error request to https://registry.npmjs.org/nx failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org', ServiceUnavailableError, true],
      ['npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.', BuildFailedError, false],
    ] as const) {
      const f = await fakeNxWorkspace(PROJECTS, { installed: false });
      const run: CommandRunner = async (file, args, options) => {
        if (file === 'npm') throw new CommandFailedError(`npm ci exited with code 1:\n${output}`, 'npm ci', 1);
        return f.run(file, args, options);
      };
      const error = await createNxDetector({ run, cache: f.cache })
        .detect(f.dir, { name: 'mono' }, captureCtx())
        .catch((e: unknown) => e);
      await f.tmp.cleanup();
      expect(error).toBeInstanceOf(type);
      expect((error as BuildFailedError).transient).toBe(retry);
      expect((error as Error).message).toContain(output.split('\n')[0]);
    }
  });

  it('without node_modules and without package-lock.json: an input error saying to commit one, nothing run', async () => {
    const error = await detect({}, { installed: false, lockfile: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).message).toMatch(/no package-lock\.json/);
    expect((error as InputError).hint).toMatch(/commit package-lock\.json/);
    expect(fake!.calls).toEqual([]);
  });

  it('--project: only the named projects; an unknown name is an input error listing every project', async () => {
    const { workspace } = await detect({ projects: ['java-app'] });
    expect(workspace.selected).toEqual(['java-app']);

    const error = await detect({ projects: ['go-app', 'nope'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toBe('Unknown Nx project "nope": the workspace\'s projects are "dotnet-app", "go-app", "java-app", "shared"');
  });

  it('--project of a project without a build target is an input error naming its targets', async () => {
    await expect(detect({ projects: ['shared'] })).rejects.toThrow(/shared \(targets: vet\) has no build target/);
  });

  it('affected: asks Nx with the changed files on stdin and builds the affected projects with a build target', async () => {
    fake = undefined;
    const files = ['libs/shared/greeting.go', 'apps/go-app/a file, with comma.go'];
    const run = async () => {
      const f = await fakeNxWorkspace(PROJECTS);
      f.affected = ['shared', 'go-app'];
      fake = f;
      const ctx = captureCtx();
      const workspace = await createNxDetector({ run: f.run, cache: f.cache }).detect(f.dir, { name: 'mono', affected: { base: 'abcdef1234567', changedFiles: async () => files } }, ctx);
      return { workspace, f };
    };
    const { workspace, f } = await run();
    expect(workspace.selected).toEqual(['go-app']);
    expect(workspace.selectionNote).toMatch(/2 files changed since abcdef1, 2 projects affected \(shared, go-app\); building 1 of 3/);
    const show = f.calls.find((c) => c.args[1] === 'show')!;
    expect(show.args.slice(1)).toEqual(['show', 'projects', '--affected', '--stdin', '--json']);
    expect(show.options.input).toBe(`${files.join('\n')}\n`);
  });

  it('affected with no changed file builds nothing, without asking Nx', async () => {
    const { workspace, fake } = await detect({ affected: { base: 'abc', changedFiles: async () => [] } });
    expect(workspace.selected).toEqual([]);
    expect(nxCommands(fake)).toEqual(['graph']);
  });

  it('affected with an unknown base builds every project and says why', async () => {
    const { workspace, fake } = await detect({ affected: { base: '0'.repeat(40), changedFiles: async () => undefined } });
    expect(workspace.selected).toEqual(['dotnet-app', 'go-app', 'java-app']);
    expect(workspace.selectionNote).toMatch(/base 0000000 not found/);
    expect(nxCommands(fake)).toEqual(['graph']);
  });

  it('--project and affected intersect', async () => {
    fake = await fakeNxWorkspace(PROJECTS);
    fake.affected = ['java-app', 'go-app'];
    const workspace = await createNxDetector({ run: fake.run, cache: fake.cache }).detect(
      fake.dir,
      { name: 'mono', projects: ['go-app', 'dotnet-app'], affected: { base: 'abc', changedFiles: async () => ['x'] } },
      captureCtx(),
    );
    expect(workspace.selected).toEqual(['go-app']);
  });

  it('a graph Nx cannot compute fails detection with a build error that says what to run', async () => {
    fake = await fakeNxWorkspace(PROJECTS);
    fake.graphFails = true;
    const error = await createNxDetector({ run: fake.run, cache: fake.cache })
      .detect(fake.dir, { name: 'mono' }, captureCtx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BuildFailedError);
    expect((error as BuildFailedError).message).toMatch(/Nx could not compute the project graph.*Cannot find project\.json/s);
  });

  it('an invalid Dockerfile of a selected project fails detection; one of an unselected project does not', async () => {
    const projects: FakeProject[] = [
      { name: 'a', root: 'apps/a', targets: ['build'], files: { Dockerfile: 'RUN echo no FROM\n' } },
      { name: 'b', root: 'apps/b', targets: ['build'], files: { Dockerfile: 'FROM scratch\n' } },
    ];
    fake = await fakeNxWorkspace(projects);
    const detector = createNxDetector({ run: fake.run, cache: fake.cache });
    await expect(detector.detect(fake.dir, { name: 'mono' }, captureCtx())).rejects.toThrow(/first instruction must be FROM/);
    const workspace = await detector.detect(fake.dir, { name: 'mono', projects: ['b'] }, captureCtx());
    expect(workspace.selected).toEqual(['b']);
  });
});

// ---- the builder ----

const BUILD_PROJECTS: FakeProject[] = [
  { name: 'go-app', root: 'apps/go-app', targets: ['build'] },
  { name: 'java-app', root: 'apps/java-app', targets: ['build'] },
  { name: 'dotnet-app', root: 'apps/dotnet-app', targets: ['build'] },
];

function nxWorkspace(f: FakeNx, selected = ['go-app', 'java-app', 'dotnet-app']): Workspace {
  return {
    kind: 'nx',
    dir: f.dir,
    name: 'mono',
    projects: BUILD_PROJECTS.map((p) => ({ name: p.name, root: p.root, dockerfileCandidates: [] })),
    selected,
  };
}

describe('createNxBuilder', () => {
  it('runs one nx run-many for the selected projects, with the Nx cache in the cache service and the cache never skipped', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = {
      profile: [
        { taskId: 'go-app:build', status: 'success', startMs: 1_700_000_000_000, durationMs: 1500 },
        { taskId: 'java-app:build', status: 'local-cache', durationMs: 9 },
        { taskId: 'dotnet-app:build', status: 'local-cache-kept-existing', durationMs: 4 },
      ],
      output: ['> nx run go-app:build', '> go build -trimpath -o dist/ ./...'],
    };
    const ctx = captureCtx();
    const outcomes = await createNxBuilder({ run: fake.run, cache: fake.cache, killGraceMs: 1234 }).build(nxWorkspace(fake), ctx);

    expect(nxCommands(fake)).toEqual(['run-many']);
    const call = fake.calls[0]!;
    expect(call.args.slice(1)).toEqual(['run-many', '-t', 'build', '-p', 'go-app,java-app,dotnet-app', '--output-style=static', '--nx-bail=false']);
    expect(call.options.cwd).toBe(fake.dir);
    expect(call.options.killGraceMs).toBe(1234);
    expect(call.options.signal).toBe(ctx.signal);
    const env = call.options.env!;
    expect(env).toMatchObject({ NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_CACHE_DIRECTORY: fake.cache.path('nx'), GOCACHE: fake.cache.path('go-build') });
    // Present and undefined: removed from the inherited environment
    expect(Object.hasOwn(env, 'NX_SKIP_NX_CACHE') && env.NX_SKIP_NX_CACHE === undefined).toBe(true);
    expect(env.NX_PROFILE).toMatch(/^(\.\.\/)+.*profile\.json$/);
    // Every language cache prepared: the targets may run any tool
    expect(fake.cache.prepared).toContainEqual(undefined);

    expect(outcomes).toEqual([
      { project: 'go-app', status: 'succeeded', startedAt: new Date(1_700_000_000_000).toISOString(), durationMs: 1500, cached: false },
      { project: 'java-app', status: 'succeeded', startedAt: expect.any(String), durationMs: 9, cached: true },
      { project: 'dotnet-app', status: 'succeeded', startedAt: expect.any(String), durationMs: 4, cached: true },
    ]);
    // Nx's output goes to the build log
    expect(ctx.lines).toContain('> go build -trimpath -o dist/ ./...');
  });

  it("a failed project gets its own last lines; the others keep their outcome; a dependent that did not run names the failed dependency", async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = {
      exitCode: 1,
      profile: [
        { taskId: 'lib:build', status: 'failure' },
        { taskId: 'go-app:build', status: 'skipped' },
        { taskId: 'java-app:build', status: 'failure' },
        { taskId: 'dotnet-app:build', status: 'success' },
      ],
      output: [
        '> nx run lib:build',
        'lib.go:3: syntax error',
        '> nx run java-app:build',
        '[ERROR] App.java:[4,1] class, interface, enum, or record expected',
        'Warning: command "mvn package" exited with non-zero status code',
        '> nx run dotnet-app:build',
        'dotnet-app -> dist/',
        ' NX   Running target build for 3 projects failed',
        'Failed tasks:',
        '- lib:build',
        '- java-app:build',
      ],
    };
    const outcomes = await createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake), captureCtx());
    const by = Object.fromEntries(outcomes.map((o) => [o.project, o]));
    expect(by['java-app']).toMatchObject({ status: 'failed', error: 'nx run java-app:build failed:\n[ERROR] App.java:[4,1] class, interface, enum, or record expected' });
    expect(by['dotnet-app']).toMatchObject({ status: 'succeeded', cached: false });
    expect(by['go-app']!.status).toBe('failed');
    expect(by['go-app']!.error).toBe('nx run go-app:build did not run: a task it depends on failed: lib:build failed:\nlib.go:3: syntax error');
  });

  it('without a profile, reads the outcome from the output headers', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = {
      exitCode: 1,
      output: ['> nx run go-app:build  [local cache]', 'ok', '> nx run java-app:build', 'boom', '> nx run dotnet-app:build', 'built', 'Failed tasks:', '', '- java-app:build'],
    };
    const outcomes = await createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake), captureCtx());
    expect(outcomes.map((o) => [o.project, o.status, o.cached])).toEqual([
      ['go-app', 'succeeded', true],
      ['java-app', 'failed', false],
      ['dotnet-app', 'failed', undefined],
    ]);
    expect(outcomes[2]!.error).toMatch(/Nx reported no result for dotnet-app:build/);
  });

  it('Nx failing before any task is a failure of the build step itself, with its last lines', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = { exitCode: 1, output: [' NX   Could not find project "go-app"', 'Pass --verbose to see the stacktrace.'] };
    const error = await createNxBuilder({ run: fake.run, cache: fake.cache })
      .build(nxWorkspace(fake), captureCtx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as Error).message).toMatch(/failed before running any task:\n NX {3}Could not find project "go-app"/);
  });

  it('a crash of Nx without task results is a failure of the build step itself', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = { exitCode: 134, profile: [] };
    await expect(createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake), captureCtx())).rejects.toBeInstanceOf(CommandFailedError);
  });

  it('reads the task results whatever non-zero code Nx exits with (130 when a dependency failed)', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = {
      exitCode: 130,
      profile: [
        { taskId: 'lib:build', status: 'failure' },
        { taskId: 'go-app:build', status: 'skipped' },
        { taskId: 'java-app:build', status: 'local-cache' },
        { taskId: 'dotnet-app:build', status: 'success' },
      ],
    };
    const outcomes = await createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake), captureCtx());
    expect(outcomes.map((o) => [o.project, o.status])).toEqual([
      ['go-app', 'failed'],
      ['java-app', 'succeeded'],
      ['dotnet-app', 'succeeded'],
    ]);
  });

  it('Nx failing although every task succeeded fails the build step', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = {
      exitCode: 1,
      profile: BUILD_PROJECTS.map((p) => ({ taskId: `${p.name}:build`, status: 'success' })),
      output: [' NX   Could not write the cache'],
    };
    const error = await createNxBuilder({ run: fake.run, cache: fake.cache })
      .build(nxWorkspace(fake), captureCtx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as Error).message).toMatch(/exited with code 1 although every task succeeded:\n NX {3}Could not write the cache/);
  });

  it('a project Nx did not run is failed, not silently passed', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    fake.runMany = { exitCode: 0, profile: [{ taskId: 'go-app:build', status: 'success' }] };
    const outcomes = await createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake, ['go-app', 'java-app']), captureCtx());
    expect(outcomes[1]).toMatchObject({ project: 'java-app', status: 'failed', error: expect.stringMatching(/Nx did not run java-app:build/) });
  });

  it('nothing selected: nothing run', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    expect(await createNxBuilder({ run: fake.run, cache: fake.cache }).build(nxWorkspace(fake, []), captureCtx())).toEqual([]);
    expect(fake.calls).toEqual([]);
  });

  it('refuses a workspace that is not Nx', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    await expect(createNxBuilder({ run: fake.run, cache: fake.cache }).build({ ...nxWorkspace(fake), kind: 'single' }, captureCtx())).rejects.toBeInstanceOf(InputError);
  });
});

describe('createNxBuilder cancellation', () => {
  it('passes a cancellation through and leaves no profile directory behind', async () => {
    fake = await fakeNxWorkspace(BUILD_PROJECTS);
    const controller = new AbortController();
    let profileDir = '';
    const run: CommandRunner = async (_file, _args, options = {}) => {
      profileDir = dirname(join(options.cwd!, options.env!.NX_PROFILE!));
      controller.abort();
      throw new CancelledError('nx run-many was cancelled');
    };
    const error = await createNxBuilder({ run, cache: fake.cache })
      .build(nxWorkspace(fake), { ...captureCtx(), signal: controller.signal })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CancelledError);
    expect(profileDir).toMatch(/oci-build-nx-/);
    expect(existsSync(profileDir)).toBe(false);
  });
});
