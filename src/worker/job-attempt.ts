// What the pipeline sees of NATS during one delivery of a job: a store that holds back the final
// record (the worker decides whether the outcome is final, or a retry, or a hand-back, and writes
// it before acknowledging), a log that does not end the JetStream log on close (a retried attempt
// continues the same log), and a reporter that logs phases as JSON.

import { describeError, isTransient } from '../core/errors.js';
import type { BuildListFilter, BuildLog, BuildStore, JobLogStore, LogStore, Reporter } from '../core/ports.js';
import { retry } from '../core/retry.js';
import { isFinalStatus, type BuildRecord, type PhaseMetric, type PhaseName } from '../core/types.js';
import type { WorkerLogger } from './worker-options.js';

/** Worker notes kept in `warnings` across deliveries (other warnings belong to one attempt). */
export const DELIVERY_NOTE = /^delivery \d+ of \d+/;

/** Retries a store operation while NATS is away (reconnecting), up to `retryMs`: 100 ms, doubled, at most 5 s apart. */
export function withStoreRetry<T>(fn: () => Promise<T>, retryMs: number, onRetry?: (err: unknown, waitMs: number) => void): Promise<T> {
  return retry(() => fn(), {
    policy: { baseMs: 100, maxMs: 5_000 },
    deadlineMs: retryMs,
    retryable: (err): err is unknown => isTransient(err),
    ...(onRetry ? { onRetry: (err: unknown, waitMs: number) => onRetry(err, waitMs) } : {}),
  });
}

export class AttemptStore implements BuildStore {
  /** The last record the pipeline wrote with a final status; not yet stored. */
  finalRecord?: BuildRecord;

  constructor(
    private readonly inner: BuildStore,
    private readonly decorate: (record: BuildRecord) => BuildRecord,
    private readonly retryMs: number,
    private readonly logger: WorkerLogger,
  ) {}

  async put(record: BuildRecord): Promise<void> {
    const decorated = this.decorate(structuredClone(record));
    if (isFinalStatus(decorated.status)) {
      this.finalRecord = decorated;
      return;
    }
    await withStoreRetry(() => this.inner.put(decorated), this.retryMs, (err, waitMs) =>
      this.logger.warn({ err: describeError(err), waitMs }, 'status write failed; retrying'),
    );
  }

  get(id: string): Promise<BuildRecord | undefined> {
    return this.inner.get(id);
  }

  list(filter?: BuildListFilter): Promise<BuildRecord[]> {
    return this.inner.list(filter);
  }
}

/** Opens the job's JetStream log without the end marker: the worker ends it when the outcome is final. */
export class AttemptLogs implements LogStore {
  opened?: BuildLog;

  constructor(private readonly inner: JobLogStore) {}

  async open(buildId: string): Promise<BuildLog> {
    this.opened = await this.inner.openLog(buildId, { endOnClose: false });
    return this.opened;
  }
}

/** JSON lines per phase (jobId, phase, durationMs, commit) and the caller's reporter, if any. */
export class JobReporter implements Reporter {
  private commit?: string;

  constructor(
    private readonly logger: WorkerLogger,
    private readonly next?: Reporter,
  ) {}

  phaseStarted(phase: PhaseName, project?: string): void {
    this.logger.debug?.({ phase, ...(project !== undefined ? { project } : {}), ...(this.commit ? { commit: this.commit } : {}) }, 'phase started');
    this.next?.phaseStarted(phase, project);
  }

  phaseEnded(metric: PhaseMetric): void {
    const fields = {
      phase: metric.name,
      ...(metric.project !== undefined ? { project: metric.project } : {}),
      status: metric.status,
      durationMs: metric.durationMs,
      ...(this.commit ? { commit: this.commit } : {}),
      ...(metric.error ? { error: metric.error } : {}),
    };
    if (metric.status === 'failed') this.logger.warn(fields, 'phase failed');
    else this.logger.info(fields, 'phase ended');
    this.next?.phaseEnded(metric);
  }

  warn(message: string): void {
    this.logger.warn({ warning: message }, 'build warning');
    this.next?.warn(message);
  }

  async recordUpdated(record: BuildRecord): Promise<void> {
    if (record.repository.commit) this.commit = record.repository.commit;
    await this.next?.recordUpdated?.(record);
  }
}
