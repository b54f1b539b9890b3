// The pipeline: source → detect → build → image → (push) → record.
// `oci-build build`, the worker and the tests all call runPipeline with their own adapters.

import { monotonicMs } from './elapsed.js';
import {
  BuildFailedError,
  BuildTimeoutError,
  CancelledError,
  DockerfileMissingError,
  OciBuildError,
  describeError,
} from './errors.js';
import { imageLabels, imageRepository, imageTags } from './naming.js';
import { RecordWriter, initialRecord, summarize, withJobRefNames } from './pipeline-record.js';
import { detectWithRepoSettings, projectContextDir } from './repo-settings-apply.js';
import { markReused, planReuse, recordResults, releaseClaims, reuseImage, reuseTarget, type ReusePlan } from './result-reuse.js';
import type { BuildLog, PhaseContext, PipelineDeps, SourceCheckout } from './ports.js';
import { systemClock } from './ports.js';
import type {
  BuildJob,
  BuildRecord,
  ImageResult,
  PhaseMetric,
  PhaseName,
  Project,
  Workspace,
} from './types.js';

import { formatMs, throwIfAborted, toOciError } from './phase-errors.js';

export { RecordWriter, initialRecord } from './pipeline-record.js';
export { formatMs, toOciError } from './phase-errors.js';

export interface PipelineOptions {
  /** Cancels the build (SIGINT, superseded by a newer push). */
  signal?: AbortSignal;
  /** `build.timeout` in milliseconds; 0 or undefined for none. */
  timeoutMs?: number;
}

export interface PipelineResult {
  record: BuildRecord;
  /** Set when the build did not succeed; its exitCode is the CLI's. */
  error?: OciBuildError;
}

class PhaseFailure extends Error {
  constructor(readonly error: OciBuildError) {
    super(error.message);
  }
}

