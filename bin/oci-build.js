#!/usr/bin/env node
// The entry point: runs the CLI and is the only place that ends the process.
// dist/bundle is dist/cli bundled (scripts/bundle.mjs): one file per command, loaded much faster.
import { main } from '../dist/bundle/main.js';

// `oci-build status | head` closes the pipe early: that ends the command, it is no error to report.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
process.exitCode = code;
// Daemons close their connections before main() returns; anything still holding the event loop
// open after that (a stray socket) must not keep a finished command alive.
setTimeout(() => process.exit(code), 2000).unref();
