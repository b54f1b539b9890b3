// Build logs on a JetStream stream (`nats.logStream`): subject `oci-build.logs.<id>`, one message
// per line, and an empty message with the `Oci-Build-Log-End` header when the build has ended.
// Followers (`GET /builds/:id/logs?follow=1`, `status --follow`) read from the start and stop at
// that marker, so a build that is retried or redelivered keeps one log until its final end.

import { headers, type JsMsg, type MsgHdrs, type PubAck } from 'nats';
import { retry, type BackoffPolicy } from '../core/retry.js';
import { maskSecrets } from '../core/secrets.js';
import type { BuildLog, LogStore, LogStream } from '../core/ports.js';
import { LOG_SUBJECT_PREFIX, natsUnavailable, subjectToken, type NatsContext } from './nats.js';
import { isJsError, JsErrorCode } from './nats-errors.js';

export const LOG_END_HEADER = 'Oci-Build-Log-End';
export const LOG_STREAM_HEADER = 'Oci-Build-Stream';
/** A line longer than this is cut: a message must stay far below NATS's max_payload (1 MB). */
export const MAX_LINE_BYTES = 64 * 1024;
/** The end marker is published up to five times, waiting 0.5, 1, 2 and 2 s between: a NATS restart's span. */
const END_MARKER_RETRIES = 4;
const END_MARKER_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 2_000 };

export function logSubject(id: string): string {
  return `${LOG_SUBJECT_PREFIX}.${subjectToken(id)}`;
}

export interface OpenLogOptions {
  /**
   * Publish the end marker on close() (default true). The worker turns it off for an attempt
   * that may be retried and ends the log itself once the build's outcome is final.
   */
  endOnClose?: boolean;
}

class JetStreamBuildLog implements BuildLog {
  readonly location: string;
  private readonly inflight = new Set<Promise<PubAck | void>>();
  private dropped = 0;
  private closed = false;

  constructor(
    private readonly store: JetStreamLogStore,
    private readonly ctx: NatsContext,
    private readonly id: string,
    private readonly options: OpenLogOptions,
  ) {
    this.location = `nats:${ctx.config.logStream}/${logSubject(id)}`;
  }

  write(text: string, stream: LogStream = 'stdout'): void {
    if (this.closed) return;
    // Masked before it is cut: a cut through a secret would leave a piece no mask matches.
    for (const raw of maskSecrets(text).split('\n')) {
      const line = Buffer.byteLength(raw) > MAX_LINE_BYTES ? `${Buffer.from(raw).subarray(0, MAX_LINE_BYTES).toString()}… [line cut]` : raw;
      let h: MsgHdrs | undefined;
      if (stream !== 'stdout') {
        h = headers();
        h.set(LOG_STREAM_HEADER, stream);
      }
      // Publishes are pipelined, not awaited one by one: they go out in order on one connection
      // (and are buffered by the client across a reconnect); close() waits for the acks.
      const p = this.ctx.js
        .publish(logSubject(this.id), line, h ? { headers: h } : undefined)
        .catch(() => {
          this.dropped++;
        })
        .finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.inflight]);
    if (this.dropped > 0) this.write(`[${this.dropped} log line(s) could not be stored: NATS did not acknowledge them]`, 'system');
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    if (this.options.endOnClose !== false) await this.store.end(this.id);
  }
}

export class JetStreamLogStore implements LogStore {
  constructor(private readonly ctx: NatsContext) {}

  async open(buildId: string): Promise<BuildLog> {
    return this.openLog(buildId, {});
  }

  async openLog(buildId: string, options: OpenLogOptions = {}): Promise<BuildLog> {
    return new JetStreamBuildLog(this, this.ctx, buildId, options);
  }

  /** Publishes the end marker: followers of this build's log stop here. */
  async end(buildId: string): Promise<void> {
    const h = headers();
    h.set(LOG_END_HEADER, '1');
    try {
      // A NATS restart may be under way: the marker matters (followers wait for it), so retry a while.
      await retry(() => this.ctx.js.publish(logSubject(buildId), '', { headers: h }), {
        policy: END_MARKER_BACKOFF,
        retries: END_MARKER_RETRIES,
        retryable: (_err): _err is unknown => true,
      });
    } catch (err) {
      throw natsUnavailable(`Cannot end the log of build ${buildId}`, err, this.ctx.config);
    }
  }
}

function isEndMarker(m: JsMsg): boolean {
  return m.headers?.get(LOG_END_HEADER) === '1';
}

/**
 * Every line of a build's log from the start. Without `follow`, the lines stored now; with it,
 * also the lines still to come, until the end marker (or until `signal` aborts).
 */
export async function* readLog(ctx: NatsContext, id: string, options: { follow: boolean; signal?: AbortSignal }): AsyncIterable<string> {
  const { signal } = options;
  if (signal?.aborted) return;
  const subject = logSubject(id);
  if (!options.follow) {
    try {
      await ctx.jsm.streams.getMessage(ctx.config.logStream, { last_by_subj: subject });
    } catch (err) {
      // Nothing logged yet under this id (or no log stream at all): an empty log.
      if (isJsError(err, JsErrorCode.NoMessageFound, JsErrorCode.StreamNotFound)) return;
      throw natsUnavailable(`Cannot read the log of build ${id}`, err, ctx.config);
    }
  }
  let messages;
  try {
    const consumer = await ctx.js.consumers.get(ctx.config.logStream, { filterSubjects: subject });
    messages = await consumer.consume({ max_messages: 512 });
  } catch (err) {
    throw natsUnavailable(`Cannot read the log of build ${id}`, err, ctx.config);
  }
  const onAbort = () => messages.stop();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const m of messages) {
      if (isEndMarker(m)) return;
      yield m.string();
      if (!options.follow && m.info.pending === 0) return;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await messages.close().catch(() => undefined);
  }
}
