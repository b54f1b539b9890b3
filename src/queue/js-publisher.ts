// JetStream publishes for the webhook path: the same protocol as nats.js's `js.publish` (a core
// publish with a reply subject; the stream answers with a PubAck, or an error, or the server with
// a 503 "no responders" status), over one reply subscription shared by every publish.
//
// Why not js.publish: it goes through nats.js's request machinery, which arms a timer per request
// and builds a "cancelled" NatsError (a stack capture) after every answer, even a successful one.
// That was ~7 % of serve's CPU under load (profiled), on the one path with a throughput target.
// Here a pending publish is a map entry, and one interval sweeps the expired ones. Both the reply
// subscription and the interval start with the first publish: a worker or a one-shot `status`
// that publishes nothing through it pays for neither.

import { createInbox, Events, headers as natsHeaders, type MsgHdrs, type NatsConnection, type NatsError, type Msg, type Subscription } from 'nats';

export interface PublishAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface PublishOptions {
  /** `Nats-Msg-Id`: the stream drops a second message with this id within its duplicate window. */
  msgId?: string;
  /** `Nats-Expected-Last-Subject-Sequence`: 0 stores the message only if the subject has none. */
  expectLastSubjectSequence?: number;
  headers?: MsgHdrs;
}

/** A PubAck error from the stream (wrong last sequence, message too large, ...). */
export class JetStreamPublishError extends Error {
  constructor(
    message: string,
    readonly code: number | undefined,
    readonly errCode: number | undefined,
  ) {
    super(message);
    this.name = 'JetStreamPublishError';
  }
}

/** The stream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check. */
export const WRONG_LAST_SEQUENCE = 10071;

interface Pending {
  resolve: (ack: PublishAck) => void;
  reject: (err: Error) => void;
  deadline: number;
}

const decoder = new TextDecoder();

export class JetStreamPublisher {
  private readonly prefix = `${createInbox()}.`;
  private readonly pending = new Map<string, Pending>();
  private listening: { subscription: Subscription; sweeper: NodeJS.Timeout } | undefined;
  private next = 0;
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    // Short: a publish that a cluster electing a new stream leader never answers is retried by
    // its caller (serve, within server.queueWait) rather than waited for.
    private readonly timeoutMs = 2_000,
  ) {
    void this.failOnDisconnect();
  }

  /**
   * A publish sent on a connection that then broke (its server killed) will never be answered:
   * its acknowledgement, if the server stored it at all, went down with the socket. Failing it at
   * once, rather than after the timeout, lets the caller retry on the connection nats.js makes to
   * another node of the cluster (every publish here is idempotent: a message id or an expected
   * sequence), which is what keeps a webhook inside server.queueWait during a node's death.
   */
  private async failOnDisconnect(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (this.closed) return;
      if (status.type === Events.Disconnect) this.expire(Number.POSITIVE_INFINITY, 'the connection to NATS broke before the acknowledgement');
    }
  }

  publish(subject: string, data: Uint8Array | string, options: PublishOptions = {}): Promise<PublishAck> {
    if (this.closed) return Promise.reject(new Error('the JetStream publisher is closed'));
    this.listening ??= {
      subscription: this.nc.subscribe(`${this.prefix}*`, { callback: (err, msg) => this.onReply(err, msg) }),
      sweeper: setInterval(() => this.expire(Date.now()), Math.min(250, this.timeoutMs)).unref(),
    };
    const h = options.headers ?? natsHeaders();
    if (options.msgId !== undefined) h.set('Nats-Msg-Id', options.msgId);
    if (options.expectLastSubjectSequence !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(options.expectLastSubjectSequence));
    const token = (this.next++).toString(36);
    return new Promise<PublishAck>((resolve, reject) => {
      this.pending.set(token, { resolve, reject, deadline: Date.now() + this.timeoutMs });
      try {
        this.nc.publish(subject, data, { reply: this.prefix + token, headers: h });
      } catch (err) {
        this.pending.delete(token);
        reject(err as Error);
      }
    });
  }

  /** Fails what is still waiting, and stops listening. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.listening) {
      clearInterval(this.listening.sweeper);
      this.listening.subscription.unsubscribe();
    }
    this.expire(Number.POSITIVE_INFINITY, 'the connection is closing');
  }

  private onReply(err: NatsError | null, msg: Msg): void {
    const token = msg?.subject.slice(this.prefix.length);
    const waiting = token === undefined ? undefined : this.pending.get(token);
    if (!waiting) return;
    this.pending.delete(token!);
    if (err) return waiting.reject(err);
    if (msg.headers?.hasError) {
      const code = msg.headers.code;
      return waiting.reject(
        new JetStreamPublishError(code === 503 ? 'no stream answered (503 no responders)' : `NATS answered ${code} ${msg.headers.description}`.trim(), code, undefined),
      );
    }
    let answer: { stream?: string; seq?: number; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string } };
    try {
      answer = JSON.parse(decoder.decode(msg.data)) as typeof answer;
    } catch {
      return waiting.reject(new JetStreamPublishError('the stream answered something that is not a PubAck', undefined, undefined));
    }
    if (answer.error) {
      return waiting.reject(new JetStreamPublishError(answer.error.description ?? 'the stream refused the message', answer.error.code, answer.error.err_code));
    }
    if (typeof answer.stream !== 'string' || typeof answer.seq !== 'number') {
      return waiting.reject(new JetStreamPublishError('the stream answered something that is not a PubAck', undefined, undefined));
    }
    waiting.resolve({ stream: answer.stream, seq: answer.seq, duplicate: answer.duplicate === true });
  }

  private expire(now: number, why = `no acknowledgement within ${this.timeoutMs} ms`): void {
    // Insertion order is deadline order (one timeout for all): stop at the first one still due.
    for (const [token, waiting] of this.pending) {
      if (waiting.deadline > now) break;
      this.pending.delete(token);
      waiting.reject(new Error(`JetStream publish: ${why}`));
    }
  }
}
