// The retry rules of commit statuses (src/notify/status-queue.ts), against a fake API whose answers
// fast-check chooses, on a virtual clock: whatever the API fails with, once it recovers the last
// status of every context is the build's final one, a context's statuses land in the order they were
// queued, a rate limit is waited out, a 4xx is tried once, and no more than maxInFlight posts are
// ever in flight.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CommitStatus } from '../../src/notify/status-mapping.js';
import { StatusPostError, StatusQueue, type StatusRequest } from '../../src/notify/status-queue.js';

type Fault = 'server' | 'network' | { rateLimitMs: number };

interface Attempt {
  context: string;
  state: string;
  description: string;
  at: number;
  ok: boolean;
  fault?: Fault;
}

/** A fake API: each post takes the next fault of `faults` (shared by every lane), then succeeds for good. */
function fakeApi(faults: Fault[], options: { client?: (r: StatusRequest) => boolean } = {}) {
  let clock = 0;
  const attempts: Attempt[] = [];
  let inFlight = 0;
  let maxSeen = 0;
  const post = async (request: StatusRequest) => {
    inFlight++;
    maxSeen = Math.max(maxSeen, inFlight);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      const base = { context: request.status.context, state: request.status.state, description: request.status.description, at: clock };
      if (options.client?.(request)) {
        attempts.push({ ...base, ok: false });
        throw new StatusPostError('GitHub: Validation Failed', 'client', 422);
      }
      const fault = faults.shift();
      if (fault === undefined) {
        attempts.push({ ...base, ok: true });
        return;
      }
      attempts.push({ ...base, ok: false, fault });
      if (fault === 'server') throw new StatusPostError('GitHub: Server Error', 'server', 502);
      if (fault === 'network') throw new Error('connect ECONNREFUSED');
      throw new StatusPostError('GitHub: API rate limit exceeded', 'rate-limit', 403, fault.rateLimitMs);
    } finally {
      inFlight--;
    }
  };
  // A virtual clock: a wait moves it forward (never back), and resolves on the next turn.
  const sleep = async (ms: number, signal: AbortSignal) => {
    const until = clock + ms;
    await new Promise((resolve) => setImmediate(resolve));
    if (!signal.aborted) clock = Math.max(clock, until);
  };
  return { post, sleep, now: () => clock, attempts, maxInFlight: () => maxSeen };
}

const TARGET = { owner: 'acme', repo: 'app', sha: 'a'.repeat(40) };

function request(context: string, state: CommitStatus['state'], description: string): StatusRequest {
  return { target: TARGET, buildId: 'b1', status: { context, state, description } };
}

const faultArb: fc.Arbitrary<Fault> = fc.oneof(fc.constant<Fault>('server'), fc.constant<Fault>('network'), fc.integer({ min: 1, max: 120_000 }).map((ms): Fault => ({ rateLimitMs: ms })));
const finalArb = fc.constantFrom<CommitStatus['state']>('success', 'failure', 'error');

