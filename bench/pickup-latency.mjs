// pickup-latency: from JetStream's acknowledgement of a published job (what `serve` waits for
// before its 202) to a worker starting the pipeline of that job, over 200 jobs with a trivial
// build (no source, no toolchain). Jobs are published at a steady pace (one every PACE_MS) so the
// figure is the dispatch latency, not time spent queued behind other jobs.
// A real nats-server (JetStream, temp store) and the compiled worker (dist/); concurrency 4.
// Target: p99 ≤ 100 ms.

import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { percentile, median, ms, startNats } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => pathToFileURL(join(root, 'dist', path)).href;
const JOBS = Number(process.env.BENCH_PICKUP_JOBS ?? 200);
const WARMUP = 20;
const PACE_MS = Number(process.env.BENCH_PICKUP_PACE_MS ?? 10);
const CONCURRENCY = 4;
const TARGET_P99_MS = 100;

const silent = { debug() {}, info() {}, warn() {}, error() {}, child() { return silent; } };

/** Phase adapters that do nothing: the pipeline runs its bookkeeping (status and log writes) only. */
function trivialDeps() {
  return {
    source: {
      async checkout(_source, job) {
        return {
          dir: '/nonexistent',
          repository: { fullName: job.repository.fullName, branch: job.repository.branch, commit: job.repository.commit },
          commitTime: 0,
          warnings: [],
          changedFilesSince: async () => undefined,
          dispose: async () => undefined,
        };
      },
    },
    detector: {
      async detect(dir, options) {
        return { kind: 'single', dir, name: options.name, projects: [{ name: 'app', root: '.', dockerfileCandidates: [] }], selected: ['app'] };
      },
    },
    builder: {
      async build() {
        return [{ project: 'app', status: 'succeeded', startedAt: new Date().toISOString(), durationMs: 0 }];
      },
    },
    images: {
      async build() {
        throw new Error('no image');
      },
      async push() {
        throw new Error('no push');
      },
    },
  };
}

function job(id, i) {
  return {
    id,
    trigger: 'webhook',
    deliveryId: id,
    source: { kind: 'git', url: 'http://127.0.0.1:9/acme/bench.git', ref: `refs/heads/b${i}` },
    repository: { fullName: 'acme/bench', branch: `b${i}`, ref: `refs/heads/b${i}`, commit: 'b'.repeat(40) },
    noImage: true,
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

export async function run() {
  const { DEFAULTS } = await import(dist('config/config.js'));
  const { connectNats, closeNats } = await import(dist('queue/nats.js'));
  const { publishJob } = await import(dist('queue/job-queue.js'));
  const { KvBuildStore } = await import(dist('queue/kv-build-store.js'));
  const { startNatsWorker: startWorker } = await import(dist('compose.js'));
  const { runPipeline } = await import(dist('core/pipeline.js'));

  const nats = await startNats();
  const publisher = await connectNats({ ...DEFAULTS.nats, url: nats.url }, { name: 'bench-publisher' });
  const workerCtx = await connectNats({ ...DEFAULTS.nats, url: nats.url }, { name: 'bench-worker' });
  const started = new Map();
  const worker = await startWorker({
    nats: workerCtx,
    name: 'bench-worker',
    concurrency: CONCURRENCY,
    logger: silent,
    pipelineDeps: trivialDeps,
    runPipeline: (j, deps, options) => {
      started.set(j.id, performance.now());
      return runPipeline(j, deps, options);
    },
  });
  try {
    const acked = new Map();
    const total = WARMUP + JOBS;
    for (let i = 0; i < total; i++) {
      const id = `pickup-${i}`;
      await publishJob(publisher, job(id, i));
      acked.set(id, performance.now());
      await new Promise((r) => setTimeout(r, PACE_MS));
    }
    const deadline = Date.now() + 30_000;
    while (started.size < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const store = new KvBuildStore(publisher);
    const measured = [...acked.keys()].slice(WARMUP);
    const latencies = measured.filter((id) => started.has(id)).map((id) => started.get(id) - acked.get(id));
    // Give the last builds a moment to be recorded, then check they all ended well.
    await new Promise((r) => setTimeout(r, 500));
    const records = await Promise.all(measured.map((id) => store.get(id)));
    const succeeded = records.filter((r) => r?.status === 'succeeded').length;
    const p50 = median(latencies);
    const p99 = percentile(latencies, 99);
    const max = Math.max(...latencies);
    const early = latencies.filter((l) => l < 0).length;
    const ok = latencies.length === JOBS && succeeded === JOBS && p99 <= TARGET_P99_MS;
    return {
      name: 'pickup-latency',
      ok,
      lines: [
        `${JOBS} jobs (after ${WARMUP} warm-up), one published every ${PACE_MS} ms, worker concurrency ${CONCURRENCY}, trivial build`,
        `publish-ack → pipeline start: p50 ${ms(p50)}, p99 ${ms(p99)}, max ${ms(max)} (target p99 ≤ ${TARGET_P99_MS} ms)`,
        ...(early > 0 ? [`${early} job(s) started before their publisher saw the ack (negative latency, counted as measured)`] : []),
        `started ${latencies.length}/${JOBS}, succeeded ${succeeded}/${JOBS}`,
      ],
    };
  } finally {
    await worker.stop();
    await closeNats(workerCtx);
    await closeNats(publisher);
    await nats.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await run();
  for (const line of result.lines) console.log(line);
  console.log(result.ok ? 'target met' : 'TARGET MISSED');
}
