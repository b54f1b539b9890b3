// The commit statuses posted for a build, written into its final record in the status bucket
// (`notifications`). A compare-and-set on the revision read (kv-conditional.ts): the record is
// read, the outcomes merged in, and the write stored only if nobody wrote the record meanwhile
// (else read again). Only a final record is touched: while a build runs, its worker writes whole
// records, and a write of ours in between would be lost or would undo one of its.

import { isFinalStatus, type BuildRecord, type StatusNotification } from '../core/types.js';
import { buildKey } from './job-queue.js';
import { publishIfRevision, readEntry, valueOf } from './kv-conditional.js';
import { natsUnavailable, type NatsContext } from './nats.js';

/** Entries a record keeps at most (the newest): a build posts a handful; redeliveries add a few. */
export const MAX_NOTIFICATIONS = 50;

export async function recordNotifications(ctx: NatsContext, id: string, entries: readonly StatusNotification[], attempts = 5): Promise<'recorded' | 'not-final' | 'absent'> {
  const key = buildKey(id);
  const what = `the record of build ${id}`;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const entry = valueOf(await readEntry(ctx, key, what));
    if (!entry) return 'absent';
    const record = entry.json<BuildRecord>();
    if (!isFinalStatus(record.status)) return 'not-final';
    const updated: BuildRecord = { ...record, notifications: mergeNotifications(record.notifications, entries) };
    if ((await publishIfRevision(ctx, key, JSON.stringify(updated), entry.revision, what)) !== undefined) return 'recorded';
  }
  throw natsUnavailable(`Cannot store the commit statuses of build ${id}`, new Error('the record kept changing'), ctx.config);
}

/** `existing` then `added`, without repeats, in time order, the newest MAX_NOTIFICATIONS. */
export function mergeNotifications(existing: readonly StatusNotification[] | undefined, added: readonly StatusNotification[]): StatusNotification[] {
  const seen = new Set<string>();
  const all: StatusNotification[] = [];
  for (const entry of [...(existing ?? []), ...added]) {
    const id = JSON.stringify([entry.context, entry.state, entry.at, entry.error ?? null]);
    if (seen.has(id)) continue;
    seen.add(id);
    all.push(entry);
  }
  // A stable sort: entries of the same instant keep the order they were posted in.
  return all.sort((a, b) => Date.parse(a.at) - Date.parse(b.at)).slice(-MAX_NOTIFICATIONS);
}
