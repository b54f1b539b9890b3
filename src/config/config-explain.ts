// `oci-build config show`: every settable key as a command sees it, with where its value came
// from (flag, environment variable, file, default). Secrets are shown only as set (`***`).

import type { Config } from './config.js';
import { configLeaves, sourceOf, type ConfigOrigin } from './config-layers.js';

/** One settable key as a command sees it: its value, and where that came from. */
export interface ConfigEntry {
  path: string;
  /** Its environment variable (maps such as build.env have none). */
  env?: string;
  /** As written (durations as strings); paths resolved; secrets as `***`; undefined when unset. */
  value: unknown;
  /** `default`, `file <path>`, the environment variable's name, or `flags`. */
  source: string;
}

/** Keys whose values are never shown, only whether they are set. */
const SECRET_PATHS = new Set(['git.token', 'server.webhookSecret', 'server.apiTokens', 'nats.password', 'nats.token', 'github.token']);
/** Keys shown as the compiled configuration resolves them (relative to the file, `~` expanded). */
const PATH_KEYS: Record<string, (config: Config) => string | undefined> = {
  workDir: (c) => c.workDir,
  'image.root': (c) => c.image.root,
  'image.runRoot': (c) => c.image.runRoot,
  'image.authFile': (c) => c.image.authFile,
  'github.privateKeyFile': (c) => c.github.privateKeyFile,
};

export function explainConfig(merged: Record<string, unknown>, origin: ConfigOrigin, config: Config, defaults: object): ConfigEntry[] {
  const keys = [
    ...configLeaves().map((leaf) => ({ path: leaf.path, env: leaf.env as string | undefined })),
    { path: 'build.env', env: undefined },
    { path: 'build.projects', env: undefined },
  ];
  return keys.map(({ path, env }) => {
    const set = valueAt(merged, path);
    let value = set ?? valueAt(defaults, path);
    if (PATH_KEYS[path]) value = PATH_KEYS[path]!(config);
    if (value !== undefined && SECRET_PATHS.has(path)) value = Array.isArray(value) ? value.map(() => '***') : '***';
    return { path, ...(env ? { env } : {}), value, source: set === undefined ? 'default' : (sourceOf(path, origin) ?? 'default') };
  });
}

function valueAt(data: unknown, path: string): unknown {
  let node = data;
  for (const key of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * For the daemons' start-up log line: every key's value (secrets as `***`), and the source of those
 * not left at their default.
 */
export function settingsForLog(entries: readonly ConfigEntry[]): { values: Record<string, unknown>; setBy: Record<string, string> } {
  const values: Record<string, unknown> = {};
  const setBy: Record<string, string> = {};
  for (const entry of entries) {
    values[entry.path] = entry.value ?? null;
    if (entry.source !== 'default') setBy[entry.path] = entry.source;
  }
  return { values, setBy };
}
