// The build phase of an Nx workspace: one `nx run-many -t build -p …` for the selected projects.
// Nx orders the tasks (dependsOn ^build builds dependencies first), runs them in parallel and serves
// what it can from its cache; this builder only reads back, per project, what Nx did.

import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { monotonicMs } from '../core/elapsed.js';
import { CommandFailedError, InputError } from '../core/errors.js';
import type { CodeBuilder, LogSink, PhaseContext } from '../core/ports.js';
import type { ProjectBuildOutcome, Workspace } from '../core/types.js';
import { ensureNxInstalled, runNx, type NxDeps } from './nx-cli.js';
import { NxOutputSections, isCacheHit, parseNxProfile, type NxTaskResult } from './nx-task-results.js';

export const NX_BUILD_TARGET = 'build';

const ANY_EXIT_CODE = Array.from({ length: 256 }, (_, code) => code);

export function createNxBuilder(deps: NxDeps): CodeBuilder {
  return {
    async build(workspace: Workspace, ctx: PhaseContext): Promise<ProjectBuildOutcome[]> {
      if (workspace.kind !== 'nx') {
        throw new InputError(`${workspace.dir} is not an Nx workspace (kind ${workspace.kind}); the Nx builder cannot build it`);
      }
      const selected = workspace.selected;
      if (selected.length === 0) {
        ctx.log.write('nx: no project selected, nothing to build', 'system');
        return [];
      }
      await ensureNxInstalled(deps, workspace.dir, ctx);
      // Any language cache: the targets may call go, mvn, dotnet or npm.
      await deps.cache.prepare();

      const args = ['run-many', '-t', NX_BUILD_TARGET, '-p', selected.join(','), '--output-style=static', '--nx-bail=false'];
      const sections = new NxOutputSections();
      const log: LogSink = {
        write(line, stream) {
          sections.feed(line);
          ctx.log.write(line, stream);
        },
      };
      const tmp = await mkdtemp(join(tmpdir(), 'oci-build-nx-'));
      const profileFile = join(tmp, 'profile.json');
      const startedAt = new Date();
      const t0 = monotonicMs();
      let exitCode: number;
      let profile: NxTaskResult[];
      try {
        ctx.log.write(`nx ${args.join(' ')}`, 'system');
        const result = await runNx(deps, workspace.dir, workspace.name, args, { ...ctx, log }, {
          // Nx joins NX_PROFILE to its working directory (physical, links resolved), so it must be
          // relative to that.
          env: { NX_PROFILE: relative(await realpath(workspace.dir), await realpath(tmp).then((t) => join(t, 'profile.json'))) },
          // Nx exits non-zero when a task failed (1, or 130 when tasks were skipped because a
          // dependency failed, with Nx 22.7): the per-task results say which, and are checked below.
          okExitCodes: ANY_EXIT_CODE,
          capture: false,
          writable: [tmp],
        });
        exitCode = result.exitCode;
        profile = parseNxProfile(await readFile(profileFile, 'utf8').catch(() => ''));
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      const elapsedMs = Math.round(monotonicMs() - t0);

      if (exitCode !== 0 && profile.length === 0 && sections.sections.size === 0) {
        // Nx failed before running any task (an invalid project.json, a dependency cycle…).
        const command = `nx ${args.join(' ')}`;
        throw new CommandFailedError(`${command} failed before running any task:\n${sections.tail.slice(-12).join('\n')}`, command, exitCode, {
          hint: 'Run the same command in the workspace to see why; check nx.json and the project.json files.',
        });
      }

      const byTask = new Map(profile.map((r) => [r.taskId, r]));
      const failedDependencies = () =>
        [...new Set([...profile.filter((r) => r.status === 'failure').map((r) => r.taskId), ...sections.failedTasks])].filter(
          (taskId) => !selected.some((p) => taskId === `${p}:${NX_BUILD_TARGET}`),
        );

      const outcomes = selected.map((project): ProjectBuildOutcome => {
        const taskId = `${project}:${NX_BUILD_TARGET}`;
        const result = byTask.get(taskId);
        const section = sections.sections.get(taskId);
        const timing = {
          startedAt: new Date(result?.startMs ?? startedAt.getTime()).toISOString(),
          durationMs: result?.durationMs ?? elapsedMs,
        };
        const status =
          result?.status ??
          (sections.failedTasks.includes(taskId)
            ? 'failure'
            : sections.notRunTasks.includes(taskId)
              ? 'skipped'
              : section
                ? section.label?.includes('cache')
                  ? 'local-cache'
                  : exitCode === 0
                    ? 'success'
                    : 'unknown'
                : 'not-run');
        if (status === 'success' || isCacheHit(status)) {
          return { project, status: 'succeeded', ...timing, cached: isCacheHit(status) };
        }
        if (status === 'failure') {
          const lines = sections.errorLines(taskId);
          return { project, status: 'failed', ...timing, cached: false, error: `nx run ${taskId} failed${lines.length ? `:\n${lines.join('\n')}` : '; see the log'}` };
        }
        if (status === 'skipped') {
          const deps = failedDependencies();
          const why = deps.map((d) => {
            const lines = sections.errorLines(d, 6);
            return `${d} failed${lines.length ? `:\n${lines.join('\n')}` : ''}`;
          });
          return {
            project,
            status: 'failed',
            ...timing,
            durationMs: 0,
            error: `nx run ${taskId} did not run: ${why.length ? `a task it depends on failed: ${why.join('\n')}` : 'a task it depends on failed'}`,
          };
        }
        return {
          project,
          status: 'failed',
          ...timing,
          error:
            status === 'not-run'
              ? `Nx did not run ${taskId} (does ${project} have a ${NX_BUILD_TARGET} target?)`
              : `Nx reported no result for ${taskId} (exit code ${exitCode}); see the log`,
        };
      });
      if (exitCode !== 0 && outcomes.every((o) => o.status === 'succeeded')) {
        // Every task succeeded, yet Nx failed: something outside the tasks (writing the cache…).
        const command = `nx ${args.join(' ')}`;
        throw new CommandFailedError(`${command} exited with code ${exitCode} although every task succeeded:\n${sections.tail.slice(-12).join('\n')}`, command, exitCode, {
          hint: 'See the log for what Nx reported after the tasks.',
        });
      }
      return outcomes;
    },
  };
}
