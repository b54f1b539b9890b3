// The composition root: real adapters built from the configuration. The CLI's `build` and the
// worker get the same pipeline adapters; only the store, the logs and the reporter differ.

import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Config } from './config/config.js';
import type { BuildResults, ResultIndex } from './core/ports.js';
import type { CodeBuilder, CommitStatusNotifier, ImageBuilder, ProjectDetector, RepoSettingsReader, SourceProvider } from './core/ports.js';
import type { StatusNotification } from './core/types.js';
import type { StatusQueueOptions } from './notify/status-queue.js';
import { runCommand, type CommandRunner } from './exec/run-command.js';
import { createBuildRunner, type BuildRunner } from './exec/sandbox.js';
import { CacheService } from './cache/cache-service.js';
import { MirrorCache } from './cache/mirror-cache.js';
import { createSourceProvider } from './git/source-provider.js';
import { createProjectDetector } from './detect/detect-projects.js';
import { createRepoSettingsReader } from './config/repo-settings.js';
import { createCodeBuilder } from './build/code-builder.js';
import type { NxDeps } from './build/nx-cli.js';
import { createBuildahImageBuilder, type BuildahOptions } from './image/buildah.js';
import { FileBuildStore } from './store/file-build-store.js';
import { FileLogStore } from './store/file-log-store.js';
import type { NatsContext } from './queue/nats.js';
import type { Worker } from './worker/worker.js';
import type { PipelineDepsFactory, WorkerLogger, WorkerOptions, WorkerPorts } from './worker/worker-options.js';

export interface PipelineAdapters {
  source: SourceProvider;
  detector: ProjectDetector;
  builder: CodeBuilder;
  images: ImageBuilder;
  cache: CacheService;
  /** The repository's `.oci-build.yaml`, read from the commit built. */
  repoSettings: RepoSettingsReader;
}

/** Where things live under the work directory. */
export function workPaths(workDir: string) {
  return {
    cache: join(workDir, 'cache'),
    builds: join(workDir, 'builds'),
    logs: join(workDir, 'logs'),
  };
}

export function buildahOptions(config: Config): BuildahOptions {
  return {
    storageDriver: config.image.storageDriver,
    isolation: config.image.isolation,
    tlsVerify: config.image.tlsVerify,
    ...(config.image.root ? { root: config.image.root } : {}),
    ...(config.image.runRoot ? { runRoot: config.image.runRoot } : {}),
    ...(config.image.authFile ? { authFile: config.image.authFile } : {}),
  };
}

export function createCacheService(config: Config): CacheService {
  return new CacheService(workPaths(config.workDir).cache, config.build.mavenOffline !== undefined ? { mavenOffline: config.build.mavenOffline } : {});
}

/** The Git mirrors and spare worktrees of remote sources, as `oci-build cache` sees them. */
export function createMirrorCache(config: Config): MirrorCache {
  return new MirrorCache(config.workDir);
}

/**
 * The Nx detector and builder, loaded the first time a workspace with nx.json needs them: their
 * modules are of no use to every other build, which should not pay for loading them.
 */
function lazyNxDetector(deps: NxDeps): ProjectDetector {
  let nx: Promise<ProjectDetector> | undefined;
  return {
    async detect(dir, options, ctx) {
      nx ??= import('./detect/nx-detector.js').then((m) => m.createNxDetector(deps));
      return (await nx).detect(dir, options, ctx);
    },
  };
}

function lazyNxBuilder(deps: NxDeps): CodeBuilder {
  let nx: Promise<CodeBuilder> | undefined;
  return {
    async build(workspace, ctx) {
      nx ??= import('./build/nx-builder.js').then((m) => m.createNxBuilder(deps));
      return (await nx).build(workspace, ctx);
    },
  };
}

/**
 * What a sandboxed build command must not see (exec/sandbox.ts binds the tree and its caches back):
 * the whole work directory (mirrors, other worktrees, records, logs), the invoking user's HOME,
 * container storage, registry credentials and the config file, which may hold tokens.
 */
export function sandboxHiddenPaths(config: Config, env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  const paths = [
    config.workDir,
    home,
    '/var/lib/containers',
    '/run/containers',
    config.image.root,
    config.image.runRoot,
    config.image.authFile,
    env.REGISTRY_AUTH_FILE,
    env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json') : undefined,
    join(home, '.docker', 'config.json'),
    env.DOCKER_CONFIG ? join(env.DOCKER_CONFIG, 'config.json') : undefined,
    config.configFile,
    // Key material oci-build itself reads (the GitHub App's key, NATS credentials): never a build's.
    config.github.privateKeyFile,
    config.nats.credsFile,
    config.nats.nkeySeedFile,
    config.nats.tls?.key,
  ];
  return [...new Set(paths.filter((p): p is string => typeof p === 'string' && p.length > 0))];
}

