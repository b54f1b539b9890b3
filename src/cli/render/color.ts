// When the terminal output may use colour and a spinner, decided once from the stream and the
// environment (never from process globals deep inside a renderer, so tests and --json stay plain).

import { Chalk, type ChalkInstance } from 'chalk';

type Env = Record<string, string | undefined>;

interface MaybeTty {
  isTTY?: boolean;
}

/**
 * Colour on or off. `FORCE_COLOR` (anything but `0`/`false`) wins over `NO_COLOR`, as in Node's own
 * `tty.hasColors` — it is the more specific request, typically set by a CI log viewer. Otherwise a
 * non-empty `NO_COLOR` (no-color.org) turns colour off, and so do a pipe, a file and `TERM=dumb`.
 */
export function colorEnabled(stream: MaybeTty, env: Env = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force !== '0' && force.toLowerCase() !== 'false';
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

/**
 * A spinner only on a real terminal: not in CI (`CI` set to anything but `false`/`0`), where logs
 * are files and carriage returns become garbage, and not with `TERM=dumb`.
 */
export function interactiveEnabled(stream: MaybeTty, env: Env = process.env): boolean {
  if (stream.isTTY !== true) return false;
  if (env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI.toLowerCase() !== 'false') return false;
  return env.TERM !== 'dumb';
}

/** Chalk with colour forced on (basic 16 colours, understood everywhere) or entirely off. */
export function palette(color: boolean): ChalkInstance {
  return new Chalk({ level: color ? 1 : 0 });
}

/** The status words of a build or phase, coloured by outcome. */
export function paintStatus(status: string, c: ChalkInstance): string {
  switch (status) {
    case 'succeeded':
      return c.green(status);
    case 'failed':
      return c.red(status);
    case 'running':
      return c.cyan(status);
    case 'cancelled':
    case 'skipped':
      return c.yellow(status);
    default:
      return c.dim(status);
  }
}

export const SYMBOLS = {
  success: '✔',
  failure: '✖',
  warning: '⚠',
  skipped: '-',
  cancelled: '⊘',
} as const;
