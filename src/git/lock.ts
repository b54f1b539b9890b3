// One writer per mirror. Builds in one process queue on a promise chain; worker processes sharing a
// work directory also take a lock file (created with O_EXCL), so two fetches never write into one
// mirror at once. A lock left by a dead process (same host, pid gone) or not refreshed for
// `staleMs` is broken. Housekeeping (`cache clean`) takes the same lock without waiting for it.

import { mkdir, open, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hostname } from 'node:os';
import { abortError, backoffDelay, sleep, type BackoffPolicy } from '../core/retry.js';

export interface LockOptions {
  signal?: AbortSignal;
  /** A lock file older than this (not refreshed) is considered abandoned. Default 10 minutes. */
  staleMs?: number;
  /** Called once when the lock is held by another process and we start waiting. */
  onWait?: (holder: string) => void;
}

const chains = new Map<string, Promise<unknown>>();

const DEFAULT_STALE_MS = 10 * 60_000;
/** Between looks at a held lock: 20–40 ms, doubling, up to 500–1000 ms. */
const LOCK_WAIT_BACKOFF: BackoffPolicy = { baseMs: 40, maxMs: 1000, jitter: 0.5 };

/** Runs `fn` while holding the lock `lockPath` (in this process and across processes). */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const previous = chains.get(lockPath) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(async () => {
    const release = await acquireFileLock(lockPath, options);
    try {
      return await fn();
    } finally {
      await release();
    }
  });
  chains.set(lockPath, run);
  try {
    return await run;
  } finally {
    // Drop the chain when nobody queued behind us, so the map does not grow with every mirror.
    if (chains.get(lockPath) === run) chains.delete(lockPath);
  }
}

/**
 * Runs `fn` holding the lock `lockPath` when nobody holds it now; otherwise returns at once with
 * what the holder wrote into the lock file. For housekeeping that must not wait for a build (and
 * keeps `fn` short, so that a build does not wait for it). An abandoned lock is broken, as
 * `withLock` would.
 */
export async function withLockIfFree<T>(
  lockPath: string,
  fn: () => Promise<T>,
  options: { staleMs?: number } = {},
): Promise<{ acquired: true; value: T } | { acquired: false; holder: string }> {
  // A build of this process holds it or waits for it.
  if (chains.has(lockPath)) return { acquired: false, holder: JSON.stringify({ host: hostname(), pid: process.pid }) };
  await mkdir(dirname(lockPath), { recursive: true });
  const attempt = await tryAcquireFileLock(lockPath, options.staleMs ?? DEFAULT_STALE_MS);
  if ('holder' in attempt) return { acquired: false, holder: attempt.holder };
  const run = (async () => {
    try {
      return await fn();
    } finally {
      await attempt.release();
    }
  })();
  chains.set(lockPath, run);
  try {
    return { acquired: true, value: await run };
  } finally {
    if (chains.get(lockPath) === run) chains.delete(lockPath);
  }
}

async function acquireFileLock(lockPath: string, options: LockOptions): Promise<() => Promise<void>> {
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  let waited = false;
  await mkdir(dirname(lockPath), { recursive: true });
  for (let round = 0; ; round++) {
    if (options.signal?.aborted) throw abortError(options.signal, `Waiting for the lock ${lockPath}`);
    const attempt = await tryAcquireFileLock(lockPath, staleMs);
    if ('release' in attempt) return attempt.release;
    if (!waited) {
      waited = true;
      options.onWait?.(attempt.holder);
    }
    await sleep(backoffDelay(round, LOCK_WAIT_BACKOFF), options.signal, { onAbort: 'reject' });
  }
}

/** Takes the lock file (breaking an abandoned one), or tells who holds it. Never waits. */
async function tryAcquireFileLock(lockPath: string, staleMs: number): Promise<{ release: () => Promise<void> } | { holder: string }> {
  const me = JSON.stringify({ host: hostname(), pid: process.pid, since: new Date().toISOString() });
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(me);
      } finally {
        await handle.close();
      }
      // Keep the lock fresh during a long fetch so other processes do not take it for abandoned.
      const refresh = setInterval(() => {
        const now = new Date();
        utimes(lockPath, now, now).catch(() => undefined);
      }, Math.max(1000, Math.floor(staleMs / 3)));
      refresh.unref();
      return {
        release: async () => {
          clearInterval(refresh);
          await rm(lockPath, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readFile(lockPath, 'utf8').catch(() => '');
    if (!(await isAbandoned(lockPath, holder, staleMs))) return { holder };
    // Rename first: of two processes breaking the same stale lock, only one succeeds.
    const aside = `${lockPath}.stale-${process.pid}-${Date.now()}`;
    try {
      await rename(lockPath, aside);
      await rm(aside, { force: true });
    } catch {
      // someone else broke it
    }
  }
}

async function isAbandoned(lockPath: string, holder: string, staleMs: number): Promise<boolean> {
  try {
    const info = JSON.parse(holder) as { host?: string; pid?: number };
    if (info.host === hostname() && typeof info.pid === 'number' && !processAlive(info.pid)) return true;
  } catch {
    // being written right now, or garbage: judged by age below
  }
  try {
    const { mtimeMs } = await stat(lockPath);
    return Date.now() - mtimeMs > staleMs;
  } catch {
    return false; // gone already: the next open will tell
  }
}

/** Whether a process with this pid runs on this host (one we may not signal counts as running). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
