// A repository's `.oci-build.yaml` applied to one build. config/repo-settings.ts reads and
// validates the file (behind the RepoSettingsReader port); what it changes is decided here, with no
// I/O but the port's: the branch filter of webhook builds, the projects' command, Dockerfile,
// context, image name, env and build args, and the extra image tags rendered from templates.
//
// The operator's settings are never the file's to change (the reader refuses their keys by name);
// where both set something, the operator's wins and the record says so: `build.projects.<name>.command`
// over the file's command, `build.env` over its env, `--build-arg` over its buildArgs.

import { join, normalize } from 'node:path';
import { compileBranchFilter, globToRegExp } from './branch-filter.js';
import { RepoSettingsError, type ConfigIssue } from './errors.js';
import { sanitizeTag, shortSha } from './naming.js';
import type { PhaseContext, RepoSettingsReader, SourceCheckout } from './ports.js';
import type { BuildJob, Project, ProjectRepoSettings, RepoSettings, RepoSettingsRecord, RepositoryInfo, TagEntry, Workspace } from './types.js';

export const REPO_SETTINGS_FILE = '.oci-build.yaml';

/** The placeholders a tag template may hold. */
export const TAG_PLACEHOLDERS = ['branch', 'tag', 'sha', 'shortSha', 'date'] as const;
export type TagPlaceholder = (typeof TAG_PLACEHOLDERS)[number];

/**
 * A key path as problems and warnings name it: `projects.api.command`, and `projects["."].command`
 * for a key holding a dot, a space, a quote or a bracket (or empty), so the path reads back.
 */
