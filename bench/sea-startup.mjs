// sea-startup: the single executable's start. `dist/oci-build --version` against `node -e 0`,
// interleaved in one process, with NODE_EXTRA_CA_CERTS unset (as on a typical machine: with it
// set, every Node process parses the whole file at start, the executable as well) and then set,
// when this machine sets it. Target: median ratio ≤ 1.15 unset. Also printed: the executable's
// size, and the start of `node bin/oci-build.js --version` (Node with node_modules) beside it.

import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
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

function measure(env) {
  const node = [];
  const sea = [];
  const bin = [];
  for (let i = 0; i < 3; i++) timed(EXECUTABLE, ['--version'], env); // page cache
  for (let i = 0; i < RUNS; i++) {
    node.push(timed(process.execPath, ['-e', '0'], env));
    sea.push(timed(EXECUTABLE, ['--version'], env));
    if (i % 3 === 0) bin.push(timed(process.execPath, [join(root, 'bin/oci-build.js'), '--version'], env));
  }
  return { node: median(node), sea: median(sea), bin: median(bin) };
}

export async function run() {
  if (!existsSync(EXECUTABLE)) throw new Error('dist/oci-build is missing: npm run build');
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  const { NODE_EXTRA_CA_CERTS: _dropped, ...withoutCa } = process.env;
  const unset = measure(withoutCa);
  const ratio = unset.sea / unset.node;
  const lines = [
    `dist/oci-build      ${(statSync(EXECUTABLE).size / 1024 / 1024).toFixed(1)} MiB (the node binary and the snapshot)`,
    `--version           median ${ms(unset.sea)} against node -e 0 ${ms(unset.node)} over ${RUNS} runs: ratio ${ratio.toFixed(2)} (target ≤ 1.15); node bin/oci-build.js --version ${ms(unset.bin)}`,
  ];
  if (extraCa) {
    const set = measure(process.env);
    lines.push(`with NODE_EXTRA_CA_CERTS=${extraCa}: --version ${ms(set.sea)}, node -e 0 ${ms(set.node)}, ratio ${(set.sea / set.node).toFixed(2)}; node bin/oci-build.js --version ${ms(set.bin)}`);
  }
  return { name: 'sea-startup', lines, ok: ratio <= 1.15 };
}
