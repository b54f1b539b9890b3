// Reuse of earlier builds' images (README, "Result reuse"): before any toolchain runs, each project
// that will get an image is keyed on its inputs (core/result-key.ts); when the index knows the key
// and its image is still there (checked by digest), the project is neither built nor imaged again:
// the image gets the new tags. The pipeline calls these; the I/O is behind the BuildResults port.

import { describeError } from './errors.js';
import { imageLabels, imageRepository } from './naming.js';
import type { BuildResults, PhaseContext, Reporter, ResultEntry, ReuseSource, ReuseTarget, SourceCheckout } from './ports.js';
import type { BuildJob, BuildRecord, ImageResult, Project, RepositoryInfo, Workspace } from './types.js';

export interface ReusePlan {
  key: string;
  summary: Record<string, unknown>;
  /** Set on a hit: the entry and where its image is. */
  hit?: { entry: ResultEntry; source: ReuseSource };
}

/** The image repository of a project, as the image phase names it (a `.oci-build.yaml` image name under the registry prefix). */
function projectImageRepository(job: BuildJob, workspace: Workspace, project: Project): string {
  if (project.image !== undefined) {
    const prefix = job.image.registry?.replace(/\/+$/, '');
    return prefix ? `${prefix}/${project.image}` : project.image;
  }
  return imageRepository({ registry: job.image.registry, name: workspace.name, ...(workspace.kind === 'nx' ? { project: project.name } : {}) });
}

export function reuseTarget(job: BuildJob, repository: string, tags: string[]): ReuseTarget {
  return { repository, tags, push: job.image.push, tlsVerify: job.image.tlsVerify };
}

/**
 * The key of every selected project with a Dockerfile and, where the index has a usable image, the
 * hit. Never throws: whatever fails (a base image that cannot be resolved, NATS) is a miss, logged.
 */
export async function planReuse(
  results: BuildResults | undefined,
  input: { job: BuildJob; workspace: Workspace; selected: Project[]; checkout: SourceCheckout; repository: RepositoryInfo },
  ctx: PhaseContext,
): Promise<Map<string, ReusePlan>> {
  const plans = new Map<string, ReusePlan>();
  const { job, workspace, checkout, repository } = input;
  if (!results || job.noImage) return plans;
  const note = (line: string) => ctx.log.write(`reuse: ${line}`, 'system');
  if (repository.dirty) {
    note('the worktree has uncommitted changes: every project builds');
    return plans;
  }
  const labels = imageLabels(repository, checkout.commitTime);
  for (const project of input.selected) {
    if (!project.dockerfile) continue;
    const imageRepo = projectImageRepository(job, workspace, project);
    try {
      const keyed = await results.keyOf(
        { workspace, project, checkout, repository, labels, imageRepository: imageRepo, buildArgs: job.image.buildArgs, tlsVerify: job.image.tlsVerify },
        ctx,
      );
      if ('reason' in keyed) {
        note(`${project.name}: not reusable (${keyed.reason})`);
        continue;
      }
      const plan: ReusePlan = { key: keyed.key, summary: keyed.summary };
      plans.set(project.name, plan);
      if (job.rebuildOf !== undefined) {
        // Asked for by a person: run the build again (its result still goes into the index).
        note(`${project.name}: a rebuild of ${job.rebuildOf} builds again (key ${keyed.key.slice(0, 12)} is not looked up)`);
        continue;
      }
      const entry = await results.index.get(keyed.key);
      if (!entry) {
        note(`${project.name}: key ${keyed.key.slice(0, 12)} not built before`);
        continue;
      }
      const source = await results.locate(entry, reuseTarget(job, imageRepo, []), ctx);
      if (!source) {
        note(`${project.name}: key ${keyed.key.slice(0, 12)} was built by ${entry.buildId}, but its image ${entry.digest} is gone: building again`);
        continue;
      }
      plan.hit = { entry, source };
      note(`${project.name}: key ${keyed.key.slice(0, 12)} reuses the image of build ${entry.buildId} (${entry.digest})`);
    } catch (err) {
      note(`${project.name}: no reuse (${describeError(err)})`);
    }
  }
  return plans;
}

/**
 * Marks the reused projects in the record (a skipped build metric, `reusedFrom`) and returns the
 * projects still to build.
 */
export function markReused(record: BuildRecord, plans: Map<string, ReusePlan>, selected: Project[], reporter: Reporter, now: Date): Project[] {
  const toBuild: Project[] = [];
  for (const project of selected) {
    const hit = plans.get(project.name)?.hit;
    if (!hit) {
      toBuild.push(project);
      continue;
    }
    const summary = record.projects?.find((p) => p.name === project.name);
    if (summary) summary.reusedFrom = hit.entry.buildId;
    const metric = { name: 'build' as const, project: project.name, status: 'skipped' as const, startedAt: now.toISOString(), durationMs: 0 };
    record.phases.push(metric);
    reporter.phaseEnded(metric);
  }
  return toBuild;
}

/** The image phase of a reused project: the image gets the new tags; its result says where it came from. */
export async function reuseImage(results: BuildResults, hit: NonNullable<ReusePlan['hit']>, project: string, target: ReuseTarget, ctx: PhaseContext): Promise<ImageResult> {
  const tagged = await results.retag(hit.source, target, ctx);
  return {
    project,
    repository: target.repository,
    tags: target.tags,
    ...(tagged.digest ? { digest: tagged.digest } : {}),
    ...(tagged.imageId ? { imageId: tagged.imageId } : {}),
    pushed: tagged.pushed,
    reusedFrom: hit.entry.buildId,
  };
}

/** After a successful build: every freshly built image goes into the index under its key. Never throws. */
export async function recordResults(results: BuildResults | undefined, plans: Map<string, ReusePlan>, record: BuildRecord, ctx: PhaseContext, now: Date): Promise<void> {
  if (!results) return;
  for (const image of record.images) {
    const plan = plans.get(image.project);
    if (!plan || plan.hit || image.reusedFrom || !image.digest) continue;
    const entry: ResultEntry = {
      key: plan.key,
      project: image.project,
      repository: image.repository,
      digest: image.digest,
      ...(image.imageId ? { imageId: image.imageId } : {}),
      pushed: image.pushed,
      buildId: record.id,
      createdAt: now.toISOString(),
      inputs: plan.summary,
    };
    try {
      await results.index.put(entry);
    } catch (err) {
      ctx.log.write(`warning: could not record the result of ${image.project} for reuse: ${describeError(err)}`, 'system');
    }
  }
}
