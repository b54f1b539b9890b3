// The CommitStatusNotifier port (core/ports.ts) over GitHub: what to post (status-mapping.ts), in
// what order and how often (status-queue.ts), to where (github-statuses.ts), and what became of it.
//
// Nothing here waits on the build's path: each call queues its posts and returns. Who records what:
// the worker's posts (building, then the final states) are written into the final record's
// `notifications` once the final posts have settled, by a conditional write on the final record
// (`record`, queue/kv-notifications.ts), so the worker's settlement never waits for GitHub and
// nothing overwrites a newer record. serve's `queued` post is logged, not recorded: serve does not
// write a record after its 202 (a worker owns it from then on), and the worker's posts supersede it.

import { describeError } from '../core/errors.js';
import type { CommitStatusNotifier } from '../core/ports.js';
import type { BuildJob, BuildRecord, StatusNotification } from '../core/types.js';
import { buildingStatuses, queuedStatuses, recordStatuses, statusTarget, type CommitStatus, type StatusTarget } from './status-mapping.js';
import { StatusQueue, type PostOutcome, type StatusQueueOptions, type StatusRequest } from './status-queue.js';

export interface NotifierLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface GithubNotifierOptions extends Omit<StatusQueueOptions, 'post'> {
  post: StatusQueueOptions['post'];
  /** server.publicUrl: statuses link to the build's page there. */
  publicUrl?: string;
  logger: NotifierLogger;
  /** Writes the outcomes into the build's final record (the worker's); absent in serve. */
  record?: (buildId: string, notifications: StatusNotification[]) => Promise<void>;
}

/** Outcomes kept per build: the building post's, until the final ones join them. */
const MAX_KEPT_BUILDS = 1000;

export class GithubCommitStatusNotifier implements CommitStatusNotifier {
  private readonly queue: StatusQueue;
  private readonly kept = new Map<string, { installationId?: number; outcomes: Promise<PostOutcome>[] }>();
  private readonly recording = new Set<Promise<void>>();

  constructor(private readonly options: GithubNotifierOptions) {
    this.queue = new StatusQueue(options);
  }

  queued(job: BuildJob, options: { stillQueued?: () => Promise<boolean> } = {}): void {
    const target = statusTarget(job);
    if (!target) return;
    for (const status of queuedStatuses(job, this.options.publicUrl)) {
      void this.send(job.id, target, status, job.installationId, options.stillQueued);
    }
  }

  building(job: BuildJob): void {
    const target = statusTarget(job);
    if (!target) return;
    const outcomes = buildingStatuses(job, this.options.publicUrl).map((status) => this.send(job.id, target, status, job.installationId));
    if (this.kept.size >= MAX_KEPT_BUILDS) this.kept.delete(this.kept.keys().next().value!);
    this.kept.set(job.id, { ...(job.installationId !== undefined ? { installationId: job.installationId } : {}), outcomes });
  }

  finished(record: BuildRecord, job: Pick<BuildJob, 'installationId'> = {}): void {
    const target = statusTarget(record);
    const kept = this.kept.get(record.id);
    this.kept.delete(record.id);
    if (!target) return;
    const installationId = job.installationId ?? kept?.installationId;
    const outcomes = [...(kept?.outcomes ?? []), ...recordStatuses(record, this.options.publicUrl).map((status) => this.send(record.id, target, status, installationId))];
    const recording = Promise.all(outcomes)
      .then(async (settled) => {
        const notifications = settled.filter((o) => !o.superseded).map(toNotification);
        if (notifications.length > 0) await this.options.record?.(record.id, notifications);
      })
      .catch((err: unknown) => this.options.logger.warn({ jobId: record.id, err: describeError(err) }, 'could not record the commit statuses in the build record'))
      .finally(() => this.recording.delete(recording));
    this.recording.add(recording);
  }

  async close(timeoutMs = 10_000): Promise<void> {
    await this.queue.close(timeoutMs);
    await Promise.allSettled([...this.recording]);
  }

  private send(buildId: string, target: StatusTarget, status: CommitStatus, installationId?: number, stillCurrent?: () => Promise<boolean>): Promise<PostOutcome> {
    const request: StatusRequest = { target, status, buildId, ...(installationId !== undefined ? { installationId } : {}), ...(stillCurrent ? { stillCurrent } : {}) };
    return this.queue.enqueue(request).then((outcome) => {
      const fields = { jobId: buildId, repository: `${target.owner}/${target.repo}`, commit: target.sha, context: outcome.context, state: outcome.state, attempts: outcome.attempts };
      if (outcome.error !== undefined) this.options.logger.warn({ ...fields, error: outcome.error }, 'commit status not posted');
      else if (!outcome.superseded) this.options.logger.info(fields, 'commit status posted');
      return outcome;
    });
  }
}

function toNotification(outcome: PostOutcome): StatusNotification {
  return { context: outcome.context, state: outcome.state, at: outcome.at, ...(outcome.error !== undefined ? { error: outcome.error } : {}) };
}
