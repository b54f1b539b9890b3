// Prometheus metrics of `serve`, in a Registry of their own (nothing global, so tests and two
// servers in one process do not collide).
//
// Jobs by final status, phase durations and builds in flight come from a watch over the status
// KV bucket rather than from what this process saw: the workers write those records, and any
// `serve` replica reports the same numbers. The watch's initial replay fills the in-flight set
// without counting old builds as new completions.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { isFinalStatus, type BuildRecord } from '../core/types.js';
import type { RecordChange } from './job-intake.js';

export type WebhookOutcome =
  | 'queued'
  | 'duplicate'
  | 'ignored'
  | 'unauthorized'
  | 'invalid'
  | 'too_large'
  | 'unavailable'
  /** The body's buffer was dropped for server.maxInflightBytes (a correct signature: 503). */
  | 'overloaded'
  /** The client hung up before its answer. */
  | 'aborted'
  | 'error';

export interface ServerMetricsOptions {
  /** Jobs waiting in the stream, read on each scrape. */
  queueDepth?: () => Promise<number>;
  /** Process metrics (CPU, memory, event loop lag) too. */
  defaultMetrics?: boolean;
}

const DEFAULT_METRICS_PREFIX = 'oci_build_serve_';
const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly webhooks: Counter<'event' | 'outcome'>;
  readonly requests: Histogram<'method' | 'route' | 'status'>;
  readonly jobsFinished: Counter<'status'>;
  readonly phaseDuration: Histogram<'phase' | 'status'>;
  readonly inFlight: Gauge;
  readonly queueDepth: Gauge;
  /** Ids of running builds, and the status last seen of every non-final one. */
  private readonly live = new Map<string, BuildRecord['status']>();

  constructor(options: ServerMetricsOptions = {}) {
    const registers = [this.registry];
    this.webhooks = new Counter({
      name: 'oci_build_webhooks_total',
      help: 'GitHub webhook deliveries received, by event and outcome',
      labelNames: ['event', 'outcome'],
      registers,
    });
    this.requests = new Histogram({
      name: 'oci_build_http_request_duration_seconds',
      help: 'HTTP request durations, by route',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'oci_build_jobs_finished_total',
      help: 'Builds that reached a final status (succeeded, failed, cancelled, skipped), from the status bucket',
      labelNames: ['status'],
      registers,
    });
    this.phaseDuration = new Histogram({
      name: 'oci_build_phase_duration_seconds',
      help: 'Duration of each phase of the builds that finished, from their records',
      labelNames: ['phase', 'status'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers,
    });
    const live = this.live;
    this.inFlight = new Gauge({
      name: 'oci_build_builds_in_flight',
      help: 'Builds running on a worker now',
      registers,
      collect() {
        let running = 0;
        for (const status of live.values()) if (status === 'running') running++;
        this.set(running);
      },
    });
    const depth = options.queueDepth;
    this.queueDepth = new Gauge({
      name: 'oci_build_queue_depth',
      help: 'Jobs waiting in the JetStream stream (-1 when NATS is unreachable)',
      registers,
      async collect() {
        if (!depth) return;
        try {
          this.set(await depth());
        } catch {
          this.set(-1);
        }
      },
    });
    if (options.defaultMetrics) {
      collectDefaultMetrics({ register: this.registry, prefix: DEFAULT_METRICS_PREFIX });
      // prom-client names these gauges `…_total`, a suffix Prometheus keeps for counters
      // (`promtool check metrics` refuses them); they only sum the per-type gauges kept beside them.
      for (const name of GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(DEFAULT_METRICS_PREFIX + name);
    }
  }

  /** Feeds one change of the status bucket. */
  observeRecord(change: RecordChange): void {
    const record = change.record;
    if (!record) {
      this.live.delete(change.id);
      return;
    }
    if (!isFinalStatus(record.status)) {
      this.live.set(change.id, record.status);
      return;
    }
    this.live.delete(change.id);
    // A final record from the initial replay finished before the watch began; a final record
    // written again (same outcome rewritten) was counted already.
    const counted = this.finalIds.has(change.id);
    this.markFinal(change.id);
    if (change.initial || counted) return;
    this.jobsFinished.inc({ status: record.status });
    for (const phase of record.phases) {
      this.phaseDuration.observe({ phase: phase.name, status: phase.status }, phase.durationMs / 1000);
    }
  }

  /** Ids already counted as finished (bounded: oldest forgotten first). */
  private readonly finalIds = new Set<string>();
  private markFinal(id: string): void {
    this.finalIds.add(id);
    if (this.finalIds.size > 10_000) {
      const oldest = this.finalIds.values().next().value;
      if (oldest !== undefined) this.finalIds.delete(oldest);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
