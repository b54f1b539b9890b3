// `oci-build build [SOURCE]`: one build, in-process, no broker and no server.

import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { CancelledError, ExitCode, InputError, UsageError, type ExitCodeValue } from '../../core/errors.js';
import { runPipeline } from '../../core/pipeline.js';
import type { BuildLog, LogStore } from '../../core/ports.js';
import type { BuildJob, JobSource } from '../../core/types.js';
import { createBuildResultsOn, createLocalResultIndex, createLocalStores, createPipelineAdapters } from '../../compose.js';
import { onShutdownSignals } from '../../exec/shutdown-signals.js';
import { parseRemoteUrl } from '../../git/url.js';
import { newBuildId } from '../../store/file-build-store.js';
import { colorEnabled, createReporter, interactiveEnabled, type TerminalReporter } from '../render/reporter.js';
import { renderSummary } from '../render/summary.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

export interface BuildOptions {
  config?: string;
  ref?: string;
  project?: string[];
  affected?: boolean;
  base?: string;
  registry?: string;
  push?: boolean;
  tlsVerify?: boolean;
  buildArg?: string[];
  image?: boolean;
  /** `--no-reuse`: false. */
  reuse?: boolean;
  json?: boolean;
  verbose?: boolean;
  workDir?: string;
  /** `oci-build rebuild`: the id of the build this one repeats. */
  rebuildOf?: string;
}

const URL_SOURCE = /^https?:\/\//i;

/** SOURCE → a JobSource, refusing what cannot be built before anything runs. */
export function parseSource(source: string, ref: string | undefined, cwd: string): JobSource {
  if (URL_SOURCE.test(source)) {
    try {
      new URL(source);
    } catch {
      throw new InputError(`${source} is not a valid URL`, { hint: 'Give an http(s) Git URL such as https://github.com/owner/repo.git, or a directory.' });
    }
    return { kind: 'git', url: source, ...(ref ? { ref } : {}) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source) || /^[^/]+@[^/]+:/.test(source)) {
    throw new InputError(`Unsupported source ${source}: only directories and http(s) Git URLs can be built`, {
      hint: 'Use the https:// clone URL of the repository.',
    });
  }
  if (ref) throw new UsageError('--ref applies to a Git URL source only', { hint: 'Check out the ref in the directory instead, or give the repository URL.' });
  const path = resolve(cwd, source);
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    throw new InputError(`No such directory: ${path}`, { hint: 'Give the path of a repository checkout, or an http(s) Git URL.' });
  }
  if (!isDirectory) throw new InputError(`${path} is not a directory`, { hint: 'Give the path of a repository checkout, or an http(s) Git URL.' });
  return { kind: 'local', path };
}

/**
 * The repository's name and credential-free URL, known before the source phase: a build that fails
 * to fetch is still listed under its repository. A URL the source phase will refuse names nothing.
 */
function remoteNames(url: string): Pick<BuildJob, 'repository'> {
  try {
    const { fullName, cloneUrl } = parseRemoteUrl(url);
    return { repository: { fullName, cloneUrl } };
  } catch {
    return {};
  }
}

export function parseBuildArgs(values: string[] = []): Record<string, string> {
  const args: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new UsageError(`--build-arg expects KEY=VALUE, got ${JSON.stringify(value)}`);
    args[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return args;
}

export async function buildCommand(sourceArg: string, options: BuildOptions, io: CliIO): Promise<ExitCodeValue> {
  if (options.affected && !options.base) throw new UsageError('--affected needs --base REV: the commit to compare with (a SHA, a branch such as origin/main, or HEAD~1)');
  if (options.base && !options.affected) throw new UsageError('--base is only used with --affected');
  const source = parseSource(sourceArg, options.ref, io.cwd);
  const buildArgs = parseBuildArgs(options.buildArg);
  const config = await loadCliConfig(options.config, io, {
    ...(options.workDir ? { workDir: options.workDir } : {}),
    image: {
      ...(options.registry ? { registry: options.registry } : {}),
      ...(options.push ? { push: true } : {}),
      ...(options.tlsVerify === false ? { tlsVerify: false } : {}),
    },
  });
  const noImage = options.image === false;
  if (config.image.push && !config.image.registry && !noImage) {
    throw new UsageError('--push needs a registry to push to', { hint: 'Add --registry HOST[:PORT]/NAMESPACE, or set image.registry (OCI_BUILD_IMAGE_REGISTRY).' });
  }

  const adapters = createPipelineAdapters(config);
  // A Git URL's ref advertisement is asked for now, while the rest of the command loads.
  adapters.source.warm?.(source);
  const { store, logs } = createLocalStores(config);
  const results = options.reuse === false ? undefined : await createBuildResultsOn(config, () => createLocalResultIndex(config));
  const color = colorEnabled(io.stderr, io.env);
  const reporter = await createReporter({ stream: io.stderr, interactive: interactiveEnabled(io.stderr, io.env), color });

  const job: BuildJob = {
    id: newBuildId(new Date()),
    trigger: 'cli',
    source,
    ...(source.kind === 'git' ? remoteNames(source.url) : {}),
    ...(options.project?.length ? { projects: options.project } : {}),
    ...(options.affected && options.base ? { affectedBase: options.base } : {}),
    ...(noImage ? { noImage: true } : {}),
    image: {
      ...(config.image.registry ? { registry: config.image.registry } : {}),
      push: config.image.push,
      tlsVerify: config.image.tlsVerify,
      buildArgs,
    },
    createdAt: new Date().toISOString(),
    ...(options.rebuildOf ? { rebuildOf: options.rebuildOf } : {}),
  };

  // Ctrl-C (or SIGTERM) cancels the build: the running command's process group is killed, the
  // record says `cancelled`. A second signal is left to the default handler.
  const controller = new AbortController();
  const removeSignalHandlers = onShutdownSignals({ graceful: (signal) => controller.abort(new CancelledError(`Interrupted (${signal})`)) });
  io.signal?.addEventListener('abort', () => controller.abort(io.signal?.reason), { once: true });

  try {
    const { record, error } = await runPipeline(
      job,
      {
        ...adapters,
        ...(results ? { results } : {}),
        store,
        logs: options.verbose ? teeLogs(logs, reporter) : logs,
        reporter,
      },
      { signal: controller.signal, timeoutMs: config.build.timeoutMs },
    );
    reporter.stop();
    if (options.json) {
      io.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
    } else {
      io.stdout.write(renderSummary(record, { color: colorEnabled(io.stdout, io.env), ...(error?.hint ? { hint: error.hint } : {}) }));
    }
    return error ? error.exitCode : ExitCode.Success;
  } finally {
    reporter.stop();
    removeSignalHandlers();
  }
}

/** --verbose: the build's output goes to the terminal as well as to its log file. */
function teeLogs(logs: LogStore, reporter: TerminalReporter): LogStore {
  return {
    async open(id: string): Promise<BuildLog> {
      const log = await logs.open(id);
      return {
        ...(log.location ? { location: log.location } : {}),
        write(line, stream) {
          log.write(line, stream);
          reporter.output.write(line, stream);
        },
        close: () => log.close(),
      };
    },
  };
}
