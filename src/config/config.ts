// Configuration: `readConfigFile` does the I/O, `parseConfig` is pure (defaults < file < environment
// < flags), validated against the shipped JSON Schema with every problem reported at once.

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import { parseHostEntry } from '../core/hosts.js';
import { configValidator, type ConfigValidator } from './config-validator.js';
import { parseDuration } from './duration.js';

export type StorageDriver = 'auto' | 'vfs' | 'overlay';
export type Isolation = 'auto' | 'chroot' | 'oci' | 'rootless';
export type SandboxMode = 'bubblewrap' | 'none';

/** The configuration as written in a file, the environment or flags (durations as strings). */
export interface RawConfig {
  workDir?: string;
  nats?: Partial<Record<'url' | 'stream' | 'subject' | 'statusBucket' | 'logStream' | 'user' | 'password' | 'token', string>>;
  server?: {
    host?: string;
    port?: number;
    webhookSecret?: string;
    apiTokens?: string[];
    maxBodyBytes?: number;
    maxInflightBytes?: number;
    allowedHosts?: string[];
    branches?: { include?: string[]; exclude?: string[] };
  };
  worker?: { concurrency?: number; maxDeliveries?: number; shutdownGrace?: string; cancelSuperseded?: boolean; name?: string };
  build?: {
    timeout?: string;
    killGrace?: string;
    mavenOffline?: boolean;
    sandbox?: SandboxMode;
    env?: Record<string, string>;
    projects?: Record<string, { command?: string[] }>;
  };
  git?: { token?: string; tokenHosts?: string[]; depth?: number; retries?: number; retryDelay?: string; retryMaxDelay?: string };
  image?: {
    registry?: string;
    push?: boolean;
    tlsVerify?: boolean;
    root?: string;
    runRoot?: string;
    storageDriver?: StorageDriver;
    isolation?: Isolation;
    authFile?: string;
  };
}

/** The configuration the program uses: every default filled in, durations in milliseconds. */
export interface Config {
  workDir: string;
  nats: { url: string; stream: string; subject: string; statusBucket: string; logStream: string; user?: string; password?: string; token?: string };
  server: {
    host: string;
    port: number;
    webhookSecret?: string;
    apiTokens: string[];
    maxBodyBytes: number;
    maxInflightBytes: number;
    allowedHosts: string[];
    branches: { include: string[]; exclude: string[] };
  };
  worker: { concurrency: number; maxDeliveries: number; shutdownGraceMs: number; cancelSuperseded: boolean; name?: string };
  build: {
    timeoutMs: number;
    killGraceMs: number;
    mavenOffline?: boolean;
    sandbox: SandboxMode;
    env: Record<string, string>;
    projects: Record<string, { command?: string[] }>;
  };
  git: { token?: string; tokenHosts: string[]; depth: number; retries: number; retryDelayMs: number; retryMaxDelayMs: number };
  image: {
    registry?: string;
    push: boolean;
    tlsVerify: boolean;
    root?: string;
    runRoot?: string;
    storageDriver: StorageDriver;
    isolation: Isolation;
    authFile?: string;
  };
  /** The file the configuration was read from, if any. */
  configFile?: string;
}

export const DEFAULTS = {
  workDir: '~/.oci-build',
  nats: {
    url: 'nats://127.0.0.1:4222',
    stream: 'OCI_BUILD_JOBS',
    subject: 'builds.webhook',
    statusBucket: 'oci-build-status',
    logStream: 'OCI_BUILD_LOGS',
  },
  server: {
    host: '127.0.0.1',
    port: 8080,
    apiTokens: [],
    maxBodyBytes: 25 * 1024 * 1024,
    maxInflightBytes: 64 * 1024 * 1024,
    allowedHosts: ['github.com'],
    branches: { include: [], exclude: [] },
  },
  worker: { concurrency: 1, maxDeliveries: 5, shutdownGrace: '5m', cancelSuperseded: true },
  build: { timeout: '30m', killGrace: '10s', sandbox: 'bubblewrap', env: {}, projects: {} },
  git: { tokenHosts: ['github.com'], depth: 50, retries: 4, retryDelay: '500ms', retryMaxDelay: '10s' },
  image: { push: false, tlsVerify: true, storageDriver: 'auto', isolation: 'auto' },
} satisfies RawConfig;

