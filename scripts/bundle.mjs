// Bundles the compiled CLI (dist/cli/main.js, from tsc) into dist/bundle/, which bin/oci-build.js
// runs. Why: Node's ESM loader resolves, reads and links every file of a package one by one; execa
// alone is ~80 files and took ~140 ms to import, ~35 ms once bundled. A local build loads commander,
// yaml, execa and chalk on its critical path, so this is most of what `oci-build build` costs on
// top of the tools it runs (bench/local-overhead.mjs).
//
// Dynamic imports stay separate chunks, so each command still loads only what it needs. The
// daemons' libraries (nats, pino, prom-client, the webhook signature helper) stay external: they
// load once per long-lived process, and pino and nats are safest resolved as published.
// `createRequire` calls (isomorphic-git, the ajv runtime helper, package.json, the JSON schema) are
// left as they are and resolve from dist/bundle/, two levels below the package root like dist/cli/.

import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist/bundle');
const EXTERNAL = ['nats', 'pino', 'prom-client', '@octokit/webhooks-methods'];

rmSync(outDir, { recursive: true, force: true });
await build({
  input: join(root, 'dist/cli/main.js'),
  platform: 'node',
  external: (id) => EXTERNAL.some((name) => id === name || id.startsWith(`${name}/`)),
  logLevel: 'warn',
  output: { dir: outDir, format: 'esm', entryFileNames: 'main.js', chunkFileNames: '[name]-[hash].js' },
});
