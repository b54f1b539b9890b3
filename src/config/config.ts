// Configuration: `readConfigFile` does the I/O, `parseConfig` is pure (defaults < file < environment
// < flags, merged by config-layers.ts), validated against the shipped JSON Schema with every
// problem reported at once, then compiled (durations in ms, paths absolute).

import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError, type ConfigIssue } from '../core/errors.js';
import { isLoopbackHost, parseHostEntry } from '../core/hosts.js';
import { CONFIG_SCHEMA, envLayer, mergeLayers, sourceOf, type ConfigOrigin } from './config-layers.js';
import { explainConfig, type ConfigEntry } from './config-explain.js';
import { configValidator, type ConfigValidator } from './config-validator.js';
import { parseDuration } from './duration.js';

export type StorageDriver = 'auto' | 'vfs' | 'overlay';
export type Isolation = 'auto' | 'chroot' | 'oci' | 'rootless';
export type SandboxMode = 'bubblewrap' | 'none';

/** The configuration as written in a file, the environment or flags (durations as strings). */
export interface RawConfig {
  workDir?: string;
  nats?: Partial<Record<'url' | 'stream' | 'subject' | 'statusBucket' | 'resultBucket' | 'logStream' | 'user' | 'password' | 'token' | 'credsFile' | 'nkeySeedFile', string>> & {
    servers?: string[];
    tls?: { ca?: string; cert?: string; key?: string };
    replicas?: number;
  };
  server?: {
    host?: string;
    port?: number;
    webhookSecret?: string;
    apiTokens?: string[];
    maxBodyBytes?: number;
    maxInflightBytes?: number;
    allowedHosts?: string[];
    publicRead?: boolean;
    branches?: { include?: string[]; exclude?: string[] };
    publicUrl?: string;
    badgeAuth?: boolean;
    queueWait?: string;
  };
  worker?: { concurrency?: number; maxDeliveries?: number; shutdownGrace?: string; cancelSuperseded?: boolean; name?: string };
  build?: {
    timeout?: string;
    killGrace?: string;
    mavenOffline?: boolean;
    reuse?: boolean;
    sandbox?: SandboxMode;
    env?: Record<string, string>;
    projects?: Record<string, { command?: string[] }>;
  };
  git?: { token?: string; tokenHosts?: string[]; depth?: number; retries?: number; retryDelay?: string; retryMaxDelay?: string };
  github?: { token?: string; appId?: number; privateKeyFile?: string; apiUrl?: string };
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
  nats: {
    /** Every server the client may connect to (nats.servers, or nats.url split at commas). */
    servers?: string[];
    /** The servers as one string, for messages. */
    url: string;
    stream: string;
    subject: string;
    statusBucket: string;
    resultBucket: string;
    logStream: string;
    user?: string;
    password?: string;
    token?: string;
    /** Absolute paths. */
    tls?: { ca?: string; cert?: string; key?: string };
    credsFile?: string;
    nkeySeedFile?: string;
    replicas: number;
  };
  server: {
    host: string;
    port: number;
    webhookSecret?: string;
    apiTokens: string[];
    maxBodyBytes: number;
    maxInflightBytes: number;
    allowedHosts: string[];
    /** The read routes answer without a token (the dashboard for everyone who can reach serve). */
    publicRead: boolean;
    branches: { include: string[]; exclude: string[] };
    /** Without a trailing slash. */
    publicUrl?: string;
    badgeAuth: boolean;
    /** server.queueWait: how long a webhook waits for JetStream before a 503. */
    queueWaitMs: number;
  };
  worker: { concurrency: number; maxDeliveries: number; shutdownGraceMs: number; cancelSuperseded: boolean; name?: string };
  build: {
    timeoutMs: number;
    killGraceMs: number;
    mavenOffline?: boolean;
    /** Reuse the image of an earlier build with the same inputs (README, Result reuse). */
    reuse: boolean;
    sandbox: SandboxMode;
    env: Record<string, string>;
    projects: Record<string, { command?: string[] }>;
  };
  git: { token?: string; tokenHosts: string[]; depth: number; retries: number; retryDelayMs: number; retryMaxDelayMs: number };
  /** Commit statuses (src/notify): by `token`, or as the App `appId` with the key in `privateKeyFile`. */
  github: { token?: string; appId?: number; privateKeyFile?: string; apiUrl: string };
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
    resultBucket: 'oci-build-results',
    logStream: 'OCI_BUILD_LOGS',
    replicas: 1,
  },
  server: {
    host: '127.0.0.1',
    port: 8080,
    apiTokens: [],
    maxBodyBytes: 25 * 1024 * 1024,
    maxInflightBytes: 64 * 1024 * 1024,
    allowedHosts: ['github.com'],
    publicRead: false,
    queueWait: '8s',
    branches: { include: [], exclude: [] },
  },
  worker: { concurrency: 1, maxDeliveries: 5, shutdownGrace: '5m', cancelSuperseded: true },
  build: { timeout: '30m', killGrace: '10s', reuse: true, sandbox: 'bubblewrap', env: {}, projects: {} },
  git: { tokenHosts: ['github.com'], depth: 50, retries: 4, retryDelay: '500ms', retryMaxDelay: '10s' },
  github: { apiUrl: 'https://api.github.com' },
  image: { push: false, tlsVerify: true, storageDriver: 'auto', isolation: 'auto' },
} satisfies RawConfig;

