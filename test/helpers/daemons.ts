// Stopping the daemons an end-to-end test started, as an operator would: SIGTERM (they drain and
// exit 0), then SIGKILL for one that is still there after the grace period.

import type { ChildProcess } from 'node:child_process';

/** SIGTERM, wait up to `graceMs` for the exit, then SIGKILL. Nothing to do for one already gone. */
export async function stopDaemon(child: ChildProcess, graceMs = 15_000): Promise<void> {
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  if (gone()) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  if (!gone()) child.kill('SIGKILL');
}

/** stopDaemon for each, one after the other (in the order given). */
export async function stopDaemons(children: Iterable<ChildProcess>, graceMs?: number): Promise<void> {
  for (const child of children) await stopDaemon(child, graceMs);
}

/** A daemon's JSON log lines in its captured output (other lines, and partial ones, left out). */
export function jsonLogLines(output: string): Array<Record<string, unknown>> {
  return output.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}
