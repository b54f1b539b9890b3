// decideOutcome's table as properties: whatever the other inputs, each rule holds.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JOB_STATUSES, isFinalStatus, type JobStatus } from '../../src/core/types.js';
import { decideOutcome, type OutcomeInput } from '../../src/worker/outcome.js';

const status = fc.constantFrom<JobStatus>(...JOB_STATUSES);
const error = fc.record({ code: fc.constantFrom('E_SERVICE_UNAVAILABLE', 'E_BUILD_FAILED', 'E_CANCELLED', 'E_TIMEOUT'), message: fc.string(), transient: fc.boolean() });

/** Any input at all. */
const input: fc.Arbitrary<OutcomeInput> = fc
  .record({
    maxDeliveries: fc.integer({ min: 1, max: 10 }),
    extra: fc.integer({ min: 0, max: 12 }),
    ran: fc.boolean(),
    existingStatus: fc.option(status, { nil: undefined }),
    supersededBy: fc.option(fc.constantFrom('newer-1', 'newer-2'), { nil: undefined }),
    handBack: fc.boolean(),
    result: fc.option(fc.record({ status, error: fc.option(error, { nil: undefined }) }), { nil: undefined }),
    retryDelayMs: fc.integer({ min: 0, max: 10_000 }),
    retryMaxDelayMs: fc.integer({ min: 0, max: 120_000 }),
    random: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  })
  .map(({ maxDeliveries, extra, retryDelayMs, retryMaxDelayMs, random, existingStatus, supersededBy, result, ...rest }) => ({
    ...rest,
    attempt: Math.max(1, extra),
    maxDeliveries,
    backoff: { retryDelayMs, retryMaxDelayMs },
    random: () => random,
    ...(existingStatus !== undefined ? { existingStatus } : {}),
    ...(supersededBy !== undefined ? { supersededBy } : {}),
    ...(result !== undefined ? { result: { status: result.status, ...(result.error ? { error: result.error } : {}) } } : {}),
  }));

describe('decideOutcome', () => {
  it('a transient error below maxDeliveries always retries, with a delay within the backoff bounds', () => {
    fc.assert(
      fc.property(input, (i) => {
        if (i.maxDeliveries === 1) return; // no attempt is below the maximum
        const attempt = Math.min(i.attempt, i.maxDeliveries - 1);
        const error = { code: 'E_SERVICE_UNAVAILABLE', message: 'away', transient: true };
        const o = decideOutcome({ ...i, ran: true, handBack: false, attempt, result: { status: 'failed', error } });
        expect(o.kind).toBe('retry');
        const d = Math.min(i.backoff.retryDelayMs * 2 ** (attempt - 1), i.backoff.retryMaxDelayMs);
        const delay = (o as { delayMs: number }).delayMs;
        expect(delay).toBeGreaterThanOrEqual(Math.floor(d * 0.8));
        expect(delay).toBeLessThanOrEqual(Math.ceil(d * 1.2));
      }),
    );
  });

  it('a transient error at maxDeliveries ends failed, saying it gave up', () => {
    fc.assert(
      fc.property(input, (i) => {
        const attempt = Math.max(i.attempt, i.maxDeliveries);
        const o = decideOutcome({ ...i, ran: true, handBack: false, attempt, result: { status: 'failed', error: { code: 'E_X', message: 'away', transient: true } } });
        expect(o).toEqual({ kind: 'final', status: 'failed', error: { code: 'E_X', message: `away (gave up after ${attempt} attempts)` } });
      }),
    );
  });

  it('a build failure is always final, on any delivery', () => {
    fc.assert(
      fc.property(input, (i) => {
        const error = { code: 'E_BUILD_FAILED', message: 'does not compile', transient: false };
        const o = decideOutcome({ ...i, ran: true, handBack: false, result: { status: 'failed', error } });
        expect(o).toEqual({ kind: 'final', status: 'failed', error: { code: 'E_BUILD_FAILED', message: 'does not compile' } });
      }),
    );
  });

  it('a hand-back never counts as a failure: it goes back whatever the error or the delivery', () => {
    fc.assert(
      fc.property(input, (i) => {
        expect(decideOutcome({ ...i, ran: true, handBack: true })).toEqual({ kind: 'handBack' });
        // Before a build, a draining worker hands back what nothing else decides.
        const { existingStatus: _e, supersededBy: _s, ...fresh } = i;
        expect(decideOutcome({ ...fresh, ran: false, handBack: true, attempt: Math.min(i.attempt, i.maxDeliveries) })).toEqual({ kind: 'handBack' });
      }),
    );
  });

  it('an already-final record is acknowledged and never built again', () => {
    fc.assert(
      fc.property(input, fc.constantFrom<JobStatus>('succeeded', 'failed', 'cancelled'), (i, final) => {
        expect(decideOutcome({ ...i, ran: false, existingStatus: final })).toEqual({ kind: 'ack' });
      }),
    );
  });

  it('a delivery past maxDeliveries of an unfinished job is failed, not built', () => {
    fc.assert(
      fc.property(input, fc.constantFrom<JobStatus | undefined>(undefined, 'queued', 'running'), (i, existing) => {
        const { existingStatus: _e, ...rest } = i;
        const attempt = i.maxDeliveries + 1 + (i.attempt % 3);
        const o = decideOutcome({ ...rest, ...(existing ? { existingStatus: existing } : {}), ran: false, attempt });
        expect(o.kind).toBe('final');
        expect(o).toMatchObject({ status: 'failed', error: { code: 'E_SERVICE_UNAVAILABLE' } });
        expect((o as { error: { message: string } }).error.message).toMatch(new RegExp(`^Gave up after ${attempt - 1} deliver`));
      }),
    );
  });

  it('a superseded job is cancelled naming the newer build: before it starts, or when its build ended cancelled', () => {
    fc.assert(
      fc.property(input, (i) => {
        const { existingStatus: _e, ...rest } = i;
        expect(decideOutcome({ ...rest, ran: false, supersededBy: 'newer-1', attempt: Math.min(i.attempt, i.maxDeliveries) })).toEqual({ kind: 'superseded', by: 'newer-1' });
        expect(decideOutcome({ ...i, ran: true, handBack: false, supersededBy: 'newer-1', result: { status: 'cancelled' } })).toEqual({ kind: 'superseded', by: 'newer-1' });
      }),
    );
  });

  it('after a build the answer is never ack or run; a final outcome always has a final status', () => {
    fc.assert(
      fc.property(input, (i) => {
        const o = decideOutcome({ ...i, ran: true });
        expect(['final', 'retry', 'handBack', 'superseded']).toContain(o.kind);
        if (o.kind === 'final') expect(isFinalStatus(o.status)).toBe(true);
        if (o.kind === 'final' && i.result && isFinalStatus(i.result.status) && !i.result.error?.transient) expect(o.status).toBe(i.result.status);
      }),
    );
  });

  it('before a build, an unfinished job within its deliveries, not superseded, on a running worker, is built', () => {
    fc.assert(
      fc.property(input, fc.constantFrom<JobStatus | undefined>(undefined, 'queued', 'running'), (i, existing) => {
        const { existingStatus: _e, supersededBy: _s, ...rest } = i;
        const o = decideOutcome({ ...rest, ...(existing ? { existingStatus: existing } : {}), ran: false, handBack: false, attempt: Math.min(i.attempt, i.maxDeliveries) });
        expect(o).toEqual({ kind: 'run' });
      }),
    );
  });
});