export const DEFAULT_CONFIG_FILE = 'oci-build.config.yaml';
export { CONFIG_SCHEMA, ENV_PREFIX, configLeaves, envName, type ConfigLeaf } from './config-layers.js';
export { settingsForLog, type ConfigEntry } from './config-explain.js';

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
  return parseConfig({ ...sources, fileData: await parseFileData(sources) });
}

/** The configuration and where each of its values came from (`oci-build config show`). */
export async function loadConfigWithSources(sources: ConfigSources): Promise<{ config: Config; entries: ConfigEntry[] }> {
  return parseConfigWithSources({ ...sources, fileData: await parseFileData(sources) });
}

async function parseFileData(sources: ConfigSources): Promise<unknown> {
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
  return fileData;
}

/** Pure: merges defaults, file, environment and flags, validates, compiles. */
export function parseConfig(sources: ConfigSources & { fileData?: unknown }): Config {
  return parseConfigWithSources(sources).config;
}

/** parseConfig, with where each value came from (`config show`, the daemons' start-up line). */
export function parseConfigWithSources(sources: ConfigSources & { fileData?: unknown }): { config: Config; entries: ConfigEntry[] } {
  const issues: ConfigIssue[] = [];
  const fileLabel = sources.file ? `file ${sources.file.path}` : 'file';

  if (sources.fileData !== undefined && (typeof sources.fileData !== 'object' || sources.fileData === null || Array.isArray(sources.fileData))) {
    throw new ConfigError('The config file must be a YAML mapping', [{ path: '(root)', message: 'expected key: value pairs', source: fileLabel }]);
  }

  const { merged, origin } = mergeLayers([
    [fileLabel, (sources.fileData as Record<string, unknown>) ?? {}],
    ['environment', envLayer(sources.env ?? {}, issues)],
    ['flags', (sources.flags ?? {}) as Record<string, unknown>],
  ]);

  validate(merged, origin, issues);
  checkHostLists(merged, origin, issues);
  checkGithub(merged, origin, issues);
  checkNats(merged, origin, issues);
  if (issues.length > 0) {
    throw new ConfigError(`Invalid configuration (${issues.length} problem${issues.length > 1 ? 's' : ''})`, issues, {
      hint: 'Fix the keys listed above; the documented defaults are in oci-build.config.yaml and the schema in schema/oci-build.config.schema.json.',
    });
  }
  const config = compile(merged as RawConfig, sources);
  let entries: ConfigEntry[] | undefined;
  return {
    config,
    // Computed only when asked for: every command parses its configuration, one shows it.
    get entries() {
      return (entries ??= explainConfig(merged, origin, config, DEFAULTS));
    },
  };
}

