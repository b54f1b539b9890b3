// Detection of an Nx workspace (nx.json at the root). Nx decides everything: the projects and their
// roots come from its project graph, the affected projects from `nx show projects --affected`.
// oci-build adds only what Nx does not know: each project's language and Dockerfile.

import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monotonicMs } from '../core/elapsed.js';
import { BuildFailedError, CommandFailedError, InputError, describeError } from '../core/errors.js';
import { shortSha } from '../core/naming.js';
import type { DetectOptions, PhaseContext, ProjectDetector } from '../core/ports.js';
import type { Project, Workspace } from '../core/types.js';
import { ensureNxInstalled, runNx, type NxDeps } from '../build/nx-cli.js';
import { NX_BUILD_TARGET } from '../build/nx-builder.js';
import { detectLanguage } from './detect-projects.js';
import { dockerfileCandidates, findDockerfile, validateDockerfile } from './dockerfile.js';
import { affectedStdin, parseNxGraph, parseNxProjectList, type NxGraph } from './nx-graph.js';

/** A SHA shortened; a name (origin/main, HEAD~1) as given. */
const shortRevision = (rev: string) => (/^[0-9a-f]{8,40}$/i.test(rev) ? shortSha(rev) : rev);

export function createNxDetector(deps: NxDeps): ProjectDetector {
  return {
    async detect(dir: string, options: DetectOptions, ctx: PhaseContext): Promise<Workspace> {
      const root = resolve(dir);
      if (!existsSync(join(root, 'nx.json'))) {
        throw new InputError(`${root} is not an Nx workspace: it has no nx.json`, { hint: 'Build it as a single project, or add nx.json at its root.' });
      }
      await ensureNxInstalled(deps, root, ctx);
      await deps.cache.prepare(['npm', 'nx']);

      const t0 = monotonicMs();
      const graph = await readGraph(deps, root, options.name, ctx);
      ctx.log.write(`nx: project graph of ${graph.projects.length} projects in ${Math.round(monotonicMs() - t0)} ms`, 'system');
      const names = graph.projects.map((p) => p.name);
      const buildable = graph.projects.filter((p) => p.targets.includes(NX_BUILD_TARGET)).map((p) => p.name);

      let wanted = buildable;
      let scope = `${buildable.length} of ${names.length} projects have a ${NX_BUILD_TARGET} target`;
      if (options.projects?.length) {
        const unknown = options.projects.filter((p) => !names.includes(p));
        if (unknown.length > 0) {
          throw new InputError(
            `Unknown Nx project${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => JSON.stringify(u)).join(', ')}: the workspace's projects are ${names.map((n) => JSON.stringify(n)).join(', ')}`,
            { hint: 'Pass one of the project names to --project (as `nx show projects` lists them), or omit --project.', details: { unknown, available: names } },
          );
        }
        const noBuild = options.projects.filter((p) => !buildable.includes(p));
        if (noBuild.length > 0) {
          const targetsOf = (name: string) => graph.projects.find((p) => p.name === name)?.targets.join(', ') || 'none';
          throw new InputError(
            `Nx project${noBuild.length > 1 ? 's' : ''} ${noBuild.map((p) => `${p} (targets: ${targetsOf(p)})`).join(', ')} ha${noBuild.length > 1 ? 've' : 's'} no ${NX_BUILD_TARGET} target`,
            { hint: `Add a ${NX_BUILD_TARGET} target to the project, or pick projects that have one: ${buildable.join(', ')}.`, details: { noBuild, buildable } },
          );
        }
        wanted = names.filter((n) => options.projects!.includes(n));
        scope = `--project ${wanted.join(', ')}`;
      }

      let selected = wanted;
      let selectionNote = `nx: building ${selected.length} project${selected.length === 1 ? '' : 's'} (${scope}): ${selected.join(', ') || 'none'}`;
      if (options.affected) {
        const base = options.affected.base;
        const files = await options.affected.changedFiles();
        if (files === undefined) {
          selectionNote = `nx: base ${shortRevision(base)} not found in the history, so every project counts as affected; building ${selected.length} (${scope}): ${selected.join(', ') || 'none'}`;
        } else {
          const affected = files.length === 0 ? [] : await affectedProjects(deps, root, options.name, files, ctx);
          selected = wanted.filter((n) => affected.includes(n));
          selectionNote =
            `nx: ${files.length} file${files.length === 1 ? '' : 's'} changed since ${shortRevision(base)}, ${affected.length} project${affected.length === 1 ? '' : 's'} affected` +
            ` (${affected.join(', ') || 'none'}); building ${selected.length} of ${wanted.length} (${scope}): ${selected.join(', ') || 'none'}`;
        }
      }

      const projects: Project[] = [];
      for (const node of graph.projects) {
        const projectDir = node.root === '.' ? root : join(root, node.root);
        const language = await detectLanguage(projectDir).catch(() => undefined);
        const dockerfile = findDockerfile(projectDir);
        // Only the projects this build acts on must have a usable Dockerfile.
        if (dockerfile && selected.includes(node.name)) await validateDockerfile(dockerfile, projectDir);
        projects.push({
          name: node.name,
          root: node.root,
          ...(language ? { language: language.language } : {}),
          ...(dockerfile ? { dockerfile } : {}),
          dockerfileCandidates: dockerfileCandidates(projectDir),
          ...(graph.dependencies[node.name]?.length ? { dependsOn: graph.dependencies[node.name] } : {}),
        });
      }
      for (const project of projects.filter((p) => selected.includes(p.name))) {
        ctx.log.write(
          `nx project ${project.name} (${project.root}${project.language ? `, ${project.language}` : ''})${project.dockerfile ? `: ${project.dockerfile}` : ': no Dockerfile'}`,
          'system',
        );
      }
      return { kind: 'nx', dir: root, name: options.name, projects, selected, selectionNote };
    },
  };
}

/** One `nx graph` run: every project, its root, targets and dependencies (faster than `nx show project` per project). */
async function readGraph(deps: NxDeps, root: string, name: string, ctx: PhaseContext): Promise<NxGraph> {
  const tmp = await mkdtemp(join(tmpdir(), 'oci-build-nx-graph-'));
  try {
    const file = join(tmp, 'graph.json');
    try {
      await runNx(deps, root, name, ['graph', `--file=${file}`], ctx, { log: false, writable: [tmp] });
    } catch (err) {
      if (err instanceof CommandFailedError) {
        throw new BuildFailedError(`Nx could not compute the project graph of ${root}: ${err.message}`, {
          cause: err,
          hint: 'Run `npx nx graph --file=graph.json` in the workspace; check nx.json and the project.json files.',
        });
      }
      throw err;
    }
    const text = await readFile(file, 'utf8');
    try {
      return parseNxGraph(text);
    } catch (err) {
      throw new BuildFailedError(`Cannot read the project graph Nx wrote for ${root}: ${describeError(err)}`, { cause: err });
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The projects Nx considers affected by `files` (paths relative to the root), given on stdin: no argument length limit. */
async function affectedProjects(deps: NxDeps, root: string, name: string, files: readonly string[], ctx: PhaseContext): Promise<string[]> {
  const result = await runNx(deps, root, name, ['show', 'projects', '--affected', '--stdin', '--json'], ctx, {
    input: affectedStdin(files),
    log: false,
  });
  try {
    return parseNxProjectList(result.stdout);
  } catch (err) {
    throw new BuildFailedError(`Cannot read the affected projects Nx listed for ${root}: ${describeError(err)}`, { cause: err });
  }
}
