// Detection: what a checked-out tree is (a single project, or an Nx workspace handled by the Nx
// detector), its language by marker files, and its Dockerfile.

import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../core/errors.js';
import type { DetectOptions, PhaseContext, ProjectDetector } from '../core/ports.js';
import type { Language, Project, Workspace } from '../core/types.js';
import { dockerfileCandidates, findDockerfile, validateDockerfile } from './dockerfile.js';
import { assertNoEscapingSymlinks } from './tree-symlinks.js';

export interface ProjectOverride {
  command?: string[];
}

export interface ProjectDetectorDeps {
  /** `build.projects` of the config, keyed by project name ('.' for a single-project repository). */
  overrides: Record<string, ProjectOverride>;
  /** Used when the tree has an nx.json. */
  nx?: ProjectDetector;
}

/** Marker files, in priority order: a Go service with a package.json for tooling is a Go project. */
const MARKERS: ReadonlyArray<{ language: Language; describe: string; matches: (names: string[]) => string | undefined }> = [
  { language: 'go', describe: 'go.mod', matches: (names) => names.find((n) => n === 'go.mod') },
  { language: 'java', describe: 'pom.xml', matches: (names) => names.find((n) => n === 'pom.xml') },
  {
    language: 'dotnet',
    describe: '*.csproj, *.sln',
    matches: (names) => names.find((n) => /\.(csproj|fsproj|vbproj|sln|slnx)$/i.test(n)),
  },
  { language: 'node', describe: 'package.json', matches: (names) => names.find((n) => n === 'package.json') },
];

export const MARKER_FILES = MARKERS.map((m) => m.describe).join(', ');

/** The language of the project in `dir` and the marker file that told, or undefined. */
export async function detectLanguage(dir: string): Promise<{ language: Language; marker: string } | undefined> {
  const names = await readdir(dir);
  for (const marker of MARKERS) {
    const found = marker.matches(names);
    if (found) return { language: marker.language, marker: found };
  }
  return undefined;
}

export function createProjectDetector(deps: ProjectDetectorDeps): ProjectDetector {
  return {
    async detect(dir: string, options: DetectOptions, ctx: PhaseContext): Promise<Workspace> {
      const root = resolve(dir);
      const st = await stat(root).catch(() => undefined);
      if (!st?.isDirectory()) {
        throw new InputError(`The source ${root} is not a directory`, { hint: 'Pass the path of a checked-out repository.' });
      }
      // Before anything runs in the tree (the Nx detector runs npm ci and nx): a link leading out of
      // it would let a build, or buildah reading its context, act on what the link names.
      await assertNoEscapingSymlinks(root);
      if (deps.nx && existsSync(join(root, 'nx.json'))) return deps.nx.detect(root, options, ctx);

      const found = await detectLanguage(root);
      if (!found) {
        throw new InputError(`No project found in ${root}: none of the marker files ${MARKER_FILES} (or nx.json) is at its root`, {
          hint: 'Build a directory holding a Go module, a Maven project, a .NET project, a Node package or an Nx workspace.',
          details: { dir: root, markers: [...MARKERS.map((m) => m.describe), 'nx.json'] },
        });
      }
      const name = options.name;
      const dockerfile = findDockerfile(root);
      if (dockerfile) await validateDockerfile(dockerfile, root);
      const buildCommand = overrideCommand(deps.overrides, [name, '.']);
      const project: Project = {
        name,
        root: '.',
        language: found.language,
        ...(dockerfile ? { dockerfile } : {}),
        dockerfileCandidates: dockerfileCandidates(root),
        ...(buildCommand ? { buildCommand } : {}),
      };
      ctx.log.write(
        `detected ${found.language} project ${name} (${found.marker})${dockerfile ? `, ${dockerfile}` : ', no Dockerfile'}${buildCommand ? `, build command from the config` : ''}`,
        'system',
      );
      return {
        kind: 'single',
        dir: root,
        name,
        projects: [project],
        selected: selectProjects([project], options.projects),
      };
    },
  };
}

/** The `--project` selection: every name must exist; none given selects every project. */
export function selectProjects(projects: readonly Project[], wanted: readonly string[] | undefined): string[] {
  const available = projects.map((p) => p.name);
  if (!wanted || wanted.length === 0) return available;
  const unknown = wanted.filter((w) => !available.includes(w));
  if (unknown.length > 0) {
    throw new InputError(
      `Unknown project${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => JSON.stringify(u)).join(', ')}: the available project${available.length > 1 ? 's are' : ' is'} ${available.map((a) => JSON.stringify(a)).join(', ')}`,
      { hint: 'Pass one of the available names to --project, or omit --project.', details: { unknown, available } },
    );
  }
  return available.filter((a) => wanted.includes(a));
}

/**
 * The configured build command of a project: the first of `keys` present in `overrides`
 * (a single-project repository: its name, then '.'; an Nx project: its name, then its root).
 */
export function overrideCommand(overrides: Record<string, ProjectOverride>, keys: readonly string[]): string[] | undefined {
  const key = keys.find((k) => Object.hasOwn(overrides, k));
  if (key === undefined) return undefined;
  const command = overrides[key]?.command;
  if (command === undefined) return undefined;
  if (!Array.isArray(command) || command.length === 0 || command.some((c) => typeof c !== 'string') || command[0] === '') {
    throw new InputError(`build.projects[${JSON.stringify(key)}].command must be a non-empty array of strings`, {
      hint: 'Write the command as an argument array, e.g. ["make", "dist"].',
    });
  }
  return [...command];
}
