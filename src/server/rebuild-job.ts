// POST /builds/:id/rebuild: the job that builds a record's commit again. Pure: no I/O.
//
// A rebuild is built from the record (it is all serve keeps of a job): the clone URL, the ref and
// the commit (by SHA, as a webhook job), the push's `before` as the affected base. It gets an id
// of its own and `rebuildOf`; serve's current image settings, as a webhook would. The clone URL is
// checked against server.allowedHosts again: the list may have changed since the push.
// A rebuild is deliberate: it is not deduplicated by the push claim (its claim key is its own id)
// and it neither supersedes nor is superseded by pushes of its branch (queue/job-queue.ts).

import { createHash, randomUUID } from 'node:crypto';
import { hostAllowed, hostLabel, type HostEntry } from '../core/hosts.js';
import type { BuildJob, BuildRecord, ImageOptions } from '../core/types.js';
import { ZERO_SHA } from './github-payload.js';

const SHA_PATTERN = /^[0-9a-f]{40}$/;

export type RebuildDecision = { kind: 'job'; job: BuildJob; pushKey: string } | { kind: 'refused'; reason: string };

export interface RebuildOptions {
  image: ImageOptions;
  allowedHosts: readonly HostEntry[];
  /** The client's Idempotency-Key: the same key for the same build gives the same rebuild. */
  idempotencyKey?: string;
  now?: Date;
}

/** `rb-<32 hex>`: random, or derived from the build and the client's Idempotency-Key. */
export function rebuildId(of: string, idempotencyKey?: string): string {
  if (idempotencyKey === undefined) return `rb-${randomUUID().replace(/-/g, '')}`;
  return `rb-${createHash('sha256').update(`${of}\0${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

export function decideRebuild(record: BuildRecord, options: RebuildOptions): RebuildDecision {
  const repo = record.repository;
  const commit = repo.commit;
  if (!repo.cloneUrl || !commit || !SHA_PATTERN.test(commit)) {
    return { kind: 'refused', reason: `Build ${record.id} cannot be rebuilt: its record names no Git clone URL and commit to build again` };
  }
  let url: URL;
  try {
    url = new URL(repo.cloneUrl);
  } catch {
    return { kind: 'refused', reason: `Build ${record.id} cannot be rebuilt: its clone URL is not a URL` };
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || !hostAllowed(url, options.allowedHosts)) {
    return { kind: 'refused', reason: `Build ${record.id} cannot be rebuilt: its clone URL names host ${hostLabel(url)}, which is not in server.allowedHosts` };
  }
  const id = rebuildId(record.id, options.idempotencyKey);
  const before = repo.before && SHA_PATTERN.test(repo.before) && repo.before !== ZERO_SHA ? repo.before : undefined;
  const job: BuildJob = {
    id,
    trigger: record.trigger,
    source: { kind: 'git', url: repo.cloneUrl, ref: commit },
    repository: {
      fullName: repo.fullName,
      cloneUrl: repo.cloneUrl,
      ...(repo.ref ? { ref: repo.ref } : {}),
      ...(repo.branch ? { branch: repo.branch } : {}),
      ...(repo.tag ? { tag: repo.tag } : {}),
      commit,
      ...(repo.before ? { before: repo.before } : {}),
    },
    ...(before ? { affectedBase: before } : {}),
    image: { ...options.image, buildArgs: { ...options.image.buildArgs } },
    createdAt: (options.now ?? new Date()).toISOString(),
    rebuildOf: record.id,
  };
  return { kind: 'job', job, pushKey: `rebuild ${id}` };
}