export async function runPipeline(job: BuildJob, deps: PipelineDeps, options: PipelineOptions = {}): Promise<PipelineResult> {
  const clock = deps.clock ?? systemClock;
  const timeout = new AbortController();
  const timer =
    options.timeoutMs && options.timeoutMs > 0
      ? setTimeout(() => timeout.abort(new BuildTimeoutError(`The build ran past its timeout of ${formatMs(options.timeoutMs!)}`, { hint: 'Raise build.timeout (OCI_BUILD_BUILD_TIMEOUT) or speed up the build.' })), options.timeoutMs)
      : undefined;
  timer?.unref?.();
  const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;

  const record: BuildRecord = {
    ...initialRecord(job),
    status: 'running',
    startedAt: clock.now().toISOString(),
    ...(deps.workerName ? { worker: deps.workerName } : {}),
  };
  const log: BuildLog = await deps.logs.open(job.id);
  if (log.location) record.logPath = log.location;
  const ctx: PhaseContext = { signal, log };
  let checkout: SourceCheckout | undefined;
  let failure: OciBuildError | undefined;

  // The record is written as it changes, without holding the build up (a file store fsyncs every
  // write; the KV store makes a round trip). The final write is awaited.
  const writer = new RecordWriter(async () => {
    await deps.store.put(record);
    await deps.reporter.recordUpdated?.(record);
  });
  const update = () => writer.schedule();

  /** Runs one phase (optionally for one project), recording its metric. */
  const phase = async <T>(name: PhaseName, project: string | undefined, fn: () => Promise<T>): Promise<T> => {
    throwIfAborted(signal);
    // A record that cannot be stored (NATS gone, disk full) stops the build before its next phase.
    writer.throwIfFailed();
    const metric: PhaseMetric = {
      name,
      status: 'running',
      ...(project !== undefined ? { project } : {}),
      startedAt: clock.now().toISOString(),
      durationMs: 0,
    };
    record.phases.push(metric);
    deps.reporter.phaseStarted(name, project);
    log.write(`==> ${name}${project !== undefined ? ` ${project}` : ''}`, 'system');
    const started = monotonicMs();
    try {
      const result = await fn();
      metric.status = 'succeeded';
      return result;
    } catch (err) {
      const error = toOciError(err, signal);
      metric.status = error instanceof CancelledError ? 'cancelled' : 'failed';
      metric.error = error.message;
      throw new PhaseFailure(error);
    } finally {
      metric.durationMs = Math.round(monotonicMs() - started);
      deps.reporter.phaseEnded(metric);
      update();
    }
  };

  const fail = (phaseName: PhaseName | 'queue', error: OciBuildError) => {
    failure = error;
    record.error = { phase: phaseName, code: error.code, message: error.message };
    log.write(`error: ${error.message}${error.hint ? `\nhint: ${error.hint}` : ''}`, 'system');
  };

  /** What planReuse decided, with the claims this build holds. */
  let plans: Map<string, ReusePlan> | undefined;
  /** The phase an error outside every phase() is charged to. */
  let outsidePhase: PhaseName = 'source';
  try {
    update();

    // ---- source ----
    checkout = await phase('source', undefined, () => deps.source.checkout(job.source, job, ctx));
    const source = checkout;
    const repository = withJobRefNames(source.repository, job);
    record.repository = { ...record.repository, ...repository };
    if (source.warnings.length > 0) {
      const sourceMetric = record.phases.find((p) => p.name === 'source');
      if (sourceMetric) sourceMetric.warning = source.warnings.join('; ');
      record.warnings = [...(record.warnings ?? []), ...source.warnings];
      for (const warning of source.warnings) {
        deps.reporter.warn(warning);
        log.write(`warning: ${warning}`, 'system');
      }
    }
    log.write(`commit ${repository.commit}${repository.branch ? ` (${repository.branch})` : repository.tag ? ` (${repository.tag})` : ''}`, 'system');

    // ---- detect ----
    const affectedBase = job.affectedBase;
    const detect = () =>
      deps.detector.detect(
        source.dir,
        {
          name: source.imageName ?? (source.repository.fullName.split('/').pop() || source.repository.fullName),
          ...(job.projects?.length ? { projects: job.projects } : {}),
          ...(affectedBase ? { affected: { base: affectedBase, changedFiles: () => source.changedFilesSince(affectedBase, ctx) } } : {}),
        },
        ctx,
      );
    // The repository's .oci-build.yaml, from the commit checked out (core/repo-settings-apply.ts).
    const detected = await phase('detect', undefined, () => detectWithRepoSettings({ reader: deps.repoSettings, checkout: source, job, repository, ctx, detect }));
    if (detected.settings) record.settings = detected.settings;
    for (const warning of detected.warnings) {
      record.warnings = [...(record.warnings ?? []), warning];
      deps.reporter.warn(warning);
      log.write(`warning: ${warning}`, 'system');
    }
    if (detected.kind === 'skip') {
      record.status = 'skipped';
      record.skipReason = detected.reason;
      log.write(`skipped: ${detected.reason}`, 'system');
      return { record };
    }
    const workspace: Workspace = detected.workspace;
    if (workspace.selectionNote) log.write(workspace.selectionNote, 'system');
    const selected = workspace.projects.filter((p) => workspace.selected.includes(p.name));
    record.projects = selected.map((p) => summarize(p));
    // Projects whose inputs were built before are neither built nor imaged again (core/result-reuse.ts).
    // Waiting for another build of the same inputs is the build phase's time, if it is cut short.
    outsidePhase = 'build';
    const reuse = await planReuse(
      deps.results,
      {
        job,
        workspace,
        selected,
        checkout: source,
        repository,
        holder: { buildId: job.id, ...(deps.workerName ? { worker: deps.workerName } : {}) },
        now: () => clock.now().getTime(),
        onWait: (waiting) => {
          if (waiting) record.waitingFor = { project: waiting.project, ...waiting.holder, since: clock.now().toISOString() };
          else delete record.waitingFor;
          update();
        },
      },
      ctx,
    );
    plans = reuse;
    const toBuild = markReused(record, reuse, selected, deps.reporter, clock.now());

    // ---- build ----
    // One metric per project. The builder runs them (Nx runs them together); failures do not throw.
    const buildStarted = clock.now().toISOString();
    const t0 = monotonicMs();
    for (const project of toBuild) deps.reporter.phaseStarted('build', project.name);
    log.write(`==> build ${toBuild.map((p) => p.name).join(', ')}`, 'system');
    let outcomes;
    try {
      throwIfAborted(signal);
      outcomes =
        toBuild.length === 0 ? [] : await deps.builder.build(toBuild.length === selected.length ? workspace : { ...workspace, selected: toBuild.map((p) => p.name) }, ctx);
    } catch (err) {
      const error = toOciError(err, signal);
      for (const project of toBuild) {
        const metric: PhaseMetric = {
          name: 'build',
          project: project.name,
          status: error instanceof CancelledError ? 'cancelled' : 'failed',
          startedAt: buildStarted,
          durationMs: Math.round(monotonicMs() - t0),
          error: error.message,
        };
        record.phases.push(metric);
        deps.reporter.phaseEnded(metric);
      }
      update();
      throw new PhaseFailure(error);
    }
    let buildFailure: OciBuildError | undefined;
    for (const outcome of outcomes) {
      const metric: PhaseMetric = {
        name: 'build',
        project: outcome.project,
        status: outcome.status === 'skipped' ? 'skipped' : outcome.status,
        startedAt: outcome.startedAt,
        durationMs: outcome.durationMs,
        ...(outcome.cached !== undefined ? { cached: outcome.cached } : {}),
        ...(outcome.error ? { error: outcome.error } : {}),
      };
      record.phases.push(metric);
      deps.reporter.phaseEnded(metric);
      const summary = record.projects.find((p) => p.name === outcome.project);
      if (summary) {
        summary.built = outcome.status === 'succeeded';
        if (outcome.cached !== undefined) summary.cached = outcome.cached;
      }
      if (outcome.status === 'failed' && !buildFailure) {
        buildFailure = new BuildFailedError(
          selected.length > 1 || workspace.kind === 'nx'
            ? `Project ${outcome.project} failed to build: ${outcome.error ?? 'see the log'}`
            : outcome.error ?? `The build of ${outcome.project} failed; see the log`,
          { hint: record.logPath ? `The full output is in ${record.logPath}` : undefined },
        );
      }
    }
    update();
    if (buildFailure) throw new PhaseFailure(buildFailure);

    // ---- image ----
    if (!job.noImage) {
      const explicit = new Set(job.projects ?? []);
      const tags = [...new Set([...imageTags(source.branchMovedOn ? { ...repository, branch: undefined } : repository), ...detected.tags])];
      const labels = imageLabels(repository, source.commitTime);
      const built: Array<{ project: Project; result: ImageResult }> = [];
      for (const project of selected) {
        const summary = record.projects.find((p) => p.name === project.name);
        if (!project.dockerfile) {
          const mustHaveImage = workspace.kind === 'single' || explicit.has(project.name);
          const looked = project.dockerfileCandidates.join(', ');
          if (mustHaveImage) {
            await phase('image', project.name, async () => {
              throw new DockerfileMissingError(`No Dockerfile for project ${project.name}: looked for ${looked}`, {
                hint: 'Add a Dockerfile (or Containerfile) at the project root, or run with --no-image to stop after the code build.',
                details: { looked: project.dockerfileCandidates },
              });
            });
          }
          if (summary) summary.noImageReason = `no Dockerfile (looked for ${looked})`;
          log.write(`${project.name}: no Dockerfile, no image (looked for ${looked})`, 'system');
          continue;
        }
        const dockerfile = project.dockerfile;
        const repository = imageRepository({
          registry: job.image.registry,
          name: workspace.name,
          ...(workspace.kind === 'nx' ? { project: project.name } : {}),
          ...(project.image !== undefined ? { image: project.image } : {}),
        });
        const hit = reuse.get(project.name)?.hit;
        if (hit && deps.results) {
          const target = reuseTarget(job, repository, tags);
          const reused = await phase('image', project.name, () => reuseImage(deps.results!, hit, project.name, target, ctx));
          record.images.push(reused);
          if (summary) summary.image = `${reused.repository}:${tags[0]}`;
          if (!reused.pushed) built.push({ project, result: reused });
          continue;
        }
        const image = await phase('image', project.name, () =>
          deps.images.build(
            {
              project: project.name,
              contextDir: projectContextDir(workspace, project),
              dockerfile,
              repository,
              tags,
              labels,
              buildArgs: { ...project.buildArgs, ...job.image.buildArgs },
              timestamp: source.commitTime,
              tlsVerify: job.image.tlsVerify,
            },
            ctx,
          ),
        );
        const result: ImageResult = {
          project: project.name,
          repository,
          tags,
          ...(image.digest ? { digest: image.digest } : {}),
          imageId: image.imageId,
          pushed: false,
        };
        record.images.push(result);
        if (summary) summary.image = `${repository}:${tags[0]}`;
        built.push({ project, result });
      }

      // ---- push ----
      if (job.image.push) {
        for (const { project, result } of built) {
          const pushed = await phase('push', project.name, () =>
            deps.images.push({ repository: result.repository, tags: result.tags, imageId: result.imageId!, tlsVerify: job.image.tlsVerify }, ctx),
          );
          result.digest = pushed.digest;
          result.pushed = true;
        }
      }
    }

    await recordResults(deps.results, reuse, record, ctx, clock.now());
    record.status = 'succeeded';
  } catch (err) {
    const error = err instanceof PhaseFailure ? err.error : toOciError(err, signal);
    const failedPhase = [...record.phases].reverse().find((p) => p.status === 'failed' || p.status === 'cancelled');
    fail(failedPhase?.name ?? outsidePhase, error);
    record.status = error instanceof CancelledError ? 'cancelled' : 'failed';
  } finally {
    if (timer) clearTimeout(timer);
    // After the results are recorded (or the build failed): builds waiting for these keys go on.
    await releaseClaims(plans);
    record.finishedAt = clock.now().toISOString();
    try {
      await checkout?.dispose();
    } catch (err) {
      log.write(`warning: could not remove the worktree: ${describeError(err)}`, 'system');
    }
    log.write(`==> ${record.status}`, 'system');
    await log.close();
    await writer.flush();
  }
  return failure ? { record, error: failure } : { record };
}
