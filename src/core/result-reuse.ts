// Reuse of earlier builds' images (README, "Result reuse"): before any toolchain runs, each project
// that will get an image is keyed on its inputs (core/result-key.ts); when the index knows the key
// and its image is still there (checked by digest), the project is neither built nor imaged again:
// the image gets the new tags. The pipeline calls these; the I/O is behind the BuildResults port.
//
// Builds of the same inputs at the same time (one commit pushed to several branches, a tag pushed
// while main's build of that commit runs) make the image once: the first claims the key in the
// index (ResultIndex.claim, on the workers' shared bucket); the others wait for its image and
// reuse it. A claim not refreshed for CLAIM_STALE_MS (its worker died) is taken over; one whose
// build failed is released, and the next waiter builds. Keys are claimed in their sorted order,
// one after the other, so two builds that share several keys never wait for each other.

import { describeError } from './errors.js';
import { imageLabels, imageRepository } from './naming.js';
import { sleep } from './retry.js';
import type { BuildResults, ClaimHolder, PhaseContext, Reporter, ResultClaim, ResultEntry, ResultIndex, ReuseSource, ReuseTarget, SourceCheckout } from './ports.js';
import type { BuildJob, BuildRecord, ImageResult, Project, RepositoryInfo, Workspace } from './types.js';

export interface ReusePlan {
  key: string;
  summary: Record<string, unknown>;
  /** Set on a hit: the entry and where its image is. */
  hit?: { entry: ResultEntry; source: ReuseSource };
  /** Set on a miss this build claimed: released when the build ends (releaseClaims). */
  claim?: ResultClaim;
}

/** How often a held claim is refreshed (its holder's heartbeat). */
export const CLAIM_REFRESH_MS = 5_000;
/** A claim not refreshed for this long is abandoned (its worker died): a waiter takes it over. */
export const CLAIM_STALE_MS = 30_000;
/** How often a waiting build looks for the image of the build it waits for. */
export const CLAIM_POLL_MS = 500;

/**
 * A claim an index holds for this process (the file index and the KV bucket alike): `refresh` every
 * `refreshMs` until it answers false (the claim is no longer ours: taken over as abandoned), then
 * `release` once, never both at once. Their errors are let pass: a claim not refreshed goes stale
 * and its waiters take it over after CLAIM_STALE_MS, a second build, never a wrong image.
 */
export function keptClaim(steps: { refresh(): Promise<boolean>; release(): Promise<void> }, refreshMs: number): ResultClaim {
  let held = true;
  let chain: Promise<void> = Promise.resolve();
  const serially = (step: () => Promise<void>) => (chain = chain.then(step, step));
  const timer = setInterval(() => {
    void serially(async () => {
      if (held) held = await steps.refresh().catch(() => true);
    });
  }, refreshMs);
  timer.unref();
  return {
    release: () =>
      serially(async () => {
        clearInterval(timer);
        if (!held) return;
        held = false;
        await steps.release().catch(() => undefined);
      }),
  };
}

/**
 * Claims `key`, or waits until the build holding it has recorded its image (`entry`, never the
 * `gone` entry already known to be of no use). Throws the signal's error when the job is cancelled
 * or times out while it waits.
 */
async function claimOrAwait(
  index: ResultIndex & Required<Pick<ResultIndex, 'claim'>>,
  input: { key: string; project: string; holder: ClaimHolder; gone?: ResultEntry; now: () => number; onWait?: WaitListener },
  ctx: PhaseContext,
  note: (line: string) => void,
): Promise<{ claim: ResultClaim } | { entry: ResultEntry }> {
  const { key, project, holder } = input;
  const fresh = (entry: ResultEntry | undefined) => (entry && entry.buildId !== input.gone?.buildId ? entry : undefined);
  let replacing: number | undefined;
  let waiting = false;
  try {
    for (;;) {
      const answer = await index.claim(key, holder, replacing);
      replacing = undefined;
      if ('claimed' in answer) {
        // Recorded between the lookup and the claim: nothing to build after all.
        const entry = fresh(await index.get(key));
        if (!entry) return { claim: answer.claimed };
        await answer.claimed.release();
        return { entry };
      }
      const age = input.now() - answer.refreshedAt;
      if (answer.heldBy.buildId === holder.buildId || age > CLAIM_STALE_MS) {
        // This build's own earlier attempt (its worker died; the job came back), or an abandoned claim.
        const why = answer.heldBy.buildId === holder.buildId ? 'by an earlier attempt of this build' : `by build ${answer.heldBy.buildId}, not refreshed for ${Math.round(age / 1000)} s`;
        note(`${project}: key ${key.slice(0, 12)} was claimed ${why}: taking it over`);
        replacing = answer.revision;
        continue;
      }
      if (!waiting) {
        note(`${project}: key ${key.slice(0, 12)} is being built by build ${answer.heldBy.buildId}${answer.heldBy.worker ? ` on ${answer.heldBy.worker}` : ''}: waiting for its image`);
        waiting = true;
        input.onWait?.({ project, holder: answer.heldBy });
      }
      await sleep(CLAIM_POLL_MS, ctx.signal, { onAbort: 'reject' });
      const entry = fresh(await index.get(key));
      if (entry) return { entry };
    }
  } finally {
    if (waiting) input.onWait?.(undefined);
  }
}

