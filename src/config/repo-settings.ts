// A repository's `.oci-build.yaml`, read from the checked-out commit: `readRepoSettingsFile` does
// the I/O, `parseRepoSettings` is pure. The operator's keys are refused by name (never applied),
// then the rest is validated against schema/oci-build.repo.schema.json (ajv, precompiled like the
// config's: config-validator.ts), then what a schema cannot say (reserved variable names); every
// problem at once, as `.oci-build.yaml: <key path>: <problem>` (RepoSettingsError, exit 2).
// core/repo-settings-apply.ts decides what the settings change in a build.
//
// The file is part of the repository, so it is public and written by whoever can push: nothing
// in it is trusted, and nothing secret belongs in it.

import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { lstat, readFile, realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, sep } from 'node:path';
import { RepoSettingsError, describeError, type ConfigIssue } from '../core/errors.js';
import type { PhaseContext, RepoSettingsReader } from '../core/ports.js';
import { REPO_SETTINGS_FILE, keyPath } from '../core/repo-settings-apply.js';
import type { ProjectRepoSettings, RepoSettings, TagEntry } from '../core/types.js';
import { validateDockerfile } from '../detect/dockerfile.js';
import { passedVariable } from '../exec/sandbox.js';
import { CONFIG_SCHEMA, configLeaves, envName } from './config-layers.js';
import { validatorFor, type ConfigValidator } from './config-validator.js';
import * as generated from './repo-settings-validator.generated.js';

const require = createRequire(import.meta.url);
/** The shipped schema of `.oci-build.yaml`, also used by editors. */
export const REPO_SETTINGS_SCHEMA = require('../../schema/oci-build.repo.schema.json') as object;

/** Larger files are refused: the file is read on every build, and a pushed one may be hostile. */
export const MAX_REPO_SETTINGS_BYTES = 64 * 1024;

/**
 * Variables a repository's `env` may not set: what the sandbox passes or sets itself (PATH, HOME,
 * CI, locale, proxies, CA bundles), where the dependency caches are (a build pointing them elsewhere
 * would lose them, or reach another tree), and oci-build's own. GOFLAGS is not among them: the
 * repository's value is added after oci-build's own flags (build/code-builder.ts).
 */
const RESERVED_VARIABLES: ReadonlySet<string> = new Set([
  'HOME',
  'CI',
  'GOMODCACHE',
  'GOCACHE',
  'GOPATH',
  'MAVEN_OPTS',
  'NUGET_PACKAGES',
  'NUGET_HTTP_CACHE_PATH',
  'NUGET_PLUGINS_CACHE_PATH',
  'DOTNET_CLI_HOME',
  'npm_config_cache',
  'NX_CACHE_DIRECTORY',
]);

export function reservedVariable(name: string): boolean {
  return RESERVED_VARIABLES.has(name) || passedVariable(name) || name.startsWith('OCI_BUILD_');
}

/** The operator's configuration keys (oci-build.config.yaml) a repository's file might try to set. */
const OPERATOR_SECTIONS = Object.keys(CONFIG_SCHEMA.properties ?? {});
const OPERATOR_LEAVES = new Map(configLeaves().map((leaf) => [leaf.path, leaf.env]));
/** Maps of the operator's config without an environment variable. */
const OPERATOR_MAPS = new Set(['build.env', 'build.projects']);
const OPERATOR_HINTS: Record<string, string> = {
  'build.projects': `a project's build command goes in projects.<name>.command`,
  'build.env': `a project's build variables go in projects.<name>.env`,
  'build.timeout': `the operator's build.timeout bounds every build, and a repository cannot raise it`,
};

/** The Git blob id of `bytes`, as `git hash-object` computes it. */
export function gitBlobId(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** The file's bytes at the root of `dir`, or undefined when there is none. A link or an oversized file is refused. */
export async function readRepoSettingsFile(dir: string, file = REPO_SETTINGS_FILE): Promise<Buffer | undefined> {
  const path = join(dir, file);
  const refuse = (message: string) => new RepoSettingsError(file, [{ path: '(file)', message }]);
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw refuse(`cannot be read: ${describeError(err)}`);
  }
  // Read before the tree's symlink check: a link could make an error message quote a host file.
  if (st.isSymbolicLink()) throw refuse('is a symbolic link; it must be a regular file of the repository');
  if (!st.isFile()) throw refuse('is not a regular file');
  if (st.size > MAX_REPO_SETTINGS_BYTES) throw refuse(`is ${st.size} bytes; at most ${MAX_REPO_SETTINGS_BYTES} are read`);
  return readFile(path);
}

let validator: ConfigValidator | undefined;

