#!/usr/bin/env node
// The entry point under Node: runs the CLI (bin/run-cli.js ends the process).
// dist/bundle is dist/cli bundled (scripts/bundle.mjs): one file per command, loaded much faster.
import { main } from '../dist/bundle/main.js';
import { runCli } from './run-cli.js';

await runCli(main);
