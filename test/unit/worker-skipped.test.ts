// A job the repository's .oci-build.yaml skips (a webhook push of a branch it excludes): the worker
// acknowledges it once, never retries it, counts it, and a redelivery of it is acknowledged unbuilt.

import { afterEach, describe, expect, it } from 'vitest';
import { settingsFrom } from '../../src/config/repo-settings.js';
import type { RepoSettingsReader } from '../../src/core/ports.js';
import type { BuildJob } from '../../src/core/types.js';
import { decideOutcome } from '../../src/worker/outcome.js';
import { startWorker, type Worker } from '../../src/worker/worker.js';
import { FakeJobQueue, MemoryJobLogStore } from '../helpers/fake-consumer.js';
import { FakeImageBuilder, MemoryBuildStore, fakeBuilder, fakeDetector, fakeSource } from '../helpers/fakes.js';
import { waitFor } from '../helpers/ports.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

const onlyMain: RepoSettingsReader = {
  read: async () => settingsFrom({ branches: { include: ['main'] } }, '.oci-build.yaml', 'b'.repeat(40)),
  checkPath: async () => undefined,
};

function job(id: string, branch: string): BuildJob {
  return {
    id,
    trigger: 'webhook',
    source: { kind: 'git', url: 'http://127.0.0.1:9/acme/app.git', ref: 'c'.repeat(40) },
    repository: { fullName: 'acme/app', branch, ref: `refs/heads/${branch}`, commit: 'c'.repeat(40) },
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: new Date().toISOString(),
  };
}

describe('skipped jobs on the worker', () => {
  it('decideOutcome: skipped is final, and a skipped record is acknowledged on redelivery', () => {
    const backoff = { retryDelayMs: 10, retryMaxDelayMs: 100 };
    expect(decideOutcome({ attempt: 1, maxDeliveries: 5, ran: true, handBack: false, result: { status: 'skipped' }, backoff })).toEqual({ kind: 'final', status: 'skipped' });
    expect(decideOutcome({ attempt: 2, maxDeliveries: 5, ran: false, handBack: false, existingStatus: 'skipped', backoff })).toEqual({ kind: 'ack' });
  });

  it('acknowledges a skipped job once, with its reason in the record, and counts it', async () => {
    const queue = new FakeJobQueue();
    const store = new MemoryBuildStore();
    const logs = new MemoryJobLogStore();
    const source = fakeSource({ repository: { fullName: 'acme/app', commit: 'c'.repeat(40) } });
    const worker = await startWorker({
      consumer: queue.session(),
      store,
      logs,
      name: 'w1',
      logger: silent,
      pipelineDeps: () => ({ source, detector: fakeDetector(), builder: fakeBuilder(), images: new FakeImageBuilder(), repoSettings: onlyMain }),
      ackWaitMs: 1_000,
      heartbeatMs: 100,
      pullExpiresMs: 1_000,
    });
    workers.push(worker);
    queue.publish(job('skip-1', 'feature/x'));
    queue.publish(job('build-1', 'main'));
    await waitFor(() => queue.stateOf('skip-1') === 'acked' && queue.stateOf('build-1') === 'acked', { timeoutMs: 5_000, intervalMs: 5, what: 'both jobs to be acknowledged' });
    expect(await store.get('skip-1')).toMatchObject({ status: 'skipped', skipReason: 'branch feature/x matches none of branches.include in .oci-build.yaml', worker: 'w1' });
    expect((await store.get('build-1'))?.status).toBe('succeeded');
    expect(queue.settlementsOf('skip-1')).toEqual([{ op: 'ack', seq: 1, attempt: 1 }]);
    expect(logs.ended.has('skip-1')).toBe(true);
    expect(worker.stats).toMatchObject({ skipped: 1, succeeded: 1, failed: 0, retried: 0 });
  });
});
