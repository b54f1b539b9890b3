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
  // Daemons close their connections before main() returns; anything still holding the event loop
  // open after that (a stray socket) must not keep a finished command alive.
  setTimeout(() => process.exit(code), 2000).unref();
}