export const DEFAULT_CONFIG_FILE = 'oci-build.config.yaml';
export const ENV_PREFIX = 'OCI_BUILD_';

const require = createRequire(import.meta.url);
type JsonSchema = { type?: string; properties?: Record<string, JsonSchema>; $ref?: string; items?: JsonSchema; additionalProperties?: unknown };
/** The shipped schema (schema/oci-build.config.schema.json), also used by editors. */
export const CONFIG_SCHEMA = require('../../schema/oci-build.config.schema.json') as JsonSchema & { definitions: Record<string, JsonSchema> };

export interface ConfigLeaf {
  /** Dotted path, e.g. `nats.statusBucket`. */
  path: string;
  /** `OCI_BUILD_NATS_STATUS_BUCKET`. */
  env: string;
  type: 'string' | 'integer' | 'boolean' | 'array';
}

/** Every settable key with its environment variable, read from the schema (one source of truth). */
export function configLeaves(schema: JsonSchema = CONFIG_SCHEMA, prefix = ''): ConfigLeaf[] {
  const leaves: ConfigLeaf[] = [];
  for (const [key, sub] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (sub.type === 'object') {
      if (sub.properties) leaves.push(...configLeaves(sub, path));
      continue; // maps (build.projects) have no environment variable
    }
    const type = sub.$ref ? 'string' : (sub.type as ConfigLeaf['type']);
    leaves.push({ path, env: envName(path), type });
  }
  return leaves;
}

export function envName(path: string): string {
  return ENV_PREFIX + path.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export interface ConfigFile {
  path: string;
  text: string;
}

/**
 * Finds and reads the config file: the one named (must exist), else ./oci-build.config.yaml when present.
 */
export function readConfigFile(options: { path?: string; cwd: string }): ConfigFile | undefined {
  const explicit = options.path !== undefined;
  const path = resolve(options.cwd, options.path ?? DEFAULT_CONFIG_FILE);
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!explicit && code === 'ENOENT') return undefined;
    throw new ConfigError(`Cannot read the config file ${path}`, [
      { path: '-c/--config', message: code === 'ENOENT' ? 'no such file' : (err as Error).message },
    ], { hint: 'Check the path given to --config, or omit it to use ./oci-build.config.yaml when present.' });
  }
}

export interface ConfigSources {
  file?: ConfigFile;
  env?: Record<string, string | undefined>;
  flags?: RawConfig;
  /** Home directory for `~` expansion. */
  home?: string;
  /** Directory relative paths in the file are resolved against (default: the file's directory). */
  cwd?: string;
}

let validator: ConfigValidator | undefined;

async function parseYaml(text: string): Promise<unknown> {
  const { parse } = await import('yaml');
  return parse(text);
}

/** Loads and validates the configuration. Throws ConfigError listing every problem. */
export async function loadConfig(sources: ConfigSources): Promise<Config> {
  let fileData: unknown;
  if (sources.file) {
    try {
      fileData = (await parseYaml(sources.file.text)) ?? {};
    } catch (err) {
      throw new ConfigError(`The config file ${sources.file.path} is not valid YAML`, [
        { path: sources.file.path, message: (err as Error).message.split('\n')[0] ?? 'parse error' },
      ]);
    }
  }
  return parseConfig({ ...sources, fileData });
}

