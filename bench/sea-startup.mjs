// sea-startup: the single executable's start. `dist/oci-build --version` against `node -e 0`,
// interleaved in one process, with NODE_EXTRA_CA_CERTS unset (as on a typical machine: with it
// set, every Node process parses the whole file at start, the executable as well) and then set,
// when this machine sets it. Target: median ratio ≤ 1.15 unset. Also printed: the executable's
// size. It runs a copy of dist/oci-build: a build in the same checkout may replace the original.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, ms } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const EXECUTABLE = join(root, 'dist/oci-build');
const RUNS = Number(process.env.BENCH_RUNS ?? 7) * 6;

function timed(file, args, env) {
  const started = process.hrtime.bigint();
  const result = spawnSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.status}):\n${result.stderr}`);
  return elapsed;
}

function measure(executable, env) {
  const node = [];
  const sea = [];
  for (let i = 0; i < 3; i++) timed(executable, ['--version'], env); // page cache
  for (let i = 0; i < RUNS; i++) {
    node.push(timed(process.execPath, ['-e', '0'], env));
    sea.push(timed(executable, ['--version'], env));
  }
  return { node: median(node), sea: median(sea) };
}

export async function run() {
  if (!existsSync(EXECUTABLE)) throw new Error('dist/oci-build is missing: npm run build');
  const temp = mkdtempSync(join(tmpdir(), 'oci-build-bench-sea-'));
  try {
    const executable = join(temp, 'oci-build');
    copyFileSync(EXECUTABLE, executable);
    const extraCa = process.env.NODE_EXTRA_CA_CERTS;
    const { NODE_EXTRA_CA_CERTS: _dropped, ...withoutCa } = process.env;
    const unset = measure(executable, withoutCa);
    const ratio = unset.sea / unset.node;
    const lines = [
      `dist/oci-build      ${(statSync(executable).size / 1024 / 1024).toFixed(1)} MiB (the node binary, the snapshot and the chunks)`,
      `--version           median ${ms(unset.sea)} against node -e 0 ${ms(unset.node)} over ${RUNS} runs: ratio ${ratio.toFixed(2)} (target ≤ 1.15)`,
    ];
    if (extraCa) {
      const set = measure(executable, process.env);
      lines.push(`with NODE_EXTRA_CA_CERTS=${extraCa}: --version ${ms(set.sea)}, node -e 0 ${ms(set.node)}, ratio ${(set.sea / set.node).toFixed(2)}`);
    }
    return { name: 'sea-startup', lines, ok: ratio <= 1.15 };
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}
