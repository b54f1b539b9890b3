import { loadConfigWithSources, readConfigFile, type Config, type ConfigEntry, type RawConfig } from '../config/config.js';
import { registerSecrets, urlSecrets } from '../core/secrets.js';
import type { CliIO } from './io.js';

/** The configuration for a command: its -c file (or ./oci-build.config.yaml), the environment, its flags. */
export async function loadCliConfig(configPath: string | undefined, io: CliIO, flags: RawConfig = {}): Promise<Config> {
  return (await loadCliConfigWithSources(configPath, io, flags)).config;
}

/** The same, with where each value came from (`oci-build config show`). */
export async function loadCliConfigWithSources(configPath: string | undefined, io: CliIO, flags: RawConfig = {}): Promise<{ config: Config; entries: ConfigEntry[] }> {
  const file = readConfigFile({ cwd: io.cwd, ...(configPath !== undefined ? { path: configPath } : {}) });
  const loaded = await loadConfigWithSources({ ...(file ? { file } : {}), env: io.env, flags: prune(flags), cwd: io.cwd });
  registerConfigSecrets(loaded.config, io.env);
  return loaded;
}

/**
 * Every command's secrets become the process's (core/secrets.ts) as soon as its config is known,
 * so that every line written afterwards is masked: build logs, daemon logs, records, errors.
 * `nats.user` is a name, not a secret. OCI_BUILD_API_TOKEN is `status --server`'s token. A NATS
 * URL may carry credentials too (`nats://user:pass@host`, `nats://token@host`), and errors name it.
 */
export function registerConfigSecrets(config: Config, env: Record<string, string | undefined>): void {
  registerSecrets([
    config.git.token,
    config.github.token,
    config.server.webhookSecret,
    ...config.server.apiTokens,
    config.nats.password,
    config.nats.token,
    ...config.nats.url.split(',').flatMap(urlSecrets),
    env.OCI_BUILD_API_TOKEN,
  ]);
}

/** Drops undefined leaves so an absent flag never overrides the environment or the file. */
function prune<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (child === undefined) continue;
    const pruned = prune(child);
    if (typeof pruned === 'object' && pruned !== null && !Array.isArray(pruned) && Object.keys(pruned).length === 0) continue;
    out[key] = pruned;
  }
  return out as T;
}
