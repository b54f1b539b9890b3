// The entry point of the single executable (dist/oci-build, made by scripts/sea.mjs). This file is
// bundled with the whole CLI into one script that runs once at build time, when the V8 startup
// snapshot is made: what it evaluates then (commander, the command table) is in the executable
// already initialised. The CLI itself runs only after the snapshot is deserialised, in the real
// process: its arguments, environment, cwd, pid and streams are never the build machine's.
import { startupSnapshot } from 'node:v8';
import { main } from '../dist/cli/main.js';
import { runCli } from './run-cli.js';

// In a SEA, process.argv is [executable, executable, ...arguments].
if (startupSnapshot.isBuildingSnapshot()) {
  const sink = { write: () => true, on: () => sink };
  startupSnapshot.setDeserializeMainFunction(() => runCli(main));
  void main(['--help'], { stdout: sink, stderr: sink, env: {}, cwd: '/' });
} else void runCli(main);
