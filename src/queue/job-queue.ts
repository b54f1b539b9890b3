// The jobs stream: publishing a BuildJob (deduplicated by Nats-Msg-Id) and what lets a newer push
// supersede an older build of the same repository and branch.
//
// Supersede: "newer" means a higher stream sequence (the order JetStream accepted the pushes in),
// never a clock. publishJob costs one awaited publish and nothing else (it is on the webhook's hot
// path), and the order is found from two places:
//   - the subject: a branch job is published on `<nats.subject>.<jobKey>`, so the newest job of a
//     branch still in the work-queue stream (queued or running: a message stays until acked) is
//     one "last message by subject" lookup away (newestQueuedJob);
//   - the KV key `latest.<jobKey>` = { id, seq }, raised by each worker when it starts a job
//     (compare-and-set, only upwards), which still holds after the newer job has been acked.
// Workers look at both before starting a job, when a job is published on a key they are building
// (a core subscription on `<nats.subject>.>`), when `latest.>` changes, and on every heartbeat.

import { createHash } from 'node:crypto';
import { headers } from 'nats';
import type { KvEntry } from 'nats';
import { DEFAULT_CONSUMER_NAME } from '../core/ports.js';
import type { BuildJob } from '../core/types.js';
import { readEntry, valueOf, writeIfRevision } from './kv-conditional.js';
import { isJsError, JsErrorCode } from './nats-errors.js';
import { natsUnavailable, subjectToken, type NatsContext } from './nats.js';

export const LATEST_KEY_PREFIX = 'latest';
/** Header carrying the job id on the jobs stream (the body is the BuildJob JSON). */
export const JOB_ID_HEADER = 'Oci-Build-Job-Id';

export interface LatestJob {
  id: string;
  /** Stream sequence of the job's message. */
  seq: number;
}

/**
 * A stable, KV-safe single token for a repository and branch (or tag):
 * a readable prefix plus a hash, e.g. `acme-shop_feature-x_3f2a…`. Repository names are
 * case-insensitive on GitHub; branch names are not.
 */
export function jobKey(fullName: string, branchOrTag: string): string {
  const repo = fullName.toLowerCase();
  const readable = (s: string) => s.replace(/[^A-Za-z0-9_-]+/g, '-').slice(0, 40);
  const hash = createHash('sha256').update(`${repo}\0${branchOrTag}`).digest('hex').slice(0, 16);
  return `${readable(repo)}_${readable(branchOrTag)}_${hash}`;
}

/**
 * The supersede key of a job: branch pushes only (a tag names one release; nothing supersedes it;
 * a rebuild is a person's deliberate choice of a commit: it neither supersedes nor is superseded).
 */
export function supersedeKeyOf(job: BuildJob): string | undefined {
  if (job.rebuildOf) return undefined;
  const fullName = job.repository?.fullName;
  const branch = job.repository?.branch;
  if (!fullName || !branch) return undefined;
  return jobKey(fullName, branch);
}

export function latestKey(key: string): string {
  return `${LATEST_KEY_PREFIX}.${key}`;
}

export function buildKey(id: string): string {
  return `build.${subjectToken(id)}`;
}

/** `<nats.subject>.<jobKey>` for a branch job, `<nats.subject>` for others. */
export function jobSubject(config: Pick<NatsContext['config'], 'subject'>, job: BuildJob): string {
  const key = supersedeKeyOf(job);
  return key ? `${config.subject}.${key}` : config.subject;
}

/** The subject key of a message on the jobs stream (undefined for jobs without one). */
export function keyOfSubject(config: Pick<NatsContext['config'], 'subject'>, subject: string): string | undefined {
  return subject.startsWith(`${config.subject}.`) ? subject.slice(config.subject.length + 1) : undefined;
}

/**
 * Publishes a job and waits for JetStream's acknowledgement. `Nats-Msg-Id` is the webhook
 * delivery id (or the job id), so a redelivered webhook within the duplicate window is not
 * stored twice: the answer then has `duplicate: true` and the original sequence.
 * Throws ServiceUnavailableError (transient) when NATS or the stream does not answer.
 */
