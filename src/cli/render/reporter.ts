// Live progress of a local build: an ora spinner on a terminal, plain timestamped lines elsewhere
// (pipes, files, CI). The spinner library is imported only when a spinner is wanted: it costs about
// 90 ms to load, which a piped or --json run should not pay.

import type { Writable } from 'node:stream';
import type { ChalkInstance } from 'chalk';
import type { LogSink, LogStream, Reporter } from '../../core/ports.js';
import type { PhaseMetric, PhaseName } from '../../core/types.js';
import { SYMBOLS, palette } from './color.js';

// Callers decide colour and interactivity before creating a reporter; they find the rules here.
export { colorEnabled, interactiveEnabled } from './color.js';
import { firstLine, formatDuration, formatTimestamp, printable } from './format.js';

export interface ReporterOptions {
  /** Where progress goes: stderr for `build` (stdout stays free for --json). */
  stream: NodeJS.WritableStream | Writable;
  /** A spinner (see interactiveEnabled) rather than plain lines. */
  interactive: boolean;
  /** ANSI colour (see colorEnabled). */
  color: boolean;
  /** The clock of the plain lines' timestamps. */
  now?: () => Date;
}

export interface TerminalReporter extends Reporter {
  /** Prints one line of build output (e.g. --verbose) above the spinner, without garbling it. */
  readonly output: LogSink;
  /** Stops the spinner, if any, and restores the cursor. Idempotent. */
  stop(): void;
}

export async function createReporter(options: ReporterOptions): Promise<TerminalReporter> {
  const c = palette(options.color);
  if (!options.interactive) return new PlainReporter(options.stream, c, options.now ?? (() => new Date()));
  const { default: ora } = await import('ora');
  return new SpinnerReporter(options.stream, c, ora);
}

/** `build api` for a project's phase, `source` for a build-wide one. */
export function phaseLabel(name: PhaseName, project?: string): string {
  return project === undefined ? name : `${name} ${printable(project)}`;
}

/** What happened to a phase, without its label: `done in 1.2s (cached)`, `failed after 3s: …`. */
export function phaseOutcome(metric: PhaseMetric, c: ChalkInstance): string {
  const duration = formatDuration(metric.durationMs);
  switch (metric.status) {
    case 'succeeded':
      return `${c.green('done')} in ${duration}${metric.cached ? c.dim(' (cached)') : ''}`;
    case 'failed':
      return `${c.red('failed')} after ${duration}${metric.error ? `: ${printable(firstLine(metric.error))}` : ''}`;
    case 'cancelled':
      return `${c.yellow('cancelled')} after ${duration}`;
    case 'skipped':
      return c.yellow('skipped');
    case 'running':
      return c.cyan('running');
  }
}

class PlainReporter implements TerminalReporter {
  readonly output: LogSink;

  constructor(
    private readonly stream: NodeJS.WritableStream | Writable,
    private readonly c: ChalkInstance,
    private readonly now: () => Date,
  ) {
    this.output = { write: (line: string) => this.print(line) };
  }

  // A start line per phase would double the output; the end line carries the duration and outcome.
  phaseStarted(): void {}

  phaseEnded(metric: PhaseMetric): void {
    this.print(`${this.c.dim(formatTimestamp(this.now()))} ${phaseLabel(metric.name, metric.project)} … ${phaseOutcome(metric, this.c)}`);
  }

  warn(message: string): void {
    this.print(`${this.c.dim(formatTimestamp(this.now()))} ${this.c.yellow(`warning: ${printable(message)}`)}`);
  }

  stop(): void {}

  private print(line: string): void {
    this.stream.write(`${line}\n`);
  }
}

type OraFactory = typeof import('ora').default;
type Spinner = ReturnType<OraFactory>;

/**
 * One spinner line naming every phase still running (the build phase of a monorepo runs its
 * projects together); each phase that ends is persisted above it as its own ✔/✖ line. ora draws a
 * single line per stream, so several live spinners would overwrite each other.
 */
class SpinnerReporter implements TerminalReporter {
  readonly output: LogSink;
  private readonly running = new Set<string>();
  private readonly spinner: Spinner;

  constructor(
    private readonly stream: NodeJS.WritableStream | Writable,
    private readonly c: ChalkInstance,
    ora: OraFactory,
  ) {
    this.spinner = ora({
      stream: stream as NodeJS.WritableStream,
      isEnabled: true,
      color: c.level > 0 ? 'cyan' : false,
      // ora would otherwise put stdin in raw mode, which swallows Ctrl+C while a build blocks.
      discardStdin: false,
    });
    // ora hooks writes to its stream while spinning: a line written here clears the spinner,
    // prints, and redraws it below.
    this.output = { write: (line: string, _stream?: LogStream) => void this.stream.write(`${line}\n`) };
  }

  phaseStarted(phase: PhaseName, project?: string): void {
    this.running.add(phaseLabel(phase, project));
    this.resume();
  }

  phaseEnded(metric: PhaseMetric): void {
    const label = phaseLabel(metric.name, metric.project);
    this.running.delete(label);
    this.spinner.stopAndPersist({ symbol: this.symbolOf(metric), text: `${label} ${this.persistedOutcome(metric)}` });
    this.resume();
  }

  warn(message: string): void {
    this.spinner.stopAndPersist({ symbol: this.c.yellow(SYMBOLS.warning), text: this.c.yellow(printable(message)) });
    this.resume();
  }

  stop(): void {
    this.running.clear();
    if (this.spinner.isSpinning) this.spinner.stop();
  }

  private resume(): void {
    if (this.running.size === 0) {
      if (this.spinner.isSpinning) this.spinner.stop();
      return;
    }
    const text = [...this.running].join(', ');
    if (!this.spinner.isSpinning) {
      this.spinner.start(text);
    } else if (this.spinner.text !== text) {
      this.spinner.text = text;
      this.spinner.render();
    }
  }

  private symbolOf(metric: PhaseMetric): string {
    switch (metric.status) {
      case 'succeeded':
        return this.c.green(SYMBOLS.success);
      case 'failed':
        return this.c.red(SYMBOLS.failure);
      case 'cancelled':
        return this.c.yellow(SYMBOLS.cancelled);
      default:
        return this.c.yellow(SYMBOLS.skipped);
    }
  }

  private persistedOutcome(metric: PhaseMetric): string {
    const duration = this.c.dim(formatDuration(metric.durationMs));
    switch (metric.status) {
      case 'succeeded':
        return `${duration}${metric.cached ? this.c.dim(' (cached)') : ''}`;
      case 'failed':
        return `${this.c.red('failed')} after ${duration}${metric.error ? `: ${printable(firstLine(metric.error))}` : ''}`;
      default:
        return phaseOutcome(metric, this.c);
    }
  }
}
