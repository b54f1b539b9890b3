// The CLI: commander wiring only. Each command lives in its own module, imported when it runs,
// so `oci-build --version` and `--help` load commander and nothing else.
// main() never exits the process: it returns the exit code (bin/oci-build.js exits).

import { Command, CommanderError, Option } from 'commander';
import { createRequire } from 'node:module';
import { ExitCode, UsageError, isOciBuildError, type ExitCodeValue } from '../core/errors.js';
import { maskSecrets } from '../core/secrets.js';
import type { CliIO } from './io.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveInt(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

// The options several commands share, declared once: the same flag, help and parsing everywhere.
const configOption = () => new Option('-c, --config <file>', 'config file (default: ./oci-build.config.yaml when present)');
const workDirOption = (description = 'work directory; OCI_BUILD_WORK_DIR') => new Option('--work-dir <dir>', description);
const jsonOption = (description = 'print JSON') => new Option('--json', description);

export function createProgram(io: CliIO, setExit: (code: ExitCodeValue) => void): Command {
  const program = new Command('oci-build')
    .description('Turn Git repositories into OCI images with buildah: locally, or as a webhook-driven build service on NATS JetStream.')
    .version(version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();

  program
    .command('build')
    .summary('build a repository into OCI images, locally (no server, no broker)')
    .description('Build a repository into OCI images, in-process: sync the source, detect its projects, run the language build with cached dependencies, build images with buildah, optionally push them, and record the build.')
    .argument('[source]', 'a directory or an http(s) Git URL', '.')
    .addOption(configOption())
    .option('--ref <ref>', "branch, tag or commit of a Git URL source (default: the remote's HEAD)")
    .option('--project <name>', 'only this project of a monorepo (repeatable)', collect)
    .option('--affected', 'Nx workspaces: only the projects affected between --base and the commit built')
    .option('--base <rev>', 'base for --affected: a commit SHA, a branch or tag, optionally ~N (origin/main, HEAD~1)')
    .option('--registry <prefix>', 'image name prefix, e.g. 127.0.0.1:5000/team')
    .option('--push', 'push every tag to the registry')
    .option('--no-tls-verify', 'allow a plain-HTTP or self-signed registry')
    .option('--build-arg <key=value>', 'passed to the image build (repeatable)', collect)
    .option('--no-image', 'stop after the code build')
    .option('--no-reuse', 'build every project, even those whose inputs an earlier build already made an image of (build.reuse)')
    .addOption(jsonOption('print the final BuildRecord as JSON on stdout; progress goes to stderr'))
    .option('-v, --verbose', "stream the build's output to the terminal")
    .addOption(workDirOption('work directory (mirrors, caches, records, logs); OCI_BUILD_WORK_DIR'))
    .addHelpText(
      'after',
      `
Examples:
  $ oci-build build                                  # the repository in the current directory
  $ oci-build build ./fixtures/sample-go-repo --registry 127.0.0.1:5000/team --push --no-tls-verify
  $ oci-build build https://github.com/acme/api.git --ref v1.4.0
  $ oci-build build . --affected --base origin/main~1 --json > record.json

Images are named after the repository (NAME, or NAME/PROJECT in a monorepo) and tagged
sha-<commit> and with the branch. Exit codes: 0 built, 1 a phase failed, 2 bad usage or
input, 3 a tool or service is unavailable.`,
    )
    .action(async (source: string, options) => {
      const { buildCommand } = await import('./commands/build.js');
      setExit(await buildCommand(source, options, io));
    });

  program
    .command('status')
    .summary('list builds, or show and follow one')
    .description('List recent builds, or show one build with its phases, images and log. Reads the local work directory, or a server with --server.')
    .argument('[id]', 'a build id')
    .addOption(configOption())
    .option('--server <url>', 'read from an oci-build server (http://host:port) instead of the local work directory')
    .addOption(new Option('--token <token>', 'API token for --server').env('OCI_BUILD_API_TOKEN'))
    .option('--limit <n>', 'how many builds to list', positiveInt('--limit'), 20)
    .option('--repo <owner/name>', 'only builds of this repository')
    .option('--branch <name>', 'only builds of this branch')
    .option('--status <status>', 'only builds with this status (queued, running, succeeded, failed, cancelled, skipped)')
    .option('--follow', "follow the build's log until it ends")
    .option('--workers', 'list the live workers and their running jobs (needs NATS)')
    .addOption(jsonOption())
    .addOption(workDirOption())
    .addHelpText(
      'after',
      `
Examples:
  $ oci-build status                                 # recent local builds
  $ oci-build status 20261129-080102-ab12cd          # one build: phases, images, log path
  $ oci-build status --server http://ci:8080 --token $TOKEN --repo acme/api
  $ oci-build status ID --server http://ci:8080 --follow`,
    )
    .action(async (id: string | undefined, options) => {
      const { statusCommand } = await import('./commands/status.js');
      setExit(await statusCommand(id, options, io));
    });

  // cancel and rebuild: the same server options as `status --server`.
  program
    .command('cancel')
    .summary("cancel a server's queued or running build")
    .description("Cancel a build of an oci-build server: a queued build at once, a running one by its worker, which kills every process of it. The record says cancelled and who asked (cancelledBy api:token#N). A local build is cancelled with Ctrl-C in its terminal.")
    .argument('<id>', 'a build id')
    .addOption(configOption())
    .option('--server <url>', 'the oci-build server (http://host:port)')
    .addOption(new Option('--token <token>', 'API token for --server').env('OCI_BUILD_API_TOKEN'))
    .option('--reason <text>', 'why, kept in the record (cancelReason)')
    .addOption(jsonOption("print the server's answer as JSON"))
    .addOption(workDirOption())
    .addHelpText('after', `
Examples:
  $ oci-build cancel gh-72d1… --server http://ci:8080 --token $TOKEN --reason "wrong branch"`)
    .action(async (id: string, options) => {
      const { cancelCommand } = await import('./commands/cancel.js');
      setExit(await cancelCommand(id, options, io));
    });

  program
    .command('rebuild')
    .summary("build a build's commit again, as a new build")
    .description("Build the same commit and ref again, as a new build with its own id and rebuildOf. With --server the server queues it; otherwise a local build of a Git URL runs again in the foreground (a build of a directory: run `oci-build build DIR` again).")
    .argument('<id>', 'a build id')
    .addOption(configOption())
    .option('--server <url>', 'the oci-build server (http://host:port)')
    .addOption(new Option('--token <token>', 'API token for --server').env('OCI_BUILD_API_TOKEN'))
    .addOption(jsonOption("print the server's answer (or the local build's record) as JSON"))
    .option('-v, --verbose', "local: stream the build's output to the terminal")
    .addOption(workDirOption())
    .addHelpText('after', `
Examples:
  $ oci-build rebuild gh-72d1… --server http://ci:8080 --token $TOKEN
  $ oci-build rebuild 20261129-080102-ab12cd           # a local build of a Git URL, again`)
    .action(async (id: string, options) => {
      const { rebuildCommand } = await import('./commands/rebuild.js');
      setExit(await rebuildCommand(id, options, io));
    });

  const cache = program
    .command('cache')
    .summary('show or clean the dependency caches and the Git mirrors')
    .description(
      'Dependency caches (Go, Maven, NuGet, npm, Nx) under <workDir>/cache, and the Git mirrors of remote sources under <workDir>/repos with their spare worktrees: everything the next build fetches again when it is missing.',
    );
  cache
    .command('size')
    .description('size of each cache, per language, and of the Git mirrors (with the number of repositories)')
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(workDirOption())
    .action(async (options) => {
      const { cacheSizeCommand } = await import('./commands/cache.js');
      setExit(await cacheSizeCommand(options, io));
    });
  cache
    .command('clean')
    .description(
      'remove cache entries and Git mirrors not used for a while (never anything outside the caches and the mirrors; a mirror a build is fetching is skipped)',
    )
    .addOption(configOption())
    .option('--older-than <duration>', 'only entries not used (read or written) for this long, e.g. 7d, 12h; a Git mirror used in the last hour always stays', '7d')
    .addOption(jsonOption())
    .addOption(workDirOption())
    .action(async (options) => {
      const { cacheCleanCommand } = await import('./commands/cache.js');
      setExit(await cacheCleanCommand(options, io));
    });

  program
    .command('config')
    .summary('show the configuration, and where each value came from')
    .description('Configuration commands.')
    .command('show')
    .description(
      'Print every configuration key with the value a command would use and where it came from: a flag, an environment variable (named), the config file (named) or the default. Secrets are shown only as set (***).',
    )
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(workDirOption())
    .addHelpText(
      'after',
      `
Examples:
  $ oci-build config show                            # this directory's oci-build.config.yaml, the environment, the defaults
  $ OCI_BUILD_WORKER_CONCURRENCY=4 oci-build config show -c /etc/oci-build/config.yaml
  $ oci-build config show --json | jq '.settings[] | select(.source != "default")'`,
    )
    .action(async (options) => {
      const { configShowCommand } = await import('./commands/config.js');
      setExit(await configShowCommand(options, io));
    });

  program
    .command('doctor')
    .summary('check buildah, git, toolchains, storage, NATS and the registry')
    .description('Check what oci-build needs on this machine, one line per check, each with the fix.')
    .addOption(configOption())
    .addOption(jsonOption())
    .addOption(workDirOption())
    .action(async (options) => {
      const { doctorCommand } = await import('./commands/doctor.js');
      setExit(await doctorCommand(options, io));
    });

  program
    .command('serve')
    .summary('receive GitHub webhooks, queue builds on NATS, answer the status API')
    .description('Receive GitHub push webhooks (HMAC-SHA256 checked), queue build jobs on NATS JetStream, and answer the authenticated status API. Needs server.webhookSecret (OCI_BUILD_SERVER_WEBHOOK_SECRET).')
    .addOption(configOption())
    .option('--host <host>', 'address to listen on; OCI_BUILD_SERVER_HOST')
    .option('--port <port>', 'port to listen on; OCI_BUILD_SERVER_PORT', positiveInt('--port'))
    .action(async (options) => {
      const { serveCommand } = await import('./commands/serve.js');
      setExit(await serveCommand(options, io));
    });

  program
    .command('worker')
    .summary('pull build jobs from NATS JetStream and run them')
    .description('A build worker: pulls jobs from NATS JetStream, runs the pipeline, records status and logs. Run as many as needed. SIGTERM drains (running builds finish); a second signal cancels.')
    .addOption(configOption())
    .option('--concurrency <n>', 'builds at once; OCI_BUILD_WORKER_CONCURRENCY', positiveInt('--concurrency'))
    .addOption(workDirOption())
    .action(async (options) => {
      const { workerCommand } = await import('./commands/worker.js');
      setExit(await workerCommand(options, io));
    });

  return program;
}

/** Runs the CLI with the given arguments (without `node` and the script) and returns the exit code. */
export async function main(argv: string[], io: CliIO): Promise<ExitCodeValue> {
  // `--version` alone (scripts and health checks ask it often) is answered as commander answers it,
  // before the command table is built: a third of what the executable does after its start.
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    io.stdout.write(`${version}\n`);
    return ExitCode.Success;
  }
  let exitCode: ExitCodeValue = ExitCode.Success;
  const program = createProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end with a CommanderError too, with exit code 0.
      if (err.exitCode === 0) return ExitCode.Success;
      // Commander has already printed its message on stderr.
      if (wantsJson(argv)) writeJsonError(io, new UsageError(err.message.replace(/^error: /, '')).toJSON());
      return ExitCode.Usage;
    }
    if (wantsJson(argv)) writeJsonError(io, isOciBuildError(err) ? err.toJSON() : { name: 'Error', code: 'E_INTERNAL', message: err instanceof Error ? err.message : String(err) });
    return reportError(err, io);
  }
}

/** `--json` among the options (not after `--`): a script reads stdout, whatever went wrong. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/**
 * With --json, an error that ends the command before it has a result (bad usage, invalid config,
 * a missing tool) is printed on stdout as `{"error": {name, code, message, hint?, details?}}`,
 * so a CI step parsing stdout always gets JSON. The human message still goes to stderr.
 */
function writeJsonError(io: CliIO, error: Record<string, unknown>): void {
  io.stdout.write(`${maskSecrets(JSON.stringify({ error }, null, 2))}\n`);
}

/** Prints an error for a human: the message, the hint; a stack trace only for our own bugs. */
export function reportError(err: unknown, io: CliIO): ExitCodeValue {
  if (isOciBuildError(err)) {
    io.stderr.write(`error: ${err.message}\n`);
    if (err.hint) io.stderr.write(`hint: ${err.hint}\n`);
    return err.exitCode;
  }
  // Our typed errors are masked when made (core/errors.ts); anything else is masked here.
  io.stderr.write(maskSecrets(`internal error (please report it): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`));
  return ExitCode.BuildFailed;
}
