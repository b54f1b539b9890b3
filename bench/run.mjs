#!/usr/bin/env node
// `npm run bench [-- NAME…]`: runs the benchmarks one after the other and prints their figures.
// Each bench/*.mjs exports `run(): Promise<{ name, lines, ok }>`; `ok` says whether its targets were met.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ORDER = ['sea-startup', 'local-overhead', 'git-sync', 'nx-affected', 'webhook-ingest', 'pickup-latency', 'rebuild'];
const available = readdirSync(here)
  .filter((f) => f.endsWith('.mjs') && !['run.mjs', 'rss-probe.mjs', 'support.mjs'].includes(f))
  .map((f) => f.replace(/\.mjs$/, ''))
  .sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; available: ${available.join(', ')}`);
  process.exitCode = 2;
} else {
  let allOk = true;
  for (const name of wanted.length ? wanted : available) {
    console.log(`\n=== ${name}`);
    const started = Date.now();
    try {
      const mod = await import(pathToFileURL(join(here, `${name}.mjs`)).href);
      const result = await mod.run();
      for (const line of result.lines) console.log(`  ${line}`);
      console.log(`  ${result.ok ? 'target met' : 'TARGET MISSED'} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      allOk &&= result.ok;
    } catch (err) {
      allOk = false;
      console.log(`  FAILED: ${err instanceof Error ? err.stack : err}`);
    }
  }
  console.log(`\n${allOk ? 'all targets met' : 'some targets missed'}`);
}
