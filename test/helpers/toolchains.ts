// Optional toolchains: on a user's machine without one, its tests are skipped with the reason
// printed. On the project's machines every toolchain is installed and nothing is skipped.

import { spawnSync } from 'node:child_process';

const seen = new Map<string, boolean>();

/** True when `tool` runs; otherwise prints once why the tests that need it are skipped. */
export function hasTool(tool: string, args: string[] = ['--version']): boolean {
  let present = seen.get(tool);
  if (present === undefined) {
    present = spawnSync(tool, args, { stdio: 'ignore' }).status === 0;
    seen.set(tool, present);
    if (!present) console.warn(`skipping the tests that need ${tool}: it is not installed on this machine`);
  }
  return present;
}