/** The runner of build commands (language builds, npm, Nx) for `build.sandbox` and `build.env`. */
export function createBuildCommandRunner(config: Config, run: CommandRunner = runCommand, env: NodeJS.ProcessEnv = process.env): BuildRunner {
  return createBuildRunner({ run, mode: config.build.sandbox, hide: sandboxHiddenPaths(config, env), env: config.build.env, parentEnv: env });
}

/** The adapters of the pipeline's phases, from the configuration. */
export function createPipelineAdapters(config: Config, run: CommandRunner = runCommand): PipelineAdapters {
  const cache = createCacheService(config);
  const killGraceMs = config.build.killGraceMs;
  // Build commands run a repository's code: sandboxed, with a clean environment. Git and buildah
  // are oci-build's own commands and use `run` as it is.
  const buildRun = createBuildCommandRunner(config, run);
  return {
    cache,
    source: createSourceProvider({ workDir: config.workDir, git: config.git }),
    detector: createProjectDetector({
      overrides: config.build.projects,
      nx: lazyNxDetector({ run: buildRun, cache, killGraceMs }),
    }),
    builder: createCodeBuilder({ run: buildRun, cache, killGraceMs, nx: lazyNxBuilder({ run: buildRun, cache, killGraceMs }) }),
    images: createBuildahImageBuilder({ run, options: buildahOptions(config), killGraceMs }),
    repoSettings: createRepoSettingsReader(),
  };
}

export interface CommitStatusDeps {
  logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
  /** Where the outcomes go (the worker: the final record's `notifications`). */
  record?: (buildId: string, notifications: StatusNotification[]) => Promise<void>;
  /** For tests: the retry timings. */
  queue?: Omit<StatusQueueOptions, 'post'>;
}

/**
 * Commit statuses on GitHub (github.*; src/notify), for serve and the worker alike; undefined when
 * neither github.token nor github.appId is set. Octokit is loaded only then.
 */
export async function createCommitStatusNotifier(config: Config, deps: CommitStatusDeps): Promise<CommitStatusNotifier | undefined> {
  const { github } = config;
  if (!github.token && github.appId === undefined) return undefined;
  const [{ createStatusPoster, readPrivateKey }, { GithubCommitStatusNotifier }] = await Promise.all([import('./notify/github-statuses.js'), import('./notify/commit-status-notifier.js')]);
  const auth = github.token ? { kind: 'token' as const, token: github.token } : { kind: 'app' as const, appId: github.appId!, privateKey: readPrivateKey(github.privateKeyFile!) };
  const post = createStatusPoster({ apiUrl: github.apiUrl, auth, warn: (message) => deps.logger.warn({ warning: message }, 'GitHub API warning') });
  return new GithubCommitStatusNotifier({
    ...deps.queue,
    post,
    logger: deps.logger,
    ...(config.server.publicUrl ? { publicUrl: config.server.publicUrl } : {}),
    ...(deps.record ? { record: deps.record } : {}),
  });
}

/**
 * Reuse of earlier builds' images on `index` (README, Result reuse): the file index under workDir
 * for `build`, the KV bucket every worker shares for `worker`. Undefined when build.reuse is off.
 */
export async function createBuildResultsOn(config: Config, index: () => Promise<ResultIndex> | ResultIndex, run: CommandRunner = runCommand): Promise<BuildResults | undefined> {
  if (!config.build.reuse) return undefined;
  const [{ createBuildResults }, { createImageReuse }, { ociBuildVersion }] = await Promise.all([
    import('./cache/result-inputs.js'),
    import('./image/registry-tag.js'),
    import('./cache/oci-build-version.js'),
  ]);
  return createBuildResults({
    run,
    index: await index(),
    images: createImageReuse({ run, options: buildahOptions(config), killGraceMs: config.build.killGraceMs }),
    version: ociBuildVersion(),
    build: { env: config.build.env, sandbox: config.build.sandbox, ...(config.build.mavenOffline !== undefined ? { mavenOffline: config.build.mavenOffline } : {}) },
    parentEnv: process.env,
    ...(config.image.authFile ? { authFile: config.image.authFile } : {}),
    toolchainCache: join(workPaths(config.workDir).cache, 'toolchain-versions.json'),
  });
}

/** The result index of `oci-build build`: `<workDir>/results/`. */
export async function createLocalResultIndex(config: Config): Promise<ResultIndex> {
  const { FileResultIndex } = await import('./cache/result-index-file.js');
  return new FileResultIndex(join(config.workDir, 'results'));
}

