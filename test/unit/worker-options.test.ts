import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { parseConfig } from '../../src/config/config.js';
import { compileWorkerOptions, retryBackoffMs, workerOptionsFromConfig } from '../../src/worker/worker-options.js';
import { FakeJobQueue, MemoryJobLogStore } from '../helpers/fake-consumer.js';
import { MemoryBuildStore } from '../helpers/fakes.js';

// compileWorkerOptions never touches the ports.
const ports = { consumer: new FakeJobQueue().session(), store: new MemoryBuildStore(), logs: new MemoryJobLogStore() };
const pipelineDeps = () => {
  throw new Error('not called');
};
const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

describe('compileWorkerOptions', () => {
  it('fills in the defaults', () => {
    const o = compileWorkerOptions({ ...ports, pipelineDeps, logger: silent });
    expect(o).toMatchObject({
      concurrency: 1,
      maxDeliveries: 5,
      shutdownGraceMs: 300_000,
      cancelSuperseded: true,
      timeoutMs: 1_800_000,
      ackWaitMs: 30_000,
      heartbeatMs: 10_000,
      consumerName: 'oci-build-worker',
    });
    expect(o.name).toMatch(/:\d+$/);
  });

  it('reports every invalid option at once', () => {
    let err: unknown;
    try {
      compileWorkerOptions({ ...ports, pipelineDeps, logger: silent, concurrency: 0, maxDeliveries: 1.5, ackWaitMs: 2_000, heartbeatMs: 3_000 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    const message = (err as Error).message;
    expect(message).toContain('concurrency must be an integer ≥ 1 (got 0)');
    expect(message).toContain('maxDeliveries must be an integer ≥ 1 (got 1.5)');
    expect(message).toContain('heartbeatMs (3000) must be shorter than ackWaitMs (2000)');
  });

  it('takes worker.* and build.timeout from the configuration', () => {
    const config = parseConfig({ env: { OCI_BUILD_WORKER_CONCURRENCY: '3', OCI_BUILD_WORKER_SHUTDOWN_GRACE: '30s', OCI_BUILD_BUILD_TIMEOUT: '10m' } });
    expect(workerOptionsFromConfig(config)).toMatchObject({ concurrency: 3, maxDeliveries: 5, shutdownGraceMs: 30_000, cancelSuperseded: true, timeoutMs: 600_000 });
  });
});

describe('retryBackoffMs', () => {
  const options = { retryDelayMs: 2_000, retryMaxDelayMs: 60_000 };
  it('doubles per delivery up to the maximum, within ±20 %', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((d) => retryBackoffMs(d, options, () => 0.5))).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
    expect(retryBackoffMs(1, options, () => 0)).toBe(1_600);
    expect(retryBackoffMs(1, options, () => 0.999999)).toBe(2_400);
  });
});
