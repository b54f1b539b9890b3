import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BuildTimeoutError } from '../../src/core/errors.js';
import { withLock } from '../../src/git/lock.js';
import { secretMasker } from '../../src/core/secrets.js';
import { backoffDelay } from '../../src/core/retry.js';
import { IncompleteFetchError } from '../../src/git/mirror.js';
import { PackFormatError } from '../../src/git/pack-objects.js';
import { classifyRemoteError, fetchBackoff, retryTransient, RemoteFetchFailure } from '../../src/git/remote-errors.js';
import { tempDir } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/ports.js';

const identity = (s: string) => s;
const httpError = (statusCode: number) => Object.assign(new Error(`HTTP Error: ${statusCode}`), { code: 'HttpError', data: { statusCode, statusMessage: 'x' } });
const netError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });

describe('classifyRemoteError', () => {
  it('tells transient from permanent failures', () => {
    expect(classifyRemoteError(netError('ECONNREFUSED'), identity).kind).toBe('transient');
    expect(classifyRemoteError(netError('ECONNRESET'), identity).kind).toBe('transient');
    expect(classifyRemoteError(new Error('socket hang up'), identity).kind).toBe('transient');
    expect(classifyRemoteError(httpError(503), identity).kind).toBe('transient');
    expect(classifyRemoteError(httpError(429), identity).kind).toBe('transient');
    expect(classifyRemoteError(httpError(401), identity).kind).toBe('auth');
    expect(classifyRemoteError(httpError(403), identity).kind).toBe('auth');
    expect(classifyRemoteError(httpError(404), identity).kind).toBe('not-found');
    expect(classifyRemoteError(Object.assign(new Error('not smart'), { code: 'SmartHttpError' }), identity).kind).toBe('protocol');
    expect(classifyRemoteError(Object.assign(new Error('fetch failed'), { cause: netError('EAI_AGAIN') }), identity).kind).toBe('transient');
  });

  it('tells a pack cut or damaged in transit by its class, not by its message', () => {
    // Whatever the text: a pack that does not parse, or refs naming objects that never came.
    expect(classifyRemoteError(new PackFormatError('delta opcode 0 is reserved'), identity).kind).toBe('transient');
    expect(classifyRemoteError(new PackFormatError('unexpected end of pack data'), identity).kind).toBe('transient');
    expect(classifyRemoteError(new IncompleteFetchError('refs/remotes/origin/main names an object that did not arrive'), identity).kind).toBe('transient');
    // The same words in some other error decide nothing.
    expect(classifyRemoteError(new Error('unexpected end of pack data'), identity).kind).toBe('protocol');
  });

  it('masks secrets in the message', () => {
    const mask = secretMasker(['s3cret']);
    expect(classifyRemoteError(new Error('bad s3cret here'), mask).message).toBe('bad *** here');
    expect(mask(`Basic ${Buffer.from('s3cret').toString('base64')}`)).toBe('Basic ***');
  });
});

