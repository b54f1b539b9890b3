// How the pipeline turns what a phase threw into the OciBuildError its record and exit code carry
// (an abort becomes its reason: the timeout, the supersede, the cancel), and how it writes a
// duration (`1.2s`, `2m`, `1h5m`) in messages and summaries.

import { BuildFailedError, CancelledError, describeError, isOciBuildError, type OciBuildError } from './errors.js';

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError(signal);
}

function abortError(signal: AbortSignal): OciBuildError {
  const reason: unknown = signal.reason;
  if (isOciBuildError(reason)) return reason;
  return new CancelledError(typeof reason === 'string' ? reason : 'The build was cancelled');
}

/** Any thrown value as an OciBuildError; an abort becomes the abort's reason (timeout or cancel). */
export function toOciError(err: unknown, signal?: AbortSignal): OciBuildError {
  if (signal?.aborted) {
    const reason = abortError(signal);
    if (!isOciBuildError(err) || err instanceof CancelledError || err.code === 'E_COMMAND_FAILED') return reason;
  }
  if (isOciBuildError(err)) return err;
  return new BuildFailedError(describeError(err), { cause: err });
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 9950) return `${(ms / 1000).toFixed(1)}s`;
  // Whole seconds first, so rounding never shows 60s or 59m60s.
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return `${h}h${m ? `${m}m` : ''}`;
  if (m > 0) return `${m}m${sec ? `${sec}s` : ''}`;
  return `${sec}s`;
}
