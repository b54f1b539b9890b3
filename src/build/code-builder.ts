// The build phase for single-project repositories: the language's own build (or the project's
// configured command) with the dependency caches wired in. Nx workspaces go to the Nx builder.

import { join } from 'node:path';
import { monotonicMs } from '../core/elapsed.js';
import type { CacheKind, CacheService } from '../cache/cache-service.js';
import { CACHE_KINDS } from '../cache/cache-service.js';
import {
  CommandFailedError,
  InputError,
  ToolUnavailableError,
  describeError,
} from '../core/errors.js';
import type { CodeBuilder, LogSink, LogStream, PhaseContext } from '../core/ports.js';
import type { Project, ProjectBuildOutcome, Workspace } from '../core/types.js';
import { installHint, type CommandRunner } from '../exec/run-command.js';
import type { BuildRunner } from '../exec/sandbox.js';
import { cacheMounts } from './cache-mounts.js';
import { LANGUAGE_BUILDERS, type BuildStep } from './language-builders.js';

export interface CodeBuilderDeps {
  /** Runs the build commands (exec/sandbox.ts: sandboxed, with a clean environment). */
  run: BuildRunner;
  cache: CacheService;
  /** Between SIGTERM and SIGKILL of a cancelled build command. */
  killGraceMs?: number;
  /** Builds Nx workspaces. */
  nx?: CodeBuilder;
}

export function createCodeBuilder(deps: CodeBuilderDeps): CodeBuilder {
  return {
    async build(workspace: Workspace, ctx: PhaseContext): Promise<ProjectBuildOutcome[]> {
      if (workspace.kind === 'nx') {
        if (!deps.nx) {
          throw new InputError(`${workspace.dir} is an Nx workspace, and this oci-build has no Nx builder`, {
            hint: 'Use a build of oci-build with Nx support, or build the project directory on its own.',
          });
        }
        return deps.nx.build(workspace, ctx);
      }
      const outcomes: ProjectBuildOutcome[] = [];
      for (const project of workspace.projects.filter((p) => workspace.selected.includes(p.name))) {
        outcomes.push(await buildProject(project, workspace, ctx, deps));
      }
      return outcomes;
    },
  };
}

async function buildProject(project: Project, workspace: Workspace, ctx: PhaseContext, deps: CodeBuilderDeps): Promise<ProjectBuildOutcome> {
  const startedAt = new Date().toISOString();
  const t0 = monotonicMs();
  const outcome = (status: ProjectBuildOutcome['status'], error?: string): ProjectBuildOutcome => ({
    project: project.name,
    status,
    startedAt,
    durationMs: Math.round(monotonicMs() - t0),
    ...(error !== undefined ? { error } : {}),
  });
  const dir = project.root === '.' ? workspace.dir : join(workspace.dir, project.root);
  const builder = project.language ? LANGUAGE_BUILDERS[project.language] : undefined;

  let steps: BuildStep[];
  let caches: readonly CacheKind[];
  if (project.buildCommand) {
    const [file, ...args] = project.buildCommand;
    steps = [{ file: file!, args }];
    // A custom command may run any tool: every cache is wired in, so every cache must exist.
    caches = builder?.caches ?? CACHE_KINDS;
  } else if (builder) {
    caches = builder.caches;
    steps = builder.steps(dir, deps.cache);
  } else {
    ctx.log.write(`${project.name}: no language detected and no build command configured, nothing to build`, 'system');
    return outcome('skipped');
  }

  await deps.cache.prepare(caches);
  const env = deps.cache.toolEnv();
  // The tree is the whole workspace (a project in a subdirectory may read its siblings).
  const mounts = cacheMounts(deps.cache, caches);
  const recent = new RecentLines(ctx.log);
  for (const step of steps) {
    const command = [step.file, ...step.args].join(' ');
    ctx.log.write(`$ ${command}`, 'system');
    try {
      await deps.run(step.file, step.args, {
        cwd: dir,
        tree: workspace.dir,
        ...mounts,
        env: { ...env, ...step.env, ...repositoryEnv(project.env, env) },
        signal: ctx.signal,
        log: recent,
        capture: false,
        ...(deps.killGraceMs !== undefined ? { killGraceMs: deps.killGraceMs } : {}),
        displayName: `${step.file}${step.args[0] && !step.args[0].startsWith('-') ? ` ${step.args[0]}` : ''}`,
      });
    } catch (err) {
      // A cancelled or timed-out build, a missing tool: not the project's fault, so not an outcome.
      if (ctx.signal.aborted || !(err instanceof CommandFailedError)) throw err;
      const status = err.exitStatus !== undefined ? `exit code ${err.exitStatus}` : 'a failure';
      const lines = recent.errorLines();
      return outcome('failed', `${command} failed with ${status}${lines.length ? `:\n${lines.join('\n')}` : ''}`);
    }
  }
  return outcome('succeeded');
}

