// What a repository's `.oci-build.yaml` changed in a build (BuildRecord.settings), for `status ID`.

import type { BuildRecord, ProjectRepoSettings } from '../../core/types.js';
import { printable } from './format.js';

function describe(settings: ProjectRepoSettings): string {
  const parts: string[] = [];
  if (settings.enabled === false) parts.push('disabled');
  if (settings.command) parts.push(`command ${settings.command.join(' ')}`);
  if (settings.dockerfile) parts.push(`dockerfile ${settings.dockerfile}`);
  if (settings.context) parts.push(`context ${settings.context}`);
  if (settings.image) parts.push(`image ${settings.image}`);
  if (settings.env) parts.push(`env ${Object.entries(settings.env).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (settings.buildArgs) parts.push(`buildArgs ${Object.entries(settings.buildArgs).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return parts.join(' · ');
}

/** The settings section's title and lines; no lines when the build read no file. */
export function settingsSection(record: BuildRecord): { title: string; lines: string[] } {
  const settings = record.settings;
  if (!settings) return { title: 'Settings', lines: [] };
  const lines = Object.entries(settings.projects).map(([name, changed]) => `  ${printable(name)}: ${printable(describe(changed))}`);
  if (settings.tags.length > 0) lines.push(`  extra tags: ${settings.tags.map(printable).join(', ')}`);
  if (settings.branches) {
    const list = (globs: string[]) => (globs.length ? globs.map(printable).join(', ') : '-');
    lines.push(`  branches (webhooks): include ${list(settings.branches.include)} · exclude ${list(settings.branches.exclude)}`);
  }
  if (lines.length === 0) lines.push('  (nothing changed)');
  return { title: `Settings (${printable(settings.file)}, blob ${printable(settings.blob.slice(0, 12))})`, lines };
}