/** Pure: the file's bytes → its settings, or RepoSettingsError listing every problem. */
export async function parseRepoSettings(bytes: Buffer, file = REPO_SETTINGS_FILE): Promise<RepoSettings> {
  const blob = gitBlobId(bytes);
  if (!isUtf8(bytes)) throw new RepoSettingsError(file, [{ path: '(file)', message: 'is not valid UTF-8' }]);
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(bytes.toString('utf8'));
  if (doc.errors.length > 0) {
    throw new RepoSettingsError(
      file,
      doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}` : '(file)', message: `is not valid YAML: ${e.message.split('\n')[0]}` })),
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 50 }) ?? {};
  return settingsFrom(data, file, blob);
}

/** Pure: parsed YAML → settings. */
export function settingsFrom(data: unknown, file: string, blob: string): RepoSettings {
  if (!isPlainObject(data)) throw new RepoSettingsError(file, [{ path: '(root)', message: 'must be a mapping of keys (projects, image, branches)' }]);
  const issues = operatorKeyIssues(data);
  const rest = withoutOperatorKeys(data);
  validator ??= validatorFor(REPO_SETTINGS_SCHEMA, generated);
  if (!validator(rest)) issues.push(...(validator.errors ?? []).flatMap(schemaIssue));
  issues.push(...reservedVariableIssues(rest));
  if (issues.length > 0) throw new RepoSettingsError(file, issues);
  return compile(rest, file, blob);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function operatorMessage(path: string): string {
  const env = OPERATOR_LEAVES.get(path);
  const where = env ? `in oci-build.config.yaml or ${env}` : 'in oci-build.config.yaml';
  const hint = OPERATOR_HINTS[path] ?? OPERATOR_HINTS[path.split('.').slice(0, 2).join('.')];
  return `is the operator's key, not the repository's: the operator sets it ${where} for serve and the workers, and a repository's file never changes it${hint ? ` (${hint})` : ''}`;
}

/** Every operator key the file holds, named by its deepest known path (`image.registry`, `build.timeout`). */
export function operatorKeyIssues(data: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const section of Object.keys(data)) {
    if (!OPERATOR_SECTIONS.includes(section)) continue;
    const value = data[section];
    const named: string[] = [];
    if (isPlainObject(value)) {
      for (const key of Object.keys(value)) {
        const path = `${section}.${key}`;
        if (OPERATOR_LEAVES.has(path) || OPERATOR_MAPS.has(path)) named.push(path);
        else if (isPlainObject(value[key])) {
          for (const sub of Object.keys(value[key] as Record<string, unknown>)) if (OPERATOR_LEAVES.has(`${path}.${sub}`)) named.push(`${path}.${sub}`);
        }
      }
    }
    // `image` is also the repository's (image.tags): only its operator keys are refused.
    if (section === 'image') {
      for (const path of named) issues.push({ path, message: operatorMessage(path) });
      continue;
    }
    if (named.length === 0) issues.push({ path: section, message: operatorMessage(section) });
    else for (const path of named) issues.push({ path, message: operatorMessage(path) });
  }
  return issues;
}

function withoutOperatorKeys(data: Record<string, unknown>): Record<string, unknown> {
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (key === 'image' && isPlainObject(value)) {
      rest.image = Object.fromEntries(Object.entries(value).filter(([sub]) => !OPERATOR_LEAVES.has(`image.${sub}`)));
    } else if (!OPERATOR_SECTIONS.includes(key)) {
      rest[key] = value;
    }
  }
  return rest;
}