function validate(data: Record<string, unknown>, origin: ConfigOrigin, issues: ConfigIssue[]): void {
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
function checkHostLists(data: Record<string, unknown>, origin: ConfigOrigin, issues: ConfigIssue[]): void {
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

/**
 * github.*: a token or an App, not both; an App needs its key; the API is reached over HTTPS (plain
 * HTTP only on loopback), since the token or the App's tokens go there.
 */
function checkNats(data: Record<string, unknown>, origin: ConfigOrigin, issues: ConfigIssue[]): void {
  const nats = data.nats as RawConfig['nats'] | undefined;
  if (!nats) return;
  const issue = (path: string, message: string) => {
    const source = sourceOf(path, origin);
    issues.push({ path, message, ...(source ? { source } : {}) });
  };
  if (nats.tls && (nats.tls.cert === undefined) !== (nats.tls.key === undefined)) {
    issue(nats.tls.cert === undefined ? 'nats.tls.cert' : 'nats.tls.key', 'nats.tls.cert and nats.tls.key go together: a client certificate needs its key');
  }
  // A credentials file or an NKey seed signs the connection itself: neither goes with the other,
  // nor with a user or a token (which nats.js would send beside it, for the server to pick one).
  const files = (['credsFile', 'nkeySeedFile'] as const).filter((k) => nats[k] !== undefined);
  const others = (['user', 'token'] as const).filter((k) => nats[k] !== undefined);
  const auth = [...files, ...others];
  if (files.length > 0 && auth.length > 1) issue(`nats.${auth[1]}`, `set one way to authenticate to NATS, not ${auth.map((k) => `nats.${k}`).join(' and ')}`);
}

function checkGithub(data: Record<string, unknown>, origin: ConfigOrigin, issues: ConfigIssue[]): void {
  const github = data.github as RawConfig['github'] | undefined;
  if (!github) return;
  const issue = (path: string, message: string) => {
    const source = sourceOf(path, origin);
    issues.push({ path, message, ...(source ? { source } : {}) });
  };
  if (github.token !== undefined && github.appId !== undefined) issue('github.appId', 'set either github.token or github.appId (with github.privateKeyFile), not both');
  if (github.appId !== undefined && github.privateKeyFile === undefined) issue('github.privateKeyFile', 'is required with github.appId: the GitHub App\'s private key (PEM file)');
  if (github.privateKeyFile !== undefined && github.appId === undefined) issue('github.appId', 'is required with github.privateKeyFile: the GitHub App\'s id');
  if (typeof github.apiUrl === 'string') {
    try {
      const url = new URL(github.apiUrl);
      if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) issue('github.apiUrl', 'must be https:// (plain http only to a loopback address): the GitHub token is sent there');
      if (url.username || url.password) issue('github.apiUrl', 'must not carry credentials');
    } catch {
      issue('github.apiUrl', 'is not a URL');
    }
  }
}

function compileNats(raw: RawConfig['nats'], absolute: (path: string) => string): Config['nats'] {
  const { servers: listed, tls, credsFile, nkeySeedFile, ...rest } = raw ?? {};
  const merged = { ...DEFAULTS.nats, ...rest };
  const servers = listed ?? merged.url.split(',').map((s) => s.trim()).filter(Boolean);
  const files = tls ? Object.fromEntries(Object.entries(tls).map(([k, v]) => [k, absolute(v)])) : undefined;
  return {
    ...merged,
    servers,
    url: servers.join(','),
    ...(files ? { tls: files } : {}),
    ...(credsFile ? { credsFile: absolute(credsFile) } : {}),
    ...(nkeySeedFile ? { nkeySeedFile: absolute(nkeySeedFile) } : {}),
  };
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
    nats: compileNats(raw.nats, absolute),
    server: {
      host: raw.server?.host ?? d.server.host,
      port: raw.server?.port ?? d.server.port,
      ...(raw.server?.webhookSecret ? { webhookSecret: raw.server.webhookSecret } : {}),
      apiTokens: raw.server?.apiTokens ?? [],
      maxBodyBytes: raw.server?.maxBodyBytes ?? d.server.maxBodyBytes,
      maxInflightBytes: raw.server?.maxInflightBytes ?? d.server.maxInflightBytes,
      allowedHosts: raw.server?.allowedHosts ?? d.server.allowedHosts,
      publicRead: raw.server?.publicRead ?? d.server.publicRead,
      branches: { include: raw.server?.branches?.include ?? [], exclude: raw.server?.branches?.exclude ?? [] },
      ...(raw.server?.publicUrl ? { publicUrl: raw.server.publicUrl.replace(/\/+$/, '') } : {}),
      badgeAuth: raw.server?.badgeAuth ?? false,
      queueWaitMs: duration(raw.server?.queueWait, d.server.queueWait),
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
      reuse: raw.build?.reuse ?? d.build.reuse,
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
    github: {
      ...(raw.github?.token ? { token: raw.github.token } : {}),
      ...(raw.github?.appId !== undefined ? { appId: raw.github.appId } : {}),
      ...(raw.github?.privateKeyFile ? { privateKeyFile: absolute(raw.github.privateKeyFile) } : {}),
      apiUrl: (raw.github?.apiUrl ?? d.github.apiUrl).replace(/\/+$/, ''),
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
