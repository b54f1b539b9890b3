// The closing summary of `oci-build build`: what was produced, how long each phase took, and on
// failure what went wrong and what to do. Returns complete lines (the text ends with a newline).

import type { ChalkInstance } from 'chalk';
import { shortSha } from '../../core/naming.js';
import type { BuildRecord, JobStatus, PhaseMetric } from '../../core/types.js';
import { SYMBOLS, palette } from './color.js';
import { alignColumns, elapsedMs, firstLine, formatDuration, printable, printableLines, type Cell } from './format.js';

export interface SummaryOptions {
  color: boolean;
  /** The failure's own hint (OciBuildError.hint), which the record does not keep. */
  hint?: string;
}

export function renderSummary(record: BuildRecord, options: SummaryOptions): string {
  const c = palette(options.color);
  const lines: string[] = [];
  const duration = elapsedMs(record.startedAt ?? record.createdAt, record.finishedAt);
  lines.push(
    `${statusSymbol(record.status, c)} ${c.bold(`Build ${printable(record.id)} ${record.status}`)}${duration !== undefined ? ` in ${formatDuration(duration)}` : ''}`,
  );
  const source = sourceLine(record);
  if (source) lines.push(`  ${c.dim(source)}`);
  if (record.skipReason) lines.push(`  ${c.yellow(`skipped: ${printable(record.skipReason)}`)}`);

  pushSection(lines, 'Images', imageLines(record, c), c);
  pushSection(lines, 'Projects without an image', noImageLines(record), c);
  pushSection(lines, 'Phases', phaseLines(record.phases, c), c);
  pushSection(lines, 'Warnings', warningLines(record, c), c);
  if (record.logPath) lines.push('', `${c.bold('Log')}  ${printable(record.logPath)}`);

  if (record.error) {
    const message = printableLines(record.error.message).split('\n');
    lines.push('', `${c.red(`${SYMBOLS.failure} ${record.error.phase} failed:`)} ${message[0] ?? ''}`, ...message.slice(1).map((l) => `  ${l}`));
    const hint = options.hint ?? defaultHint(record);
    if (hint) lines.push(`${c.yellow('hint:')} ${printableLines(hint)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** `owner/name · main · abc1234-dirty`: what was built. */
export function sourceLine(record: BuildRecord): string {
  const repo = record.repository;
  const parts: string[] = [];
  if (repo.fullName) parts.push(printable(repo.fullName));
  const ref = repo.branch ?? repo.tag;
  if (ref) parts.push(printable(ref));
  if (repo.commit) parts.push(`${printable(shortSha(repo.commit))}${repo.dirty ? '-dirty' : ''}`);
  return parts.join(' · ');
}

export function statusSymbol(status: JobStatus, c: ChalkInstance): string {
  switch (status) {
    case 'succeeded':
      return c.green(SYMBOLS.success);
    case 'failed':
      return c.red(SYMBOLS.failure);
    case 'cancelled':
      return c.yellow(SYMBOLS.cancelled);
    case 'skipped':
      return c.yellow(SYMBOLS.skipped);
    default:
      return c.cyan('…');
  }
}

/** Appends a titled, indented section when it has something to say. */
export function pushSection(lines: string[], title: string, body: string[], c: ChalkInstance): void {
  if (body.length === 0) return;
  lines.push('', c.bold(title), ...body);
}

/** Each image with its tags, digest and whether it reached the registry. */
export function imageLines(record: BuildRecord, c: ChalkInstance): string[] {
  const lines: string[] = [];
  const monorepo = new Set(record.images.map((i) => i.project)).size > 1 || (record.projects?.length ?? 0) > 1;
  for (const image of record.images) {
    // A reused image was not built again: an earlier build with the same inputs made it (same digest).
    const where = `${image.pushed ? c.green('pushed') : c.dim('local only')}${image.reusedFrom ? c.cyan(`, reused from ${printable(image.reusedFrom)}`) : ''}`;
    const project = monorepo ? `${c.dim(`(${printable(image.project)})`)}  ` : '';
    lines.push(`  ${c.bold(printable(image.repository))}  ${project}${where}`);
    lines.push(
      ...alignColumns(
        [
          ['tags', image.tags.map(printable).join(', ') || '-'],
          ['digest', image.digest ? printable(image.digest) : image.imageId ? `unknown (image id ${printable(image.imageId.slice(0, 12))})` : 'unknown'],
        ],
        '    ',
      ),
    );
  }
  return lines;
}

/** Projects that were selected but got no image, with the reason. */
export function noImageLines(record: BuildRecord): string[] {
  const withImage = new Set(record.images.map((i) => i.project));
  const rows: string[][] = [];
  for (const project of record.projects ?? []) {
    if (withImage.has(project.name)) continue;
    const reason = project.noImageReason ?? reasonFromPhases(record, project.name);
    if (reason) rows.push([`${printable(project.name)}:`, printable(reason)]);
  }
  return alignColumns(rows, '  ');
}

function reasonFromPhases(record: BuildRecord, project: string): string | undefined {
  const phases = record.phases.filter((p) => p.project === project && p.status !== 'succeeded');
  const last = phases[phases.length - 1];
  if (!last) return undefined;
  return last.status === 'failed' ? `${last.name} failed` : `${last.name} ${last.status}`;
}

/** The phases as an aligned table: name, project, duration, and a note (outcome, cache, warning). */
export function phaseLines(phases: PhaseMetric[], c: ChalkInstance): string[] {
  const rows: Array<Array<Cell | string>> = phases.map((phase) => [
    { text: phase.status === 'succeeded' ? SYMBOLS.success : phase.status === 'failed' ? SYMBOLS.failure : SYMBOLS.skipped, paint: symbolPaint(phase, c) },
    phase.name,
    printable(phase.project ?? ''),
    phase.status === 'skipped' ? '' : formatDuration(phase.durationMs),
    phaseNote(phase, c),
  ]);
  return alignColumns(rows, '  ');
}

function symbolPaint(phase: PhaseMetric, c: ChalkInstance): (text: string) => string {
  if (phase.status === 'succeeded') return (t) => c.green(t);
  if (phase.status === 'failed') return (t) => c.red(t);
  return (t) => c.yellow(t);
}

function phaseNote(phase: PhaseMetric, c: ChalkInstance): Cell {
  if (phase.status === 'succeeded') {
    const notes = [...(phase.cached ? ['cached'] : []), ...(phase.warning ? [`warning: ${printable(phase.warning)}`] : [])];
    return { text: notes.join(', '), paint: (t) => (phase.warning ? c.yellow(t) : c.dim(t)) };
  }
  const text = phase.error ? `${phase.status}: ${printable(firstLine(phase.error))}` : phase.status;
  return { text, paint: (t) => (phase.status === 'failed' ? c.red(t) : c.yellow(t)) };
}

/** The record's warnings, and any phase warning not already among them. */
export function warningLines(record: BuildRecord, c: ChalkInstance): string[] {
  const warnings = new Set(record.warnings ?? []);
  for (const phase of record.phases) {
    if (!phase.warning) continue;
    // The pipeline joins a phase's warnings with '; ' while listing them one by one on the record.
    if (!phase.warning.split('; ').every((w) => warnings.has(w))) warnings.add(phase.warning);
  }
  return [...warnings].map((w) => `  ${c.yellow(`${SYMBOLS.warning} ${printable(w)}`)}`);
}

/** What to do next, from the error's code, when the caller has no better hint. */
export function defaultHint(record: BuildRecord): string | undefined {
  const log = record.logPath ? `The full output is in ${record.logPath}` : undefined;
  switch (record.error?.code) {
    case undefined:
      return undefined;
    case 'E_DOCKERFILE_MISSING':
      return 'Add a Dockerfile (or Containerfile) at the project root, or run with --no-image to stop after the code build.';
    case 'E_TIMEOUT':
      return 'Raise build.timeout (OCI_BUILD_BUILD_TIMEOUT) or speed up the build.';
    case 'E_TOOL_UNAVAILABLE':
      return 'Run `oci-build doctor` to see what is missing and how to install it.';
    case 'E_SERVICE_UNAVAILABLE':
      return 'Check that the Git remote or the registry is reachable (`oci-build doctor`), then build again.';
    case 'E_GIT_AUTH':
      return 'Set git.token (OCI_BUILD_GIT_TOKEN) to a token that can read the repository.';
    case 'E_REF_NOT_FOUND':
      return 'Check the repository URL and --ref.';
    case 'E_CANCELLED':
      return undefined;
    default:
      return log;
  }
}