describe('StatusQueue', () => {
  it('whatever the API fails with, each context ends on its final state once the API recovers, in queued order, within maxInFlight', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.constantFrom('oci-build', 'oci-build/api', 'oci-build/web', 'oci-build/worker'), { minLength: 1, maxLength: 4 }),
        fc.array(faultArb, { maxLength: 40 }),
        fc.array(finalArb, { minLength: 4, maxLength: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.nat(3), { minLength: 12, maxLength: 12 }),
        async (contexts, faults, finals, maxInFlight, pauses) => {
          const api = fakeApi([...faults]);
          const queue = new StatusQueue({ post: api.post, sleep: api.sleep, now: api.now, maxInFlight, maxAttempts: 10_000, giveUpAfterMs: Number.POSITIVE_INFINITY });
          // Each context's life: queued, building, then final; contexts interleaved, with pauses between.
          const lives = contexts.map((context, i) => [request(context, 'pending', 'queued'), request(context, 'pending', 'building'), request(context, finals[i]!, `final ${finals[i]}`)]);
          const outcomes: Array<Promise<unknown>> = [];
          const finalOutcomes: Array<Promise<{ error?: string; superseded?: boolean }>> = [];
          let p = 0;
          for (let step = 0; step < 3; step++) {
            for (const life of lives) {
              const outcome = queue.enqueue(life[step]!);
              outcomes.push(outcome);
              if (step === 2) finalOutcomes.push(outcome);
              for (let k = 0; k < (pauses[p++ % pauses.length] ?? 0); k++) await new Promise((resolve) => setImmediate(resolve));
            }
          }
          await Promise.all(outcomes);
          await queue.idle();
          for (const [i, context] of contexts.entries()) {
            const posted = api.attempts.filter((a) => a.context === context && a.ok);
            expect(posted.at(-1)).toMatchObject({ state: finals[i], description: `final ${finals[i]}` });
            // Never an older state after a newer one: the order of the life.
            const order = posted.map((a) => ['queued', 'building', `final ${finals[i]}`].indexOf(a.description));
            expect(order).toEqual([...order].sort((a, b) => a - b));
          }
          for (const outcome of await Promise.all(finalOutcomes)) expect(outcome).not.toHaveProperty('error');
          expect(api.maxInFlight()).toBeLessThanOrEqual(maxInFlight);
          // A rate limit holds every lane: no attempt before the reset the API named.
          for (const [i, attempt] of api.attempts.entries()) {
            if (typeof attempt.fault !== 'object') continue;
            const resetAt = attempt.at + attempt.fault.rateLimitMs;
            const later = api.attempts.slice(i + 1).filter((a) => a.at < resetAt);
            // Only posts already in flight when the limit was answered may land before the reset.
            expect(later.length).toBeLessThan(maxInFlight);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('a 4xx other than a rate limit is tried once and kept as the outcome\'s error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(faultArb, { maxLength: 5 }), async (faults) => {
        const api = fakeApi(faults, { client: (r) => r.status.context === 'oci-build/bad' });
        const queue = new StatusQueue({ post: api.post, sleep: api.sleep, now: api.now, giveUpAfterMs: Number.POSITIVE_INFINITY, maxAttempts: 1000 });
        const [bad, good] = await Promise.all([queue.enqueue(request('oci-build/bad', 'success', 'x')), queue.enqueue(request('oci-build', 'success', 'y'))]);
        expect(api.attempts.filter((a) => a.context === 'oci-build/bad')).toHaveLength(1);
        expect(bad).toMatchObject({ context: 'oci-build/bad', state: 'success', attempts: 1, error: 'GitHub: Validation Failed' });
        expect(good).not.toHaveProperty('error');
      }),
      { numRuns: 50 },
    );
  });

  it('gives up after maxAttempts, or when the API asks to wait past giveUpAfterMs, with the reason', async () => {
    const api = fakeApi(Array.from({ length: 10 }, () => 'server' as const));
    const queue = new StatusQueue({ post: api.post, sleep: api.sleep, now: api.now, maxAttempts: 3 });
    expect(await queue.enqueue(request('oci-build', 'failure', 'x'))).toMatchObject({ attempts: 3, error: 'GitHub: Server Error (gave up after 3 attempts)' });

    const limited = fakeApi([{ rateLimitMs: 3_600_000 }]);
    const short = new StatusQueue({ post: limited.post, sleep: limited.sleep, now: limited.now, giveUpAfterMs: 60_000 });
    const outcome = await short.enqueue(request('oci-build', 'success', 'x'));
    expect(outcome.error).toMatch(/^GitHub: API rate limit exceeded \(gave up: the API asked to wait 3600s, past the 60s/);
    expect(limited.attempts).toHaveLength(1);
  });

  it('a retry whose build moved on (stillCurrent false) is dropped, never posted late', async () => {
    const api = fakeApi(['server', 'server']);
    const queue = new StatusQueue({ post: api.post, sleep: api.sleep, now: api.now });
    let current = true;
    const pending = queue.enqueue({ ...request('oci-build', 'pending', 'queued'), stillCurrent: async () => current });
    await new Promise((resolve) => setImmediate(resolve));
    current = false;
    expect(await pending).toMatchObject({ superseded: true });
    expect(api.attempts.filter((a) => a.ok)).toEqual([]);
  });

  it('close() ends the waits of retries and resolves every post', async () => {
    const never = new StatusQueue({ post: async () => { throw new StatusPostError('GitHub: Server Error', 'server', 503, 3_600_000); }, maxAttempts: 100, giveUpAfterMs: Number.POSITIVE_INFINITY });
    const outcome = never.enqueue(request('oci-build', 'success', 'x'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    await never.close(10);
    expect(await outcome).toMatchObject({ error: 'not posted: the process stopped before GitHub answered' });
    expect(await never.enqueue(request('oci-build', 'success', 'y'))).toMatchObject({ error: 'not posted: the process is stopping', attempts: 0 });
  });
});