/** Pure: merges defaults, file, environment and flags, validates, compiles. */
export function parseConfig(sources: ConfigSources & { fileData?: unknown }): Config {
  const issues: ConfigIssue[] = [];
  const origin = new Map<string, string>();
  const fileLabel = sources.file ? `file ${sources.file.path}` : 'file';

  if (sources.fileData !== undefined && (typeof sources.fileData !== 'object' || sources.fileData === null || Array.isArray(sources.fileData))) {
    throw new ConfigError('The config file must be a YAML mapping', [{ path: '(root)', message: 'expected key: value pairs', source: fileLabel }]);
  }

  const layers: Array<[string, Record<string, unknown>]> = [
    [fileLabel, (sources.fileData as Record<string, unknown>) ?? {}],
    ['environment', envLayer(sources.env ?? {}, issues)],
    ['flags', (sources.flags ?? {}) as Record<string, unknown>],
  ];
  const merged: Record<string, unknown> = {};
  for (const [label, layer] of layers) deepMerge(merged, layer, '', label, origin);

  validate(merged, origin, issues);
  checkHostLists(merged, origin, issues);
  if (issues.length > 0) {
    throw new ConfigError(`Invalid configuration (${issues.length} problem${issues.length > 1 ? 's' : ''})`, issues, {
      hint: 'Fix the keys listed above; the documented defaults are in oci-build.config.yaml and the schema in schema/oci-build.config.schema.json.',
    });
  }
  return compile(merged as RawConfig, sources);
}

function envLayer(env: Record<string, string | undefined>, issues: ConfigIssue[]): Record<string, unknown> {
  const layer: Record<string, unknown> = {};
  for (const leaf of configLeaves()) {
    const value = env[leaf.env];
    if (value === undefined || value === '') continue;
    let parsed: unknown = value;
    if (leaf.type === 'integer') {
      parsed = /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value;
    } else if (leaf.type === 'boolean') {
      const lower = value.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(lower)) parsed = true;
      else if (['false', '0', 'no', 'off'].includes(lower)) parsed = false;
      else {
        issues.push({ path: leaf.path, message: `must be true or false, got ${JSON.stringify(value)}`, source: leaf.env });
        continue;
      }
    } else if (leaf.type === 'array') {
      parsed = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    }
    setPath(layer, leaf.path, parsed);
  }
  return layer;
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>, prefix: string, label: string, origin: Map<string, string>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    if (isPlainObject(value) && (isPlainObject(target[key]) || target[key] === undefined)) {
      if (target[key] === undefined) target[key] = {};
      origin.set(path, label);
      deepMerge(target[key] as Record<string, unknown>, value, path, label, origin);
    } else {
      target[key] = value;
      origin.set(path, label);
    }
  }
}

function sourceOf(path: string, origin: Map<string, string>): string | undefined {
  for (let p = path; p; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
    const label = origin.get(p);
    if (label) return label === 'environment' ? envName(path) : label;
  }
  return undefined;
}

