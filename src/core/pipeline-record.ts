// What runPipeline keeps of a build besides running it: the record a job starts with, what the
// record says of the repository and the projects, and the writer that stores it as it changes.

import type { BuildJob, BuildRecord, Project, ProjectSummary, RepositoryInfo } from './types.js';

/** Builds the record a job starts with (status `queued`). */
export function initialRecord(job: BuildJob): BuildRecord {
  return {
    id: job.id,
    status: 'queued',
    trigger: job.trigger,
    ...(job.deliveryId ? { deliveryId: job.deliveryId } : {}),
    repository: { fullName: job.repository?.fullName ?? '', ...job.repository },
    createdAt: job.createdAt,
    ...(job.rebuildOf ? { rebuildOf: job.rebuildOf } : {}),
    phases: [],
    images: [],
  };
}

/**
 * Writes a changing record in the background, one write at a time: a change made while a write is
 * in flight is written after it (the latest state wins, intermediate ones may be skipped).
 * flush() writes the final state and waits for it. The last write's failure is rethrown by flush()
 * and by throwIfFailed() until a later write succeeds.
 */
export class RecordWriter {
  private pending = false;
  private running: Promise<void> | undefined;
  private failure: { error: unknown } | undefined;

  constructor(private readonly write: () => Promise<void>) {}

  schedule(): void {
    this.pending = true;
    this.running ??= this.drain();
  }

  throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  async flush(): Promise<void> {
    this.schedule();
    await this.running;
    this.throwIfFailed();
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      this.pending = false;
      try {
        await this.write();
        // A later state stored after a failed write: the record is whole again.
        this.failure = undefined;
      } catch (error) {
        this.failure = { error };
      }
    }
    this.running = undefined;
  }
}

/**
 * A webhook job builds the pushed commit by its SHA; the branch or tag it was pushed to comes from
 * the payload. Those names are kept when the source checked out that very commit.
 */
export function withJobRefNames(repository: RepositoryInfo, job: BuildJob): RepositoryInfo {
  const known = job.repository;
  if (!known || (known.commit && known.commit !== repository.commit)) return repository;
  if (repository.branch || repository.tag) return repository;
  return {
    ...repository,
    ...(known.ref ? { ref: known.ref } : {}),
    ...(known.branch ? { branch: known.branch } : {}),
    ...(known.tag ? { tag: known.tag } : {}),
  };
}

export function summarize(project: Project): ProjectSummary {
  return {
    name: project.name,
    ...(project.language ? { language: project.language } : {}),
    root: project.root,
    built: false,
  };
}