export async function publishJob(ctx: NatsContext, job: BuildJob): Promise<{ duplicate: boolean; seq: number }> {
  const h = headers();
  h.set(JOB_ID_HEADER, job.id);
  try {
    const ack = await ctx.publisher.publish(jobSubject(ctx.config, job), JSON.stringify(job), { msgId: job.deliveryId ?? job.id, headers: h });
    return { duplicate: ack.duplicate, seq: ack.seq };
  } catch (err) {
    throw natsUnavailable(`Cannot queue build ${job.id} on stream ${ctx.config.stream}`, err, ctx.config);
  }
}

/** The newest job of a branch still in the stream (waiting or running), by its subject. */
export async function newestQueuedJob(ctx: NatsContext, key: string): Promise<LatestJob | undefined> {
  try {
    const m = await ctx.jsm.streams.getMessage(ctx.config.stream, { last_by_subj: `${ctx.config.subject}.${key}` });
    const id = m.header?.get(JOB_ID_HEADER) || m.json<BuildJob>().id;
    return { id, seq: m.seq };
  } catch (err) {
    if (isJsError(err, JsErrorCode.NoMessageFound)) return undefined;
    throw err;
  }
}

/** The newest job known for a branch: in the stream now, or started by a worker (KV). */
export async function newestJob(ctx: NatsContext, key: string): Promise<LatestJob | undefined> {
  let queued: LatestJob | undefined;
  let started: LatestJob | undefined;
  try {
    [queued, started] = await Promise.all([newestQueuedJob(ctx, key), getLatest(ctx, key)]);
  } catch (err) {
    throw natsUnavailable(`Cannot look up the newest build of ${key}`, err, ctx.config);
  }
  if (!queued) return started;
  if (!started) return queued;
  return queued.seq >= started.seq ? queued : started;
}

export async function getLatest(ctx: NatsContext, key: string): Promise<LatestJob | undefined> {
  return latestOf(await ctx.kv.get(latestKey(key)));
}

function latestOf(entry: KvEntry | null): LatestJob | undefined {
  const value = valueOf(entry);
  if (!value) return undefined;
  const { id, seq } = value.json<LatestJob>();
  return { id, seq };
}

/** Sets `latest.<key>` to `candidate` unless it already holds a newer (or the same) sequence; returns what it holds after. */
export async function raiseLatest(ctx: NatsContext, key: string, candidate: LatestJob): Promise<LatestJob> {
  const k = latestKey(key);
  const what = `the newest build of ${key}`;
  const entry = await readEntry(ctx, k, what);
  const current = latestOf(entry);
  if (current && current.seq >= candidate.seq) return current;
  const newer = { id: candidate.id, seq: candidate.seq };
  return writeIfRevision<LatestJob>(ctx, {
    key: k,
    data: JSON.stringify(newer),
    expected: entry?.revision ?? 0,
    written: () => newer,
    // Someone else wrote in between: theirs stands if it is newer, else try again over it.
    onConflict: (now) => {
      const held = latestOf(now);
      return held && held.seq >= candidate.seq ? { done: held } : { retryAt: now?.revision ?? 0 };
    },
    what,
    attempts: 20,
  });
}

export interface QueueStats {
  /** Jobs accepted and not finished (waiting and running). */
  total: number;
  /** Jobs handed to a worker and not yet acknowledged (running, or waiting for a retry). */
  inFlight: number;
  /** Jobs no worker has taken yet. */
  waiting: number;
}

/** The stream's jobs, split by what the workers' consumer `consumerName` has taken. */
export async function queueStats(ctx: NatsContext, consumerName: string = DEFAULT_CONSUMER_NAME): Promise<QueueStats> {
  try {
    const stream = await ctx.jsm.streams.info(ctx.config.stream);
    let inFlight = 0;
    try {
      inFlight = (await ctx.jsm.consumers.info(ctx.config.stream, consumerName)).num_ack_pending;
    } catch (err) {
      // No worker has started yet: nothing is in flight.
      if (!isJsError(err, JsErrorCode.ConsumerNotFound)) throw err;
    }
    const total = stream.state.messages;
    return { total, inFlight, waiting: Math.max(0, total - inFlight) };
  } catch (err) {
    throw natsUnavailable(`Cannot read the state of stream ${ctx.config.stream}`, err, ctx.config);
  }
}

/** Jobs waiting for a worker (not yet started): the workers' consumer is `consumerName`. */
export async function queueDepth(ctx: NatsContext, consumerName: string): Promise<number> {
  return (await queueStats(ctx, consumerName)).waiting;
}
