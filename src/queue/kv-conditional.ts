// Conditional writes to a key of the status bucket: the one compare-and-set loop behind a record
// created only when absent, a push claimed once, and a record settled only while it is still the
// one serve wrote. A KV key is the subject `$KV.<bucket>.<key>`; publishing to it with
// `Nats-Expected-Last-Subject-Sequence: N` is stored only while the key's last message is N (0:
// never written), so of two writers exactly one wins, on every serve replica.

import type { KvEntry } from 'nats';
import { JetStreamPublishError, WRONG_LAST_SEQUENCE } from './js-publisher.js';
import { natsUnavailable, type NatsContext } from './nats.js';

/** After a lost race: the answer, or another try expecting the revision the key has now. */
export type ConflictDecision<T> = { done: T } | { retryAt: number };

export interface ConditionalWrite<T> {
  key: string;
  data: string;
  /** The key's last revision the write expects: 0 for never written (or a delete marker's revision). */
  expected: number;
  /** What was written: the answer when the write is stored (`seq` is its revision). */
  written(seq: number): T;
  /** The key changed under us: decide from what it holds now (null: nothing). */
  onConflict(entry: KvEntry | null): ConflictDecision<T>;
  /** For errors: "the record of build X", "the claim of push Y". */
  what: string;
  attempts?: number;
}

/** One write expecting revision `expected`: the new revision, or undefined when the key has another. */
export async function publishIfRevision(ctx: NatsContext, key: string, data: string, expected: number, what: string): Promise<number | undefined> {
  try {
    const ack = await ctx.publisher.publish(`$KV.${ctx.config.statusBucket}.${key}`, data, { expectLastSubjectSequence: expected });
    return ack.seq;
  } catch (err) {
    if (err instanceof JetStreamPublishError && err.errCode === WRONG_LAST_SEQUENCE) return undefined;
    throw natsUnavailable(`Cannot store ${what}`, err, ctx.config);
  }
}

/** Writes until stored, or until `onConflict` answers from what the key holds now. */
export async function writeIfRevision<T>(ctx: NatsContext, write: ConditionalWrite<T>): Promise<T> {
  let expected = write.expected;
  for (let attempt = 0; attempt < (write.attempts ?? 5); attempt++) {
    const seq = await publishIfRevision(ctx, write.key, write.data, expected, write.what);
    if (seq !== undefined) return write.written(seq);
    const decision = write.onConflict(await readEntry(ctx, write.key, write.what));
    if ('done' in decision) return decision.done;
    expected = decision.retryAt;
  }
  throw natsUnavailable(`Cannot store ${write.what}`, new Error('the key kept changing'), ctx.config);
}

export async function readEntry(ctx: NatsContext, key: string, what: string): Promise<KvEntry | null> {
  try {
    return await ctx.kv.get(key);
  } catch (err) {
    throw natsUnavailable(`Cannot read ${what}`, err, ctx.config);
  }
}

/** The entry when it holds a value (not a delete or purge marker). */
export function valueOf(entry: KvEntry | null): KvEntry | undefined {
  return entry !== null && entry.operation === 'PUT' && entry.length > 0 ? entry : undefined;
}
