// The process around main(): shared by bin/oci-build.js (Node with node_modules) and
// bin/oci-build-sea.js (the single executable, dist/oci-build). The only place that ends the process.

/** Runs main() on this process's arguments and streams, sets the exit code, and ends the process. */
export async function runCli(main, argv = process.argv.slice(2)) {
  // `oci-build status | head` closes the pipe early: that ends the command, it is no error to report.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }

  const code = await main(argv, {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
  });
  process.exitCode = code;
  // main() returns when the command's work is done and written (daemons have closed their
  // connections). The process ends as soon as its output is out, not when the event loop has
  // emptied: that natural exit tears the whole heap down first, ~5–15 ms of a build's time for
  // nothing (pino's destinations flush on 'exit' either way). An output that never drains (a
  // reader that stopped reading) or a stray socket does not keep a finished command alive.
  setTimeout(() => process.exit(code), 2000).unref();
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
}

/** Resolves once everything written to `stream` has been handed to the system. */
function drained(stream) {
  return stream.writableLength > 0 && !stream.destroyed ? new Promise((resolve) => stream.once('drain', resolve).once('close', resolve)) : Promise.resolve();
}