/** Told when a build starts waiting for another build's image of `project`, and (undefined) when it stops. */
export type WaitListener = (waiting: { project: string; holder: ClaimHolder } | undefined) => void;

/** Releases the claims of a build that ended (its results recorded, or it failed). Never throws. */
export async function releaseClaims(plans: Map<string, ReusePlan> | undefined): Promise<void> {
  if (!plans) return;
  await Promise.all([...plans.values()].map((plan) => plan.claim?.release().catch(() => undefined)));
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
 * hit; a miss is claimed, or waited for while another build of the same key makes its image
 * (claimOrAwait). Throws only when the job is cancelled or times out: whatever else fails (a base
 * image that cannot be resolved, NATS) is a miss, logged.
 */
export async function planReuse(
  results: BuildResults | undefined,
  input: { job: BuildJob; workspace: Workspace; selected: Project[]; checkout: SourceCheckout; repository: RepositoryInfo; holder: ClaimHolder; now: () => number; onWait?: WaitListener },
  ctx: PhaseContext,
): Promise<Map<string, ReusePlan>> {
  const plans = new Map<string, ReusePlan>();
  /** The misses to claim (or wait for), and the entry of each whose image was gone. */
  const misses: Array<{ project: string; plan: ReusePlan; gone?: ResultEntry }> = [];
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
        misses.push({ project: project.name, plan });
        continue;
      }
      const source = await results.locate(entry, reuseTarget(job, imageRepo, []), ctx);
      if (!source) {
        note(`${project.name}: key ${keyed.key.slice(0, 12)} was built by ${entry.buildId}, but its image ${entry.digest} is gone: building again`);
        misses.push({ project: project.name, plan, gone: entry });
        continue;
      }
      plan.hit = { entry, source };
      note(`${project.name}: key ${keyed.key.slice(0, 12)} reuses the image of build ${entry.buildId} (${entry.digest})`);
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      note(`${project.name}: no reuse (${describeError(err)})`);
    }
  }
  const index = results.index;
  if (!index.claim) return plans;
  const claimable = index as ResultIndex & Required<Pick<ResultIndex, 'claim'>>;
  for (const miss of misses.sort((a, b) => (a.plan.key < b.plan.key ? -1 : a.plan.key > b.plan.key ? 1 : 0))) {
    try {
      const outcome = await claimOrAwait(claimable, { key: miss.plan.key, project: miss.project, holder: input.holder, ...(miss.gone ? { gone: miss.gone } : {}), now: input.now, ...(input.onWait ? { onWait: input.onWait } : {}) }, ctx, note);
      if ('claim' in outcome) {
        miss.plan.claim = outcome.claim;
        continue;
      }
      const project = input.selected.find((p) => p.name === miss.project)!;
      const source = await results.locate(outcome.entry, reuseTarget(job, projectImageRepository(job, workspace, project), []), ctx);
      if (!source) {
        note(`${miss.project}: the image build ${outcome.entry.buildId} made (${outcome.entry.digest}) is not to be had: building it`);
        continue;
      }
      miss.plan.hit = { entry: outcome.entry, source };
      note(`${miss.project}: key ${miss.plan.key.slice(0, 12)} reuses the image of build ${outcome.entry.buildId} (${outcome.entry.digest}), made while this build waited`);
    } catch (err) {
      if (ctx.signal.aborted) {
        // Cancelled while waiting: the claims already taken are not left behind (refreshed, they would hold other builds up).
        await releaseClaims(plans);
        throw err;
      }
      note(`${miss.project}: builds without a claim (${describeError(err)})`);
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
