// The worker with a commit-status notifier whose GitHub fails as fast-check decides (5xx, network
// errors, rate limits, 4xx, answers that never come): the build's outcome, its record and its ack
// are the same as without GitHub, the settlement never waits for a post, and once the API answers
// again the last status of the build's context is its final state, recorded in `notifications`.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildJob, BuildRecord, StatusNotification } from '../../src/core/types.js';
import { GithubCommitStatusNotifier } from '../../src/notify/commit-status-notifier.js';
import { StatusPostError, type StatusRequest } from '../../src/notify/status-queue.js';
import { Worker, startWorker } from '../../src/worker/worker.js';
import { FakeJobQueue, MemoryJobLogStore } from '../helpers/fake-consumer.js';
import { COMMIT, FakeImageBuilder, MemoryBuildStore, fakeBuilder, fakeDetector, fakeSource } from '../helpers/fakes.js';
import { waitFor } from '../helpers/ports.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

type Fault = 'server' | 'network' | 'rate-limit' | 'client' | 'hang';

let script: Fault[] = [];
let hung: Array<() => void> = [];
const posted: Array<{ job: string; context: string; state: string }> = [];

async function post(request: StatusRequest): Promise<void> {
  const fault = script.shift();
  if (fault === 'hang') {
    // An answer that does not come until the test says so: the worker must not be waiting for it.
    await new Promise<void>((resolve) => hung.push(resolve));
    throw new StatusPostError('GitHub: socket hang up', 'network');
  }
  if (fault === 'server') throw new StatusPostError('GitHub: Server Error', 'server', 502);
  if (fault === 'network') throw new Error('connect ECONNRESET');
  if (fault === 'rate-limit') throw new StatusPostError('GitHub: API rate limit exceeded', 'rate-limit', 403, 5);
  if (fault === 'client') throw new StatusPostError('GitHub: Validation Failed', 'client', 422);
  posted.push({ job: request.buildId, context: request.status.context, state: request.status.state });
}

const queue = new FakeJobQueue();
const store = new MemoryBuildStore();
const logs = new MemoryJobLogStore();
const recorded = new Map<string, StatusNotification[]>();
const failing = new Set<string>();
const notifier = new GithubCommitStatusNotifier({
  post,
  logger: silent,
  // Fast retries, and enough of them that only a 4xx ends a post unposted.
  policy: { baseMs: 1, maxMs: 2 },
  maxAttempts: 1000,
  record: async (id, notifications) => void recorded.set(id, notifications),
});
let worker: Worker;

beforeAll(async () => {
  worker = await startWorker({
    consumer: queue.session(),
    store,
    logs,
    name: 'w',
    logger: silent,
    notifier,
    pipelineDeps: (job) => ({
      source: fakeSource({ repository: { fullName: 'acme/app', commit: COMMIT, branch: 'main' } }),
      detector: fakeDetector(),
      builder: fakeBuilder((ws) => ws.selected.map((project) => ({ project, status: failing.has(job.id) ? 'failed' : 'succeeded', startedAt: new Date().toISOString(), durationMs: 1, ...(failing.has(job.id) ? { error: 'exit status 1' } : {}) }))),
      images: new FakeImageBuilder(),
    }),
    ackWaitMs: 1_000,
    heartbeatMs: 100,
    pullExpiresMs: 1_000,
  });
});

afterAll(async () => {
  for (const release of hung.splice(0)) release();
  await worker?.stop();
  await notifier.close(1000);
});

function job(id: string): BuildJob {
  return {
    id,
    trigger: 'webhook',
    source: { kind: 'git', url: 'https://github.com/acme/app.git', ref: COMMIT },
    repository: { fullName: 'acme/app', branch: 'main', ref: 'refs/heads/main', commit: COMMIT },
    noImage: true,
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

let runs = 0;

describe('the worker with commit statuses', () => {
  it('whatever GitHub answers, the build ends, is recorded and acknowledged as without it, and its final state is posted last once GitHub recovers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom<Fault>('server', 'network', 'rate-limit', 'client', 'hang'), { maxLength: 8 }), fc.boolean(), async (faults, fails) => {
        const id = `st-${++runs}`;
        if (fails) failing.add(id);
        script = [...faults];
        queue.publish(job(id));
        await waitFor(() => queue.stateOf(id) === 'acked', { timeoutMs: 5_000, intervalMs: 2, what: `${id} to be acknowledged` });
        const record = (await store.get(id)) as BuildRecord;
        expect(record.status).toBe(fails ? 'failed' : 'succeeded');
        if (fails) expect(record.error).toMatchObject({ phase: 'build' });
        expect(queue.settlementsOf(id)).toEqual([{ op: 'ack', seq: expect.any(Number), attempt: 1 }]);
        // Now the API recovers: what hung fails (and is retried), nothing else fails.
        script = [];
        for (const release of hung.splice(0)) release();
        await waitFor(() => recorded.has(id), { timeoutMs: 5_000, intervalMs: 2, what: `${id}'s statuses to be recorded` });
        const mine = posted.filter((p) => p.job === id && p.context === 'oci-build');
        const final = fails ? 'failure' : 'success';
        const lostToA4xx = recorded.get(id)!.some((n) => n.state === final && n.context === 'oci-build' && n.error === 'GitHub: Validation Failed');
        // A 4xx is not retried (the statuses API refused that status for good); anything else ends in the final state.
        if (!lostToA4xx) expect(mine.at(-1)?.state).toBe(final);
        expect(recorded.get(id)!.filter((n) => n.context === 'oci-build').at(-1)).toMatchObject({ state: final });
        // The record the worker wrote is untouched by GitHub's answers.
        expect((await store.get(id))!.status).toBe(record.status);
      }),
      { numRuns: 25 },
    );
  }, 120_000);

  it('a job whose record serve already settled (a queued build cancelled) gets its final status when a worker acknowledges it', async () => {
    script = [];
    const id = 'st-cancelled-queued';
    const queued = job(id);
    await store.put({ id, status: 'cancelled', cancelledBy: 'api:token#1', trigger: 'webhook', repository: { fullName: 'acme/app', commit: COMMIT }, createdAt: queued.createdAt, finishedAt: new Date().toISOString(), phases: [], images: [] });
    queue.publish(queued);
    await waitFor(() => queue.stateOf(id) === 'acked', { timeoutMs: 5_000, intervalMs: 2, what: `${id} to be acknowledged` });
    await waitFor(() => recorded.has(id), { timeoutMs: 5_000, intervalMs: 2, what: `${id}'s statuses to be recorded` });
    expect(posted.filter((p) => p.job === id)).toEqual([{ job: id, context: 'oci-build', state: 'error' }]);
    expect((await store.get(id))!.status).toBe('cancelled');
  });
});