export function keyPath(segments: readonly string[]): string {
  return segments.map((s, i) => (i === 0 ? s : s === '' || /[.\s"'[\]]/.test(s) ? `[${JSON.stringify(s)}]` : `.${s}`)).join('');
}

// ---- branches ----

/** Why a webhook build of this branch builds nothing, or undefined. Local builds and tags are never filtered. */
export function branchSkipReason(settings: RepoSettings, job: Pick<BuildJob, 'trigger'>, branch: string | undefined): string | undefined {
  if (job.trigger !== 'webhook' || !settings.branches || branch === undefined) return undefined;
  const decision = compileBranchFilter(settings.branches, 'branches')(branch);
  return decision.build ? undefined : `${decision.reason} in ${settings.file}`;
}

// ---- tags ----

export interface TagContext {
  commit: string;
  branch?: string;
  tag?: string;
  defaultBranch?: string;
  /** The commit's time, seconds since the epoch: `{date}` is its UTC day, so one commit gives one tag. */
  commitTime: number;
  /** The branch has moved on (core/ports.ts SourceCheckout): no tag that does not name the commit. */
  branchMovedOn?: boolean;
}

/**
 * The extra tags of `entries` for this build, each a valid OCI tag (naming.ts sanitizeTag), and a
 * warning for every entry that names something the build does not have ({tag} on a branch build…).
 * An entry limited to branches that this build is not on is left out silently: that is its purpose.
 */
export function renderExtraTags(entries: readonly TagEntry[], ctx: TagContext, file = REPO_SETTINGS_FILE): { tags: string[]; warnings: string[] } {
  const tags: string[] = [];
  const warnings: string[] = [];
  const date = new Date(ctx.commitTime * 1000).toISOString().slice(0, 10).replace(/-/g, '');
  const values: Record<TagPlaceholder, string | undefined> = {
    branch: ctx.branch,
    tag: ctx.tag,
    sha: ctx.commit,
    shortSha: shortSha(ctx.commit),
    date,
  };
  for (const entry of entries) {
    const notAdded = (why: string) => warnings.push(`${file}: image.tags ${JSON.stringify(entry.tag)} not added: ${why}`);
    if (entry.branches !== undefined) {
      if (ctx.branch === undefined || !entry.branches.some((glob) => globToRegExp(glob).test(ctx.branch!))) continue;
    }
    if (entry.defaultBranch === true) {
      if (ctx.branch === undefined) continue;
      if (ctx.defaultBranch === undefined) {
        notAdded('the repository\'s default branch is not known for this build (webhook builds know it)');
        continue;
      }
      if (ctx.branch !== ctx.defaultBranch) continue;
    }
    const missing = TAG_PLACEHOLDERS.filter((name) => entry.tag.includes(`{${name}}`) && values[name] === undefined);
    if (missing.length > 0) {
      notAdded(`this build has no ${missing.join(' or ')} (${missing.map((m) => `{${m}}`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} known only when a ${missing.join(' or ')} is built)`);
      continue;
    }
    if (ctx.branchMovedOn && !/\{(sha|shortSha)\}/.test(entry.tag)) {
      notAdded('the branch has moved on since this commit, and a tag that does not name the commit would move back');
      continue;
    }
    const rendered = entry.tag.replace(/\{(branch|tag|sha|shortSha|date)\}/g, (_, name: TagPlaceholder) => values[name]!);
    const tag = sanitizeTag(rendered);
    if (tag === undefined) {
      notAdded(`${JSON.stringify(rendered)} cannot be made a valid tag`);
      continue;
    }
    if (!tags.includes(tag)) tags.push(tag);
  }
  return { tags, warnings };
}

// ---- projects ----

export interface AppliedProjects {
  workspace: Workspace;
  /** Per project name: what the file changed. */
  projects: Record<string, ProjectRepoSettings>;
  warnings: string[];
  /** Paths the file names that must be checked on disk, with the key that named them. */
  checks: Array<{ key: string; path: string; kind: 'dockerfile' | 'directory' }>;
  /** Projects the file disabled. */
  disabled: string[];
}

/** The project a key of `projects` names: by name, else by root ('.' for a single-project repository). */
function projectFor(workspace: Workspace, key: string): Project | undefined {
  return workspace.projects.find((p) => p.name === key) ?? workspace.projects.find((p) => p.root === key || (p.root === '.' && key === './'));
}

/** Applies the file's `projects` to a detected workspace; returns a new workspace. */
export function applyProjectSettings(detected: Workspace, settings: RepoSettings): AppliedProjects {
  const workspace: Workspace = { ...detected, projects: detected.projects.map((p) => ({ ...p })), selected: [...detected.selected] };
  const projects: Record<string, ProjectRepoSettings> = {};
  const warnings: string[] = [];
  const checks: AppliedProjects['checks'] = [];
  const disabled: string[] = [];
  const seen = new Set<string>();
  for (const [key, wanted] of Object.entries(settings.projects)) {
    const project = projectFor(workspace, key);
    const at = `${settings.file}: ${keyPath(['projects', key])}`;
    if (!project) {
      warnings.push(`${at} names no project of this build (${workspace.projects.map((p) => p.name).join(', ')})`);
      continue;
    }
    if (seen.has(project.name)) {
      warnings.push(`${at} names project ${project.name} again: only its first entry applies`);
      continue;
    }
    seen.add(project.name);
    const applied: ProjectRepoSettings = {};
    const projectDir = project.root === '.' ? '' : project.root;
    if (wanted.enabled === false) {
      applied.enabled = false;
      disabled.push(project.name);
      workspace.selected = workspace.selected.filter((name) => name !== project.name);
    }
    if (wanted.command !== undefined) {
      if (workspace.kind === 'nx') warnings.push(`${at}.command not applied: Nx builds the project's build target`);
      else if (project.buildCommand) warnings.push(`${at}.command not applied: the operator's build.projects command of ${project.name} wins`);
      else project.buildCommand = applied.command = [...wanted.command];
    }
    if (wanted.env !== undefined) {
      if (workspace.kind === 'nx') warnings.push(`${at}.env not applied: Nx builds every project in one command`);
      else project.env = applied.env = { ...wanted.env };
    }
    if (wanted.dockerfile !== undefined) {
      const file = join(workspace.dir, projectDir, wanted.dockerfile);
      project.dockerfile = file;
      project.dockerfileCandidates = [file];
      applied.dockerfile = wanted.dockerfile;
      checks.push({ key: keyPath(['projects', key, 'dockerfile']), path: file, kind: 'dockerfile' });
    }
    if (wanted.context !== undefined) {
      project.context = normalize(join(projectDir || '.', wanted.context));
      applied.context = wanted.context;
      checks.push({ key: keyPath(['projects', key, 'context']), path: join(workspace.dir, project.context), kind: 'directory' });
    }
    if (wanted.image !== undefined) project.image = applied.image = wanted.image;
    if (wanted.buildArgs !== undefined) project.buildArgs = applied.buildArgs = { ...wanted.buildArgs };
    if (Object.keys(applied).length > 0) projects[project.name] = applied;
  }
  return { workspace, projects, warnings, checks, disabled };
}

/** The image build's context directory of a project: the file's `context`, else the project's root. */
export function projectContextDir(workspace: Workspace, project: Project): string {
  const relative = project.context ?? project.root;
  return relative === '.' ? workspace.dir : join(workspace.dir, relative);
}

// ---- the detect phase ----

export type SettingsOutcome =
  | { kind: 'skip'; reason: string; settings?: RepoSettingsRecord; warnings: string[] }
  | { kind: 'build'; workspace: Workspace; settings?: RepoSettingsRecord; tags: string[]; warnings: string[] };

export interface DetectWithSettingsInput {
  reader?: RepoSettingsReader | undefined;
  checkout: Pick<SourceCheckout, 'dir' | 'commitTime' | 'branchMovedOn'>;
  job: BuildJob;
  repository: RepositoryInfo;
  ctx: PhaseContext;
  detect: () => Promise<Workspace>;
}

/**
 * The detect phase with the repository's file: read it (a bad file fails here, every problem
 * listed), skip a webhook build of a branch it excludes before anything is detected, detect, then
 * apply its projects and render its tags.
 */
export async function detectWithRepoSettings(input: DetectWithSettingsInput): Promise<SettingsOutcome> {
  const settings = await input.reader?.read(input.checkout.dir, input.ctx);
  if (!settings) return { kind: 'build', workspace: await input.detect(), tags: [], warnings: [] };
  const record: RepoSettingsRecord = {
    file: settings.file,
    blob: settings.blob,
    projects: {},
    tags: [],
    ...(settings.branches ? { branches: settings.branches } : {}),
  };
  input.ctx.log.write(`settings from ${settings.file} (blob ${settings.blob.slice(0, 7)})`, 'system');
  const skip = branchSkipReason(settings, input.job, input.repository.branch);
  if (skip) return { kind: 'skip', reason: skip, settings: record, warnings: [] };

  const applied = applyProjectSettings(await input.detect(), settings);
  const issues: ConfigIssue[] = [];
  for (const check of applied.checks) {
    const problem = await input.reader!.checkPath(applied.workspace.dir, check.path, check.kind);
    if (problem) issues.push({ path: check.key, message: problem });
  }
  if (issues.length > 0) throw new RepoSettingsError(settings.file, issues);
  record.projects = applied.projects;
  for (const [name, changed] of Object.entries(applied.projects)) {
    input.ctx.log.write(`${name}: ${Object.keys(changed).join(', ')} from ${settings.file}`, 'system');
  }
  if (applied.workspace.selected.length === 0 && applied.disabled.length > 0) {
    return { kind: 'skip', reason: `every project of this build is disabled in ${settings.file} (${applied.disabled.map((p) => `${keyPath(['projects', p, 'enabled'])}: false`).join(', ')})`, settings: record, warnings: applied.warnings };
  }
  const defaultBranch = input.repository.defaultBranch ?? input.job.repository?.defaultBranch;
  const rendered = renderExtraTags(
    settings.tags,
    {
      commit: input.repository.commit,
      ...(input.repository.branch !== undefined ? { branch: input.repository.branch } : {}),
      ...(input.repository.tag !== undefined ? { tag: input.repository.tag } : {}),
      ...(defaultBranch !== undefined ? { defaultBranch } : {}),
      commitTime: input.checkout.commitTime,
      ...(input.checkout.branchMovedOn ? { branchMovedOn: true } : {}),
    },
    settings.file,
  );
  record.tags = rendered.tags;
  return { kind: 'build', workspace: applied.workspace, settings: record, tags: rendered.tags, warnings: [...applied.warnings, ...rendered.warnings] };
}
