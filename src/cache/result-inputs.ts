// The BuildResults port (core/ports.ts): gathers a project's result-key inputs after detect — Git
// object ids of its root and of what it depends on, its effective settings, the toolchain's
// version, the base images' digests — and hands the registry and local-store work to
// image/registry-tag.ts. Nothing absolute goes into a key: two work directories give one key.

import { readFile } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { resultKey, resultKeySummary, type ResultKeyInputs } from '../core/result-key.js';
import type { BuildResults, PhaseContext, ResultIndex, ResultKeyRequest } from '../core/ports.js';
import type { Project, Workspace } from '../core/types.js';
import type { CommandRunner } from '../exec/run-command.js';
import { passedVariable } from '../exec/sandbox.js';
import { ToolchainVersions, toolsOf } from '../build/toolchain-version.js';
import { externalBaseImages, resolveBaseDigests } from '../image/base-digests.js';
import type { ImageReuse } from '../image/registry-tag.js';

/** Workspace-level files of an Nx workspace that every project's build reads. */
const NX_ROOT_FILES = ['nx.json', 'package.json', 'package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml', 'tsconfig.base.json', 'tsconfig.json', '.nxignore'];

/** Labels that follow from the commit, not from the inputs; see README "Result reuse" for why they are not in the key. */
const COMMIT_LABELS = new Set(['org.opencontainers.image.revision', 'org.opencontainers.image.created']);

export interface BuildResultsDeps {
  run: CommandRunner;
  index: ResultIndex;
  images: ImageReuse;
  /** oci-build's version. */
  version: string;
  /** `build.env`, `build.mavenOffline`, `build.sandbox`: they reach every build command. */
  build: { env: Readonly<Record<string, string>>; mavenOffline?: boolean; sandbox: string };
  /** Where the build commands' allow-listed variables come from (process.env). */
  parentEnv: NodeJS.ProcessEnv;
  authFile?: string;
  /** Where Go's and Node's versions are kept between runs (build/toolchain-version.ts). */
  toolchainCache?: string;
}

function toPosix(path: string): string {
  return sep === '/' ? path : path.split(sep).join('/');
}

/** `path` relative to the workspace ('.' for itself); undefined when it lies outside. */
function inWorkspace(workspace: Workspace, path: string): string | undefined {
  const rel = toPosix(relative(workspace.dir, path));
  if (rel.startsWith('..') || isAbsolute(rel)) return undefined;
  return rel === '' ? '.' : rel;
}

function within(parent: string, path: string): boolean {
  return parent === '.' || path === parent || path.startsWith(`${parent}/`);
}

/** The project as a key input: its settings, paths made relative to the workspace, the candidates left out. */
function projectInput(workspace: Workspace, project: Project): Record<string, unknown> {
  const { dockerfileCandidates: _candidates, dockerfile: _dockerfile, ...rest } = project;
  const relativize = (value: unknown): unknown => {
    if (typeof value === 'string' && isAbsolute(value)) return inWorkspace(workspace, value) ?? value;
    if (Array.isArray(value)) return value.map(relativize);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, relativize(v)]));
    return value;
  };
  return relativize(rest) as Record<string, unknown>;
}

/** The project and, for Nx, everything it depends on (transitively), by name. */
function dependencyClosure(workspace: Workspace, project: Project): Project[] {
  const byName = new Map(workspace.projects.map((p) => [p.name, p]));
  const seen = new Map<string, Project>([[project.name, project]]);
  const queue = [...(project.dependsOn ?? [])];
  while (queue.length > 0) {
    const name = queue.shift()!;
    const dep = byName.get(name);
    if (!dep || seen.has(name)) continue;
    seen.set(name, dep);
    queue.push(...(dep.dependsOn ?? []));
  }
  return [...seen.values()];
}

export function createBuildResults(deps: BuildResultsDeps): BuildResults {
  const toolchains = new ToolchainVersions(deps.run, { ...(deps.toolchainCache ? { cacheFile: deps.toolchainCache } : {}), env: deps.parentEnv });

  /** The variables a build command inherits, less HOME (the sandbox's own) and what the work directory decides. */
  const environment = (project: Project): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(deps.parentEnv)) if (value !== undefined && passedVariable(name)) env[name] = value;
    return { ...env, ...deps.build.env, ...(project.env ?? {}) };
  };

  async function inputsOf(request: ResultKeyRequest, ctx: PhaseContext): Promise<ResultKeyInputs | { reason: string }> {
    const { workspace, project, checkout } = request;
    if (!checkout.objectIdOf) return { reason: 'the source cannot name its Git trees' };
    if (!project.dockerfile) return { reason: 'no Dockerfile' };
    const dockerfile = inWorkspace(workspace, project.dockerfile);
    const context = project.context ?? project.root;
    if (!dockerfile) return { reason: 'the Dockerfile lies outside the repository' };

    const paths = new Set<string>();
    for (const p of dependencyClosure(workspace, project)) paths.add(p.root);
    if (workspace.kind === 'nx') for (const file of NX_ROOT_FILES) paths.add(file);
    if (!within(project.root, dockerfile)) paths.add(dockerfile);
    if (!within(project.root, context)) paths.add(context);
    const trees: Record<string, string> = {};
    for (const path of [...paths].sort()) {
      const id = await checkout.objectIdOf(path === '.' ? '' : path);
      if (id) trees[path] = id;
      else if (path === project.root) return { reason: `the commit has no tree at ${path}` };
    }

    // As the image phase merges them: the job's (--build-arg) over the repository's file.
    const buildArgs = { ...(project.buildArgs ?? {}), ...request.buildArgs };
    const text = await readFile(project.dockerfile, 'utf8');
    const baseImages = await resolveBaseDigests(deps.run, externalBaseImages(text, buildArgs), { tlsVerify: request.tlsVerify, ...(deps.authFile ? { authFile: deps.authFile } : {}) }, ctx);
    const tools = toolsOf(project.language, workspace.kind === 'nx');
    const labels = Object.fromEntries(Object.entries(request.labels).filter(([name]) => !COMMIT_LABELS.has(name)));
    return {
      ociBuildVersion: deps.version,
      project: { ...projectInput(workspace, project), workspaceKind: workspace.kind, mavenOffline: deps.build.mavenOffline ?? null, sandbox: deps.build.sandbox },
      trees,
      dockerfile,
      context,
      buildArgs,
      env: environment(project),
      toolchains: await toolchains.of(tools),
      baseImages,
      labels,
      repository: request.imageRepository,
    };
  }

  return {
    index: deps.index,
    async keyOf(request, ctx) {
      const inputs = await inputsOf(request, ctx);
      if ('reason' in inputs) return inputs;
      return { key: resultKey(inputs), summary: resultKeySummary(inputs) };
    },
    locate: (entry, target, ctx) => deps.images.locate(entry, target, ctx),
    retag: (source, target, ctx) => deps.images.retag(source, target, ctx),
  };
}