/** The worker's pipeline adapters with reuse on the shared KV bucket `nats.resultBucket`. */
async function withSharedResults(config: Config, nats: NatsContext, factory: PipelineDepsFactory): Promise<PipelineDepsFactory> {
  const results = await createBuildResultsOn(config, async () => new (await import('./queue/kv-result-index.js')).KvResultIndex(nats));
  if (!results) return factory;
  return async (job, ctx) => ({ results, ...(await factory(job, ctx)) });
}

/** The local store of `oci-build build` and `oci-build status`. */
export function createLocalStores(config: Config) {
  const paths = workPaths(config.workDir);
  return { store: new FileBuildStore(paths.builds), logs: new FileLogStore(paths.logs) };
}

// ---- the worker ----
// NATS and the worker are loaded on first use: `oci-build build` never needs them, and the single
// executable's snapshot cannot hold `nats` (see DESIGN.md).

/** The worker's ports on one NATS connection: the jobs consumer, the records, the logs, the registry. */
export async function createWorkerPorts(nats: NatsContext): Promise<Required<WorkerPorts>> {
  const [{ JetStreamJobConsumer }, { KvBuildStore }, { JetStreamLogStore }, { natsWorkerRegistry }, { KvCancelRequests }] = await Promise.all([
    import('./queue/job-consumer.js'),
    import('./queue/kv-build-store.js'),
    import('./queue/log-stream.js'),
    import('./queue/workers.js'),
    import('./queue/cancel-requests.js'),
  ]);
  return {
    consumer: new JetStreamJobConsumer(nats),
    store: new KvBuildStore(nats),
    logs: new JetStreamLogStore(nats),
    registry: natsWorkerRegistry(nats),
    cancels: new KvCancelRequests(nats),
  };
}

export type NatsWorkerOptions = Omit<WorkerOptions, keyof WorkerPorts> & { nats: NatsContext };

/** A worker on `nats`, started (consumer ensured, registered, pulling). */
export async function startNatsWorker(options: NatsWorkerOptions): Promise<Worker> {
  const { nats, ...rest } = options;
  const { startWorker } = await import('./worker/worker.js');
  return startWorker({ ...rest, ...(await createWorkerPorts(nats)) });
}

export interface WorkerDaemonDeps {
  pipelineDeps: PipelineDepsFactory;
  logger?: WorkerLogger;
  /** Overrides of the configuration's worker settings (e.g. --concurrency). */
  overrides?: Partial<Omit<NatsWorkerOptions, 'nats' | 'pipelineDeps'>>;
  /** Aborting it drains (the CLI's SIGINT signal). */
  signal?: AbortSignal;
  handleSignals?: boolean;
  /** Told once the worker pulls (e.g. to print where it runs). */
  onStarted?: (worker: Worker) => void;
}

/**
 * What a job loads on first use (`oci-build build` and `status` should not pay for modules they do
 * not need), loaded by the worker before it pulls: a daemon's start is nobody's wait, a first job's
 * latency is (~20 ms of module loading in the single executable).
 */
async function preloadJobModules(): Promise<void> {
  await Promise.all([import('execa'), import('isomorphic-git/http/node'), import('./git/git-service.js'), import('./git/git-source.js'), import('./image/registry-check.js')]);
}

/**
 * `oci-build worker`: connect to NATS, run until SIGTERM/SIGINT (drain) or a second signal
 * (cancel), close the connection. Resolves normally after a drain (exit 0); throws
 * ServiceUnavailableError (exit 3) when NATS cannot be reached at start.
 */
export async function runWorkerDaemon(config: Config, deps: WorkerDaemonDeps): Promise<Worker> {
  const [{ connectNats, closeNats }, { createWorkerLogger, workerOptionsFromConfig }] = await Promise.all([import('./queue/nats.js'), import('./worker/worker-options.js')]);
  const logger = deps.logger ?? createWorkerLogger();
  const name = deps.overrides?.name ?? config.worker.name;
  const nats = await connectNats(config.nats, { name: `oci-build-worker${name ? ` ${name}` : ''}`, logger });
  let notifier: CommitStatusNotifier | undefined;
  try {
    const { recordNotifications } = await import('./queue/kv-notifications.js');
    notifier = await createCommitStatusNotifier(config, { logger, record: async (id, notifications) => void (await recordNotifications(nats, id, notifications)) });
    const [pipelineDeps] = await Promise.all([withSharedResults(config, nats, deps.pipelineDeps), preloadJobModules()]);
    const worker = await startNatsWorker({ ...workerOptionsFromConfig(config), ...deps.overrides, nats, pipelineDeps, logger, ...(notifier ? { notifier } : {}) });
    deps.onStarted?.(worker);
    await worker.run({ handleSignals: deps.handleSignals ?? true, ...(deps.signal ? { signal: deps.signal } : {}) });
    return worker;
  } finally {
    // The statuses of the last builds, and their records, before the connection goes.
    await notifier?.close(10_000);
    await closeNats(nats);
  }
}
