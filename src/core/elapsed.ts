// Elapsed time, for phase durations and the timings in log lines: monotonic, in milliseconds, as
// performance.now() — from process.hrtime, because node:perf_hooks is loaded by nothing else in a
// CLI build and its internals are ~1 ms of the start.

/** Milliseconds on a monotonic clock; only differences between two readings mean anything. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
