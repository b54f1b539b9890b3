// Human-readable numbers, times and aligned columns for the terminal renderers. Pure functions.

import { formatMs } from '../../core/pipeline.js';

/** `850ms`, `1.2s`, `42s`, `3m5s`, `1h2m`: the pipeline's own formatting, so logs and summaries agree. */
export function formatDuration(ms: number): string {
  return formatMs(Math.max(0, Math.round(ms)));
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** `512 B`, `1.5 KiB`, `1.2 GiB`, `120 MiB` (binary units, as `du -h` counts). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  // One decimal below 10 keeps the width short without losing the useful digit (1.2 GiB, 120 MiB).
  let text = value < 10 ? value.toFixed(1) : Math.round(value).toString();
  if (text === '1024' && unit < BYTE_UNITS.length - 1) {
    text = '1.0';
    unit++;
  }
  return `${text} ${BYTE_UNITS[unit]}`;
}

/** `just now`, `45s ago`, `3m ago`, `5h ago`, `12d ago`; a time in the future (clock skew) is `just now`. */
export function formatAge(from: Date | string, now: Date): string {
  const then = typeof from === 'string' ? new Date(from) : from;
  const seconds = Math.floor((now.getTime() - then.getTime()) / 1000);
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ago`;
  return `${Math.floor(hours / 24)}d ago`;
}

/** ISO 8601 in UTC to the second (`2026-11-29T08:01:02Z`): what plain progress lines start with. */
export function formatTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Milliseconds between two ISO times, or undefined when either is missing or unparsable. */
export function elapsedMs(from: string | undefined, to: string | Date | undefined): number | undefined {
  if (!from || !to) return undefined;
  const start = Date.parse(from);
  const end = typeof to === 'string' ? Date.parse(to) : to.getTime();
  if (Number.isNaN(start) || Number.isNaN(end)) return undefined;
  return Math.max(0, end - start);
}

/** A table cell: its plain text (which sets the width) and how to paint it once padded. */
export interface Cell {
  text: string;
  paint?: (padded: string) => string;
}

/**
 * Lays rows out in left-aligned columns separated by two spaces. Widths come from the plain text,
 * so colour codes never shift a column; the last cell of a row is not padded (no trailing spaces).
 */
export function alignColumns(rows: Array<Array<Cell | string>>, indent = ''): string[] {
  const cells = rows.map((row) => row.map((cell) => (typeof cell === 'string' ? { text: cell } : cell)));
  const widths: number[] = [];
  for (const row of cells) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, displayWidth(cell.text));
    });
  }
  return cells.map((row) => {
    const last = lastNonEmpty(row);
    const parts = row.slice(0, last + 1).map((cell, i) => {
      const padded = i === last ? cell.text : cell.text + ' '.repeat((widths[i] ?? 0) - displayWidth(cell.text));
      return cell.paint ? paintKeepingPadding(padded, cell.paint) : padded;
    });
    return (indent + parts.join('  ')).trimEnd();
  });
}

function lastNonEmpty(row: Cell[]): number {
  for (let i = row.length - 1; i >= 0; i--) if (row[i]!.text !== '') return i;
  return -1;
}

/** Paints only the text, not the padding after it, so underlines and backgrounds stay tidy. */
function paintKeepingPadding(padded: string, paint: (text: string) => string): string {
  const text = padded.trimEnd();
  return paint(text) + padded.slice(text.length);
}

/** Columns a string takes: code points, not UTF-16 units (✔, ✖ and ⚠ are one column each). */
export function displayWidth(text: string): number {
  return [...text].length;
}

/** The first line of a possibly multi-line message, for one-line displays. */
export function firstLine(text: string): string {
  const index = text.indexOf('\n');
  return index === -1 ? text : `${text.slice(0, index)} …`;
}

// C0 controls (ESC starts terminal escape sequences), DEL and C1 controls. Record fields come from
// webhook payloads and compiler output; printing them raw would let them drive the terminal.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
// eslint-disable-next-line no-control-regex
const ANSI_SEQUENCE = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

/** Text safe to print on one line: escape sequences and control characters removed, newlines and tabs as spaces. */
export function printable(text: string): string {
  return text.replace(ANSI_SEQUENCE, '').replace(/[\n\t]/g, ' ').replace(CONTROL, '');
}

/** Like printable, but keeps line breaks (multi-line error messages). */
export function printableLines(text: string): string {
  return text.replace(ANSI_SEQUENCE, '').replace(/\r\n?/g, '\n').replace(/\t/g, '  ').replace(CONTROL, '');
}
