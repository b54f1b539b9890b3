// `oci-build config show`: the configuration every command of this machine would run with, key by
// key, with where each value came from: a flag, an environment variable (named), the config file
// (named), or the default. Secrets are shown only as set (`***`), and every other line is masked.

import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { maskSecrets } from '../../core/secrets.js';
import type { CliIO } from '../io.js';
import { loadCliConfigWithSources } from '../load-config.js';

interface ConfigShowOptions {
  config?: string;
  json?: boolean;
  workDir?: string;
}

export async function configShowCommand(options: ConfigShowOptions, io: CliIO): Promise<ExitCodeValue> {
  const { config, entries } = await loadCliConfigWithSources(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  if (options.json) {
    const body = { configFile: config.configFile ?? null, settings: entries.map((e) => ({ key: e.path, ...(e.env ? { env: e.env } : {}), value: e.value ?? null, source: e.source })) };
    io.stdout.write(maskSecrets(`${JSON.stringify(body, null, 2)}\n`));
    return ExitCode.Success;
  }
  const shown = entries.map((e) => ({ key: e.path, value: render(e.value), source: e.source }));
  const keyWidth = Math.max(...shown.map((s) => s.key.length));
  const valueWidth = Math.min(48, Math.max(...shown.map((s) => s.value.length)));
  io.stdout.write(`config file: ${config.configFile ?? 'none (defaults, environment and flags only)'}\n\n`);
  for (const s of shown) io.stdout.write(maskSecrets(`${s.key.padEnd(keyWidth)}  ${s.value.padEnd(valueWidth)}  ${s.source}\n`));
  return ExitCode.Success;
}

function render(value: unknown): string {
  if (value === undefined) return '(not set)';
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.length === 0 ? '[]' : value.join(',');
  return JSON.stringify(value);
}