/**
 * The project's own variables (`.oci-build.yaml` env; never a reserved name: config/repo-settings.ts),
 * over the step's; `build.env` is set after them by the runner. GOFLAGS goes after oci-build's own
 * flags (-modcacherw -buildvcs=false), which a reproducible image needs.
 */
function repositoryEnv(own: Record<string, string> | undefined, base: Record<string, string>): Record<string, string> {
  if (!own) return {};
  return own.GOFLAGS !== undefined && base.GOFLAGS ? { ...own, GOFLAGS: `${base.GOFLAGS} ${own.GOFLAGS}` } : own;
}

const MAX_ERROR_LINES = 12;

/**
 * Passes lines on and keeps the last ones of both streams, interleaved as a terminal shows them:
 * Maven and dotnet print their errors on stdout, Go on stderr. runCommand's own tail prefers
 * stderr, and Maven's last lines are boilerplate ("Re-run Maven using the -X switch").
 */
class RecentLines implements LogSink {
  private readonly lines: string[] = [];
  constructor(private readonly sink: LogSink) {}

  write(line: string, stream?: LogStream): void {
    this.sink.write(line, stream);
    this.lines.push(stripAnsi(line).trimEnd());
    if (this.lines.length > 400) this.lines.splice(0, this.lines.length - 200);
  }

  /** The compiler's messages if they can be told apart, else the last lines. */
  errorLines(): string[] {
    const meaningful = this.lines.filter((l) => l.trim() !== '' && !/^\[ERROR\]\s*$/.test(l) && !MAVEN_BOILERPLATE.test(l));
    const errors = meaningful.filter((l) => ERROR_LINE.test(l));
    const chosen = errors.length > 0 ? [...new Set(errors)] : meaningful;
    return chosen.slice(-MAX_ERROR_LINES);
  }
}

/** Compiler and tool diagnostics: `file.go:6:14: …`, `[ERROR] …`, `Program.cs(1,2): error CS0103: …`, `npm ERR!`. */
const ERROR_LINE = /(^\[ERROR\]|\berror\b|\bERR!|^\S+:\d+(:\d+)?: |\bundefined\b|cannot find symbol|^\s+(symbol|location):)/i;
const MAVEN_BOILERPLATE = /(^\[ERROR\] -> \[Help \d+\]$|\[Help \d+\] http|re-run Maven|full stack trace of the errors|For more information about the errors|^\[ERROR\] *$)/i;

export interface ToolchainCheck {
  name: string;
  ok: boolean;
  version?: string;
  fix?: string;
}

const TOOLCHAINS: ReadonlyArray<{ name: string; args: string[]; parse: (out: string) => string | undefined }> = [
  { name: 'go', args: ['version'], parse: (out) => /go(\d+\.\d+(?:\.\d+)?)/.exec(out)?.[1] },
  { name: 'mvn', args: ['-B', '--version'], parse: (out) => /Apache Maven (\S+)/.exec(out)?.[1] },
  // `java -version` writes to stderr.
  { name: 'java', args: ['-version'], parse: (out) => /version "([^"]+)"/.exec(out)?.[1] },
  { name: 'dotnet', args: ['--version'], parse: (out) => out.trim().split('\n')[0]?.trim() || undefined },
  { name: 'npm', args: ['--version'], parse: (out) => out.trim().split('\n')[0]?.trim() || undefined },
];

const TOOLCHAIN_FIXES: Record<string, string> = {
  java: 'Install a JDK 17: apt-get install -y openjdk-17-jdk-headless',
  npm: 'Install Node.js 20 with npm (https://nodejs.org/en/download), or apt-get install -y npm',
};

/** For `oci-build doctor`: is each language's toolchain installed and working, and which version. */
export async function checkToolchains(run: CommandRunner, options: { timeoutMs?: number } = {}): Promise<ToolchainCheck[]> {
  return Promise.all(
    TOOLCHAINS.map(async (tool): Promise<ToolchainCheck> => {
      try {
        const result = await run(tool.name, tool.args, {
          signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
          killGraceMs: 1_000,
          // dotnet's first run and telemetry notices would otherwise be part of the output.
          env: { DOTNET_CLI_TELEMETRY_OPTOUT: '1', DOTNET_NOLOGO: '1', DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1' },
        });
        const output = stripAnsi(`${result.stdout}\n${result.stderr}`);
        const version = tool.parse(output);
        return { name: tool.name, ok: true, ...(version ? { version } : {}) };
      } catch (err) {
        if (err instanceof ToolUnavailableError) return { name: tool.name, ok: false, fix: TOOLCHAIN_FIXES[tool.name] ?? installHint(tool.name) };
        return { name: tool.name, ok: false, fix: `\`${tool.name} ${tool.args.join(' ')}\` failed: ${firstLine(describeError(err))}` };
      }
    }),
  );
}

function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
