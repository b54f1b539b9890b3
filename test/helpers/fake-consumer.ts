// An in-memory job queue behind the JobConsumer port, for unit tests of the worker: JetStream's
// semantics as the worker relies on them (one delivery at a time per message, nak with a delay,
// redelivery when a consumer dies without settling, at most maxDeliver deliveries, newer-push
// notifications), and a log of every settlement the worker made.

import type {
  BuildLog,
  ConsumerEvent,
  ConsumerSettings,
  ConsumerWatch,
  Delivery,
  JobConsumer,
  JobLogStore,
  PushMark,
} from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';

interface Message {
  seq: number;
  key?: string;
  job?: BuildJob;
  deliveries: number;
  state: 'ready' | 'delivered' | 'waiting' | 'acked' | 'termed' | 'exhausted';
  /** The session holding the current delivery. */
  holder?: FakeConsumerSession;
}

export type Settlement =
  | { op: 'ack'; seq: number; attempt: number; lost?: boolean }
  | { op: 'nak'; seq: number; attempt: number; delayMs: number }
  | { op: 'term'; seq: number; attempt: number };

export class FakeJobQueue {
  readonly messages = new Map<number, Message>();
  readonly settlements: Settlement[] = [];
  readonly latest = new Map<string, { id: string; seq: number }>();
  settings?: ConsumerSettings;
  private lastSeq = 0;
  private readonly sessions = new Set<FakeConsumerSession>();
  private readonly lostAcks = new Set<string>();

  /** A consumer for one worker (one connection). */
  session(): FakeConsumerSession {
    const s = new FakeConsumerSession(this);
    this.sessions.add(s);
    return s;
  }

  /** Queues a job; `delivered` counts deliveries already made (a redelivery after a crash). */
  publish(job: BuildJob, options: { delivered?: number } = {}): number {
    const seq = ++this.lastSeq;
    const key = keyOf(job);
    this.messages.set(seq, { seq, job, deliveries: options.delivered ?? 0, state: 'ready', ...(key ? { key } : {}) });
    if (key) for (const s of this.sessions) s.heard(key, () => this.newestQueued(key));
    this.serve();
    return seq;
  }

  /** A message that is not a BuildJob. */
  publishGarbage(): number {
    const seq = ++this.lastSeq;
    this.messages.set(seq, { seq, deliveries: 0, state: 'ready' });
    this.serve();
    return seq;
  }

  /** The next ack of this job is lost on the way: the worker is told so, and the message comes back. */
  loseNextAck(jobId: string): void {
    this.lostAcks.add(jobId);
  }

  deliveriesOf(jobId: string): number {
    return [...this.messages.values()].find((m) => m.job?.id === jobId)?.deliveries ?? 0;
  }

  stateOf(jobId: string): Message['state'] | undefined {
    return [...this.messages.values()].find((m) => m.job?.id === jobId)?.state;
  }

  settlementsOf(jobId: string): Settlement[] {
    const seqs = new Set([...this.messages.values()].filter((m) => m.job?.id === jobId).map((m) => m.seq));
    return this.settlements.filter((s) => seqs.has(s.seq));
  }

  newestQueued(key: string): PushMark | undefined {
    const live = [...this.messages.values()].filter((m) => m.key === key && (m.state === 'ready' || m.state === 'delivered' || m.state === 'waiting'));
    const m = live.at(-1);
    return m?.job && { key, id: m.job.id, seq: m.seq };
  }

  raise(push: PushMark): PushMark {
    const current = this.latest.get(push.key);
    if (current && current.seq >= push.seq) return { key: push.key, ...current };
    this.latest.set(push.key, { id: push.id, seq: push.seq });
    for (const s of this.sessions) s.latestChanged(push);
    return push;
  }

  /** @internal */
  takeFor(session: FakeConsumerSession): Message | undefined {
    const m = [...this.messages.values()].find((x) => x.state === 'ready');
    if (!m) return undefined;
    m.state = 'delivered';
    m.deliveries++;
    m.holder = session;
    return m;
  }

  /** @internal */
  settle(m: Message, s: Settlement): void {
    this.settlements.push(s);
    m.holder = undefined;
    if (s.op === 'ack') {
      if (s.lost) return this.redeliverLater(m, 20);
      m.state = 'acked';
    } else if (s.op === 'term') {
      m.state = 'termed';
    } else {
      this.redeliverLater(m, s.delayMs);
    }
  }

  /** @internal: an ack that is lost on the way */
  ackIsLost(m: Message): boolean {
    return m.job !== undefined && this.lostAcks.delete(m.job.id);
  }

  /** @internal: a session died (SIGKILL): its deliveries come back, as after ack_wait. */
  orphaned(session: FakeConsumerSession): void {
    this.sessions.delete(session);
    for (const m of this.messages.values()) if (m.holder === session && m.state === 'delivered') this.redeliverLater(m, 0);
  }

  private redeliverLater(m: Message, delayMs: number): void {
    m.holder = undefined;
    if (this.settings && m.deliveries >= this.settings.maxDeliver) {
      m.state = 'exhausted';
      return;
    }
    m.state = 'waiting';
    setTimeout(() => {
      if (m.state !== 'waiting') return;
      m.state = 'ready';
      this.serve();
    }, delayMs);
  }

  private serve(): void {
    for (const s of this.sessions) s.wake();
  }
}