describe('backoff', () => {
  const policy = { retries: 5, retryDelayMs: 100, retryMaxDelayMs: 1000 };
  it('grows exponentially, is capped, and is jittered between half and all of the step', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, fetchBackoff({ ...policy, random: () => 0 })))).toEqual([50, 100, 200, 400, 500, 500]);
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, fetchBackoff({ ...policy, random: () => 0.999999 })))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('retries transient errors only, up to the configured count', async () => {
    let calls = 0;
    const retried: number[] = [];
    await expect(
      retryTransient(
        async () => {
          calls += 1;
          throw netError('ECONNREFUSED');
        },
        { retries: 3, retryDelayMs: 1, retryMaxDelayMs: 2 },
        { mask: identity, onRetry: (_f, _d, attempt) => retried.push(attempt) },
      ),
    ).rejects.toBeInstanceOf(RemoteFetchFailure);
    expect(calls).toBe(4);
    expect(retried).toEqual([1, 2, 3]);

    calls = 0;
    await expect(
      retryTransient(
        async () => {
          calls += 1;
          throw httpError(401);
        },
        { retries: 3, retryDelayMs: 1, retryMaxDelayMs: 2 },
        { mask: identity },
      ),
    ).rejects.toMatchObject({ failure: { kind: 'auth' } });
    expect(calls).toBe(1);

    calls = 0;
    const value = await retryTransient(
      async () => {
        calls += 1;
        if (calls < 3) throw httpError(502);
        return 'ok';
      },
      { retries: 3, retryDelayMs: 1, retryMaxDelayMs: 2 },
      { mask: identity },
    );
    expect(value).toBe('ok');
    expect(calls).toBe(3);
  });

  it('stops waiting when the build is cancelled', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 30);
    await expect(
      retryTransient(
        async () => {
          throw netError('ECONNREFUSED');
        },
        { retries: 3, retryDelayMs: 10_000, retryMaxDelayMs: 10_000 },
        { mask: identity, signal: controller.signal },
      ),
    ).rejects.toMatchObject({ code: 'E_CANCELLED' });
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('withLock', () => {
  it('serialises holders of one lock in a process and removes the lock file after', async () => {
    const dir = await tempDir();
    const lock = join(dir.path, 'repos', 'r.lock');
    const events: string[] = [];
    const hold = (name: string) =>
      withLock(lock, async () => {
        events.push(`${name}+`);
        expect(existsSync(lock)).toBe(true);
        await new Promise((r) => setTimeout(r, 20));
        events.push(`${name}-`);
      });
    await Promise.all([hold('a'), hold('b'), hold('c')]);
    expect(events).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    expect(existsSync(lock)).toBe(false);
    // a failure releases it too
    await expect(withLock(lock, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(existsSync(lock)).toBe(false);
    await dir.cleanup();
  });

  it('stops waiting for a held lock when the build is cancelled, with the reason it was cancelled for', async () => {
    const dir = await tempDir();
    const lock = join(dir.path, 'held.lock');
    const { hostname } = await import('node:os');
    // held by a live process (this one, as far as the lock file says)
    await writeFile(lock, JSON.stringify({ host: hostname(), pid: process.pid }));
    const cancelled = new AbortController();
    setTimeout(() => cancelled.abort(), 50);
    const started = Date.now();
    await expect(withLock(lock, async () => 'ran', { signal: cancelled.signal })).rejects.toMatchObject({ code: 'E_CANCELLED' });
    expect(Date.now() - started).toBeLessThan(2000);
    const timedOut = new AbortController();
    const reason = new BuildTimeoutError('The build timed out after 1s');
    setTimeout(() => timedOut.abort(reason), 50);
    await expect(withLock(lock, async () => 'ran', { signal: timedOut.signal })).rejects.toBe(reason);
    expect(existsSync(lock)).toBe(true);
    await dir.cleanup();
  });

  it('waits for another process holding the lock file, and breaks the lock of a dead one', async () => {
    const dir = await tempDir();
    const lock = join(dir.path, 'r.lock');
    // another live process holds it for ~300 ms
    const holder = promisify(execFile)(process.execPath, [
      '-e',
      `const fs=require('fs');fs.writeFileSync(${JSON.stringify(lock)},JSON.stringify({host:require('os').hostname(),pid:process.pid}),{flag:'wx'});setTimeout(()=>fs.rmSync(${JSON.stringify(lock)}),400)`,
    ]);
    await waitFor(() => existsSync(lock), { what: 'the other process to take the lock' });
    let waited = false;
    const started = Date.now();
    await withLock(lock, async () => undefined, { onWait: () => (waited = true) });
    expect(waited).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    await holder;

    // a lock left by a process that no longer exists is taken over at once
    const { hostname } = await import('node:os');
    await writeFile(lock, JSON.stringify({ host: hostname(), pid: 2 ** 22 + 12345 }));
    const t = Date.now();
    await withLock(lock, async () => undefined);
    expect(Date.now() - t).toBeLessThan(500);
    await dir.cleanup();
  });
});