function validate(data: Record<string, unknown>, origin: Map<string, string>, issues: ConfigIssue[]): void {
  // Precompiled unless the schema changed since (config-validator.ts); `--version` and `--help`
  // never load this module at all.
  validator ??= configValidator(CONFIG_SCHEMA);
  if (validator(data)) return;
  for (const error of validator.errors ?? []) {
    let path = error.instancePath.replace(/^\//, '').replace(/\//g, '.');
    let message = error.message ?? 'is invalid';
    // A bad key of a map (build.env) gives two errors, the key's pattern and `propertyNames`, which
    // names the key: keep that one.
    if (error.schemaPath?.includes('/propertyNames/')) continue;
    if (error.keyword === 'propertyNames' && typeof error.params.propertyName === 'string') {
      path = `${path}.${error.params.propertyName}`;
      message = 'is not a valid name (letters, digits and _, not starting with a digit)';
    } else if (error.keyword === 'additionalProperties') {
      const extra = String(error.params.additionalProperty);
      path = path ? `${path}.${extra}` : extra;
      message = 'unknown key';
    } else if (error.keyword === 'pattern' && /duration/.test(JSON.stringify(error))) {
      message = 'must be a duration such as 30s, 10m, 1h30m or 7d';
    } else if (error.keyword === 'pattern') {
      message = `has an invalid format (${message})`;
    } else if (error.keyword === 'enum') {
      message = `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`;
    }
    const source = sourceOf(path, origin);
    issues.push({ path: path || '(root)', message, ...(source ? { source } : {}) });
  }
}

/** Host lists must parse as `host` or `host:port` (core/hosts.ts), beyond what the schema says. */
function checkHostLists(data: Record<string, unknown>, origin: Map<string, string>, issues: ConfigIssue[]): void {
  for (const path of ['server.allowedHosts', 'git.tokenHosts']) {
    const [section, key] = path.split('.') as [string, string];
    const list = (data[section] as Record<string, unknown> | undefined)?.[key];
    if (!Array.isArray(list)) continue;
    list.forEach((entry, index) => {
      if (typeof entry !== 'string') return;
      try {
        parseHostEntry(entry);
      } catch {
        const source = sourceOf(path, origin);
        issues.push({ path: `${path}.${index}`, message: `${JSON.stringify(entry)} is not a host or host:port`, ...(source ? { source } : {}) });
      }
    });
  }
}

function expandHome(path: string, home: string): string {
  return path === '~' ? home : path.startsWith('~/') ? `${home}/${path.slice(2)}` : path;
}

function compile(raw: RawConfig, sources: ConfigSources): Config {
  const home = sources.home ?? homedir();
  const base = sources.cwd ?? process.cwd();
  const absolute = (p: string) => {
    const expanded = expandHome(p, home);
    return isAbsolute(expanded) ? expanded : resolve(base, expanded);
  };
  const d = DEFAULTS;
  const duration = (value: string | undefined, fallback: string) => parseDuration(value ?? fallback);
  const config: Config = {
    workDir: absolute(raw.workDir ?? d.workDir),
    nats: { ...d.nats, ...raw.nats },
    server: {
      host: raw.server?.host ?? d.server.host,
      port: raw.server?.port ?? d.server.port,
      ...(raw.server?.webhookSecret ? { webhookSecret: raw.server.webhookSecret } : {}),
      apiTokens: raw.server?.apiTokens ?? [],
      maxBodyBytes: raw.server?.maxBodyBytes ?? d.server.maxBodyBytes,
      maxInflightBytes: raw.server?.maxInflightBytes ?? d.server.maxInflightBytes,
      allowedHosts: raw.server?.allowedHosts ?? d.server.allowedHosts,
      branches: { include: raw.server?.branches?.include ?? [], exclude: raw.server?.branches?.exclude ?? [] },
    },
    worker: {
      concurrency: raw.worker?.concurrency ?? d.worker.concurrency,
      maxDeliveries: raw.worker?.maxDeliveries ?? d.worker.maxDeliveries,
      shutdownGraceMs: duration(raw.worker?.shutdownGrace, d.worker.shutdownGrace),
      cancelSuperseded: raw.worker?.cancelSuperseded ?? d.worker.cancelSuperseded,
      ...(raw.worker?.name ? { name: raw.worker.name } : {}),
    },
    build: {
      timeoutMs: duration(raw.build?.timeout, d.build.timeout),
      killGraceMs: duration(raw.build?.killGrace, d.build.killGrace),
      ...(raw.build?.mavenOffline !== undefined ? { mavenOffline: raw.build.mavenOffline } : {}),
      sandbox: raw.build?.sandbox ?? d.build.sandbox,
      env: raw.build?.env ?? {},
      projects: raw.build?.projects ?? {},
    },
    git: {
      ...(raw.git?.token ? { token: raw.git.token } : {}),
      tokenHosts: raw.git?.tokenHosts ?? d.git.tokenHosts,
      depth: raw.git?.depth ?? d.git.depth,
      retries: raw.git?.retries ?? d.git.retries,
      retryDelayMs: duration(raw.git?.retryDelay, d.git.retryDelay),
      retryMaxDelayMs: duration(raw.git?.retryMaxDelay, d.git.retryMaxDelay),
    },
    image: {
      ...(raw.image?.registry ? { registry: raw.image.registry } : {}),
      push: raw.image?.push ?? d.image.push,
      tlsVerify: raw.image?.tlsVerify ?? d.image.tlsVerify,
      ...(raw.image?.root ? { root: absolute(raw.image.root) } : {}),
      ...(raw.image?.runRoot ? { runRoot: absolute(raw.image.runRoot) } : {}),
      storageDriver: raw.image?.storageDriver ?? 'auto',
      isolation: raw.image?.isolation ?? 'auto',
      ...(raw.image?.authFile ? { authFile: absolute(raw.image.authFile) } : {}),
    },
    ...(sources.file ? { configFile: sources.file.path } : {}),
  };
  return config;
}