interface SchemaError {
  instancePath: string;
  schemaPath?: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const TEMPLATE_FORMAT = `must be a tag template: letters, digits, _ . - and the placeholders {branch} {tag} {sha} {shortSha} {date}, starting with a letter, a digit, _ or a placeholder`;

function schemaIssue(error: SchemaError): ConfigIssue[] {
  const segments = error.instancePath === '' ? [] : error.instancePath.replace(/^\//, '').split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const path = keyPath(segments);
  const schemaPath = error.schemaPath ?? '';
  // A bad key of a map gives its pattern error and `propertyNames`, which names the key: keep that one.
  if (schemaPath.includes('/propertyNames/')) return [];
  // (Told apart by where they are: ajv's standalone code inlines the definitions, so schema paths do not name them.)
  const tagTemplate = /^image\.tags\.\d+(\.tag)?$/.test(path);
  if (tagTemplate && error.keyword === 'type') return [{ path, message: 'must be a tag template (a string) or { tag, branches, defaultBranch }' }];
  const at = (suffix: string) => keyPath([...segments, suffix]);
  switch (error.keyword) {
    case 'additionalProperties':
      return [{ path: at(String(error.params.additionalProperty)), message: 'unknown key' }];
    case 'propertyNames':
      return [{ path: at(String(error.params.propertyName)), message: 'is not a valid variable name (letters, digits and _, not starting with a digit)' }];
    case 'required':
      return [{ path: at(String(error.params.missingProperty)), message: 'is required' }];
    case 'pattern':
      if (/^projects[.[].+\.(dockerfile|context)$/.test(path)) return [{ path, message: 'must be a relative path inside the project (no leading /, no .. segment, no backslash)' }];
      if (tagTemplate) return [{ path, message: TEMPLATE_FORMAT }];
      if (path.endsWith('.image')) return [{ path, message: 'must be an image repository name: lowercase path components (a-z, 0-9, separated by . _ __ or -) joined by /' }];
      return [{ path, message: `has an invalid format (${error.message ?? 'pattern'})` }];
    default:
      return [{ path: path || '(root)', message: error.message ?? 'is invalid' }];
  }
}

function reservedVariableIssues(data: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const projects = isPlainObject(data.projects) ? data.projects : {};
  for (const [name, project] of Object.entries(projects)) {
    if (!isPlainObject(project) || !isPlainObject(project.env)) continue;
    for (const variable of Object.keys(project.env)) {
      if (!reservedVariable(variable)) continue;
      issues.push({
        path: keyPath(['projects', name, 'env', variable]),
        message: `is set by oci-build for every build command (the sandbox's PATH, HOME, CI, locale, proxy and CA variables, the cache locations, OCI_BUILD_*); a repository cannot change it`,
      });
    }
  }
  return issues;
}

function strings(map: unknown): Record<string, string> {
  return Object.fromEntries(Object.entries(map as Record<string, string | number | boolean>).map(([k, v]) => [k, String(v)]));
}

function compile(data: Record<string, unknown>, file: string, blob: string): RepoSettings {
  const projects: Record<string, ProjectRepoSettings> = {};
  for (const [name, raw] of Object.entries((data.projects ?? {}) as Record<string, Record<string, unknown>>)) {
    const project: ProjectRepoSettings = {};
    if (raw.command !== undefined) project.command = [...(raw.command as string[])];
    if (raw.dockerfile !== undefined) project.dockerfile = raw.dockerfile as string;
    if (raw.context !== undefined) project.context = raw.context as string;
    if (raw.image !== undefined) project.image = raw.image as string;
    if (raw.env !== undefined) project.env = strings(raw.env);
    if (raw.buildArgs !== undefined) project.buildArgs = strings(raw.buildArgs);
    if (raw.enabled !== undefined) project.enabled = raw.enabled as boolean;
    projects[name] = project;
  }
  const image = (data.image ?? {}) as { tags?: Array<string | TagEntry> };
  const tags: TagEntry[] = (image.tags ?? []).map((entry) =>
    typeof entry === 'string'
      ? { tag: entry }
      : { tag: entry.tag, ...(entry.branches ? { branches: [...entry.branches] } : {}), ...(entry.defaultBranch !== undefined ? { defaultBranch: entry.defaultBranch } : {}) },
  );
  const branches = data.branches as { include?: string[]; exclude?: string[] } | undefined;
  return {
    file,
    blob,
    projects,
    tags,
    ...(branches ? { branches: { include: [...(branches.include ?? [])], exclude: [...(branches.exclude ?? [])] } } : {}),
  };
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The RepoSettingsReader of the pipeline: the file at the root of the checkout. */
export function createRepoSettingsReader(): RepoSettingsReader {
  return {
    async read(dir: string, ctx: PhaseContext) {
      const bytes = await readRepoSettingsFile(dir);
      if (bytes === undefined) {
        if (await lstat(join(dir, '.oci-build.yml')).then(() => true, () => false)) {
          ctx.log.write(`warning: .oci-build.yml is not read: oci-build reads ${REPO_SETTINGS_FILE}`, 'system');
        }
        return undefined;
      }
      return parseRepoSettings(bytes);
    },
    async checkPath(tree: string, path: string, kind: 'dockerfile' | 'directory') {
      const shown = relative(tree, path) || '.';
      let real: string;
      try {
        real = await realpath(path);
      } catch {
        return `${shown} does not exist in the commit built`;
      }
      if (!inside(await realpath(tree), real)) return `${shown} leads outside the repository`;
      if (kind === 'directory') return (await stat(real)).isDirectory() ? undefined : `${shown} is not a directory`;
      try {
        await validateDockerfile(path, tree);
        return undefined;
      } catch (err) {
        return describeError(err);
      }
    },
  };
}