export class FakeConsumerSession implements JobConsumer {
  private dead = false;
  private readonly waiters = new Set<() => void>();
  private watcher?: { options: ConsumerWatch; listener: (event: ConsumerEvent) => void };

  constructor(private readonly queue: FakeJobQueue) {}

  async ensure(settings: ConsumerSettings): Promise<void> {
    this.queue.settings = settings;
  }

  next(options: { expiresMs: number; signal: AbortSignal }): Promise<Delivery | undefined> {
    return new Promise((resolve) => {
      const finish = (d: Delivery | undefined) => {
        clearTimeout(timer);
        options.signal.removeEventListener('abort', aborted);
        this.waiters.delete(tryTake);
        resolve(d);
      };
      const tryTake = () => {
        if (this.dead) return;
        const m = this.queue.takeFor(this);
        if (m) finish(new FakeDelivery(this.queue, this, m));
      };
      const aborted = () => finish(undefined);
      const timer = setTimeout(() => finish(undefined), options.expiresMs);
      if (options.signal.aborted) return finish(undefined);
      options.signal.addEventListener('abort', aborted, { once: true });
      this.waiters.add(tryTake);
      tryTake();
    });
  }

  supersedeKeyOf(job: BuildJob): string | undefined {
    return keyOf(job);
  }

  async newestPush(key: string): Promise<PushMark | undefined> {
    const queued = this.queue.newestQueued(key);
    const started = this.queue.latest.get(key);
    if (!queued) return started && { key, ...started };
    if (!started) return queued;
    return queued.seq >= started.seq ? queued : { key, ...started };
  }

  async raiseLatest(started: PushMark): Promise<PushMark> {
    return this.queue.raise(started);
  }

  watch(options: ConsumerWatch, listener: (event: ConsumerEvent) => void): () => void {
    this.watcher = { options, listener };
    return () => {
      this.watcher = undefined;
    };
  }

  /** The worker's process is gone: nothing it sends arrives; what it held is redelivered. */
  die(): void {
    this.dead = true;
    this.watcher = undefined;
    this.queue.orphaned(this);
  }

  get isDead(): boolean {
    return this.dead;
  }

  /** @internal */
  wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** @internal: a job was published on `key` (the plain subscription of the JetStream consumer). */
  heard(key: string, newest: () => PushMark | undefined): void {
    const w = this.watcher;
    if (!w?.options.pushes || !w.options.isBuilding(key)) return;
    const push = newest();
    if (push) w.listener({ type: 'newer-push', push });
  }

  /** @internal: latest.<key> moved (the KV watch). */
  latestChanged(push: PushMark): void {
    if (this.watcher?.options.pushes) this.watcher.listener({ type: 'newer-push', push });
  }
}

class FakeDelivery implements Delivery {
  readonly seq: number;
  readonly attempt: number;
  readonly job: BuildJob | undefined;
  readonly unreadable?: string;
  private settled = false;
  workingCalls = 0;

  constructor(
    private readonly queue: FakeJobQueue,
    private readonly session: FakeConsumerSession,
    private readonly message: Message,
  ) {
    this.seq = message.seq;
    this.attempt = message.deliveries;
    this.job = message.job && structuredClone(message.job);
    if (!message.job) this.unreadable = 'not a BuildJob';
  }

  private once(): boolean {
    if (this.session.isDead || this.settled || this.message.holder !== this.session) return false;
    this.settled = true;
    return true;
  }

  async ack(): Promise<void> {
    if (!this.once()) throw new Error('acknowledgement not confirmed (fake: no connection)');
    if (this.queue.ackIsLost(this.message)) {
      this.queue.settle(this.message, { op: 'ack', seq: this.seq, attempt: this.attempt, lost: true });
      throw new Error('timeout (fake: the acknowledgement was lost)');
    }
    this.queue.settle(this.message, { op: 'ack', seq: this.seq, attempt: this.attempt });
  }

  nak(delayMs = 0): void {
    if (this.once()) this.queue.settle(this.message, { op: 'nak', seq: this.seq, attempt: this.attempt, delayMs });
  }

  working(): void {
    if (!this.session.isDead) this.workingCalls++;
  }

  term(): void {
    if (this.once()) this.queue.settle(this.message, { op: 'term', seq: this.seq, attempt: this.attempt });
  }
}

function keyOf(job: BuildJob): string | undefined {
  const { fullName, branch } = job.repository ?? {};
  return fullName && branch ? `${fullName.toLowerCase()}\0${branch}` : undefined;
}

/** Build logs in memory, one per build across its deliveries, with the end marker. */
export class MemoryJobLogStore implements JobLogStore {
  readonly lines = new Map<string, string[]>();
  readonly ended = new Set<string>();

  open(buildId: string): Promise<BuildLog> {
    return this.openLog(buildId, {});
  }

  async openLog(buildId: string, options: { endOnClose?: boolean } = {}): Promise<BuildLog> {
    const lines = this.lines.get(buildId) ?? [];
    this.lines.set(buildId, lines);
    return {
      location: `memory:${buildId}`,
      write: (line) => lines.push(line),
      close: async () => {
        if (options.endOnClose !== false) this.ended.add(buildId);
      },
    };
  }

  async end(buildId: string): Promise<void> {
    this.ended.add(buildId);
  }
}
