// `oci-build status`: recent builds as one aligned table, and `status ID`: everything the record
// knows about one build. Both return complete lines (the text ends with a newline).

import { shortSha } from '../../core/naming.js';
import type { BuildRecord } from '../../core/types.js';
import { paintStatus, palette } from './color.js';
import { alignColumns, elapsedMs, formatAge, formatDuration, printable, printableLines, type Cell } from './format.js';
import { settingsSection } from './settings-lines.js';
import { defaultHint, imageLines, noImageLines, pushSection, warningLines } from './summary.js';

export interface StatusTableOptions {
  now: Date;
  color: boolean;
}

const HEADER = ['ID', 'REPOSITORY', 'BRANCH', 'COMMIT', 'STATUS', 'DURATION', 'AGE'];

export function renderStatusTable(records: BuildRecord[], options: StatusTableOptions): string {
  if (records.length === 0) return 'No builds found.\n';
  const c = palette(options.color);
  const rows: Array<Array<Cell | string>> = [
    HEADER.map((text) => ({ text, paint: (t: string) => c.bold(t) })),
    ...records.map((record) => [
      printable(record.id),
      printable(record.repository.fullName || '-'),
      printable(record.repository.branch ?? record.repository.tag ?? '-'),
      record.repository.commit ? printable(shortSha(record.repository.commit)) : '-',
      { text: record.status, paint: (t: string) => paintStatus(t, c) },
      buildDuration(record, options.now),
      formatAge(record.createdAt, options.now),
    ]),
  ];
  return `${alignColumns(rows).join('\n')}\n`;
}

/** Finished builds: start to finish. A running build: how long so far, marked with `…`. */
export function buildDuration(record: BuildRecord, now: Date): string {
  const start = record.startedAt ?? (record.status === 'queued' ? undefined : record.createdAt);
  if (record.finishedAt) {
    const ms = elapsedMs(start, record.finishedAt);
    return ms === undefined ? '-' : formatDuration(ms);
  }
  if (record.status === 'running') {
    const ms = elapsedMs(start, now);
    return ms === undefined ? '-' : `${formatDuration(ms)}…`;
  }
  return '-';
}

export interface BuildDetailsOptions {
  /** Ages are counted to this time; default: the current time. */
  now?: Date;
  color: boolean;
}

export function renderBuildDetails(record: BuildRecord, options: BuildDetailsOptions): string {
  const c = palette(options.color);
  const now = options.now ?? new Date();
  const repo = record.repository;
  const field = (name: string, value: string | Cell | undefined): Array<Cell | string> | undefined =>
    value === undefined || value === '' ? undefined : [{ text: name, paint: (t) => c.bold(t) }, value];
  const when = (iso: string | undefined) => (iso ? `${iso} (${formatAge(iso, now)})` : undefined);
  const duration = buildDuration(record, now);
  const fields = [
    field('Build', printable(record.id)),
    field('Status', { text: record.status, paint: (t) => paintStatus(t, c) }),
    field('Repository', printable(repo.fullName)),
    field('Clone URL', repo.cloneUrl ? printable(repo.cloneUrl) : undefined),
    field('Ref', repo.ref ? printable(repo.ref) : undefined),
    field('Branch', repo.branch ? printable(repo.branch) : undefined),
    field('Tag', repo.tag ? printable(repo.tag) : undefined),
    field('Commit', repo.commit ? `${printable(repo.commit)}${repo.dirty ? ' (uncommitted changes)' : ''}` : undefined),
    field('Before', repo.before ? printable(repo.before) : undefined),
    field('Trigger', `${record.trigger}${record.deliveryId ? ` (delivery ${printable(record.deliveryId)})` : ''}`),
    field('Worker', record.worker ? printable(record.worker) : undefined),
    field('Created', when(record.createdAt)),
    field('Started', when(record.startedAt)),
    field('Finished', when(record.finishedAt)),
    field('Duration', duration === '-' ? undefined : duration),
    field('Cancelled by', record.cancelledBy ? printable(record.cancelledBy) : undefined),
    field('Skipped', record.skipReason ? printable(record.skipReason) : undefined),
    field('Waiting for', record.waitingFor ? printable(waitingText(record.waitingFor, formatAge(record.waitingFor.since, now))) : undefined),
    field('Log', record.logPath ? printable(record.logPath) : undefined),
  ].filter((row): row is Array<Cell | string> => row !== undefined);
  const lines = alignColumns(fields);

  if (record.phases.length > 0) {
    const header = ['PHASE', 'PROJECT', 'STATUS', 'DURATION', 'NOTE'].map((text) => ({ text, paint: (t: string) => c.bold(t) }));
    const rows = record.phases.map((phase) => [
      phase.name,
      printable(phase.project ?? '-'),
      { text: phase.status, paint: (t: string) => paintStatus(t, c) },
      phase.status === 'skipped' ? '-' : formatDuration(phase.durationMs),
      phaseNote(phase),
    ]);
    lines.push('', ...alignColumns([header, ...rows]));
  }

  pushSection(lines, 'Images', imageLines(record, c), c);
  pushSection(lines, 'Projects without an image', noImageLines(record), c);
  const settings = settingsSection(record);
  pushSection(lines, settings.title, settings.lines, c);
  pushSection(lines, 'Warnings', warningLines(record, c), c);

  if (record.error) {
    const message = printableLines(record.error.message).split('\n');
    lines.push('', c.red(`Error (${record.error.phase}, ${printable(record.error.code)}): ${message[0] ?? ''}`), ...message.slice(1).map((l) => `  ${l}`));
    const hint = defaultHint(record);
    if (hint) lines.push(`${c.yellow('hint:')} ${printableLines(hint)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The phase's error in full (one line), or its warning, or the cache hit. */
function phaseNote(phase: BuildRecord['phases'][number]): string {
  if (phase.error) return printable(phase.error);
  const notes = [...(phase.cached ? ['cached'] : []), ...(phase.warning ? [`warning: ${printable(phase.warning)}`] : [])];
  return notes.join(', ');
}

/** `build <id> (on <worker>) to make the image of <project>: same inputs; since …`, for a build waiting for another's image. */
function waitingText(waiting: NonNullable<BuildRecord['waitingFor']>, age: string): string {
  return `build ${waiting.buildId}${waiting.worker ? ` on ${waiting.worker}` : ''} to make the image of ${waiting.project} (same inputs), since ${waiting.since} (${age})`;
}
