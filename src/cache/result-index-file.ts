// The result index of `oci-build build`: one JSON file per key under `<workDir>/results/`, written
// atomically (fs/atomic-write.ts), so a reader sees an entry whole or not at all. A build about to
// make a key's image claims it with `<key>.claim` (created whole or not at all: a hard link of a
// written temp file, which fails when the claim exists), its mtime refreshed while it builds, removed
// when it ends: other builds of that key in the same work directory wait for its image.

import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClaimAnswer, ClaimHolder, ResultClaim, ResultEntry, ResultIndex } from '../core/ports.js';
import { CLAIM_REFRESH_MS, keptClaim } from '../core/result-reuse.js';
import { writeFileAtomic } from '../fs/atomic-write.js';

const KEY = /^[0-9a-f]{64}$/;

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const IMAGE_ID = /^[0-9a-f]{64}$/;

/**
 * A value read back is an entry only if it has the fields reuse relies on, in their forms: the
 * digest and image ID reach skopeo and buildah as arguments.
 */
export function parseResultEntry(text: string, key: string): ResultEntry | undefined {
  try {
    const value = JSON.parse(text) as Partial<ResultEntry>;
    if (value.key !== key || typeof value.digest !== 'string' || !DIGEST.test(value.digest)) return undefined;
    if (typeof value.repository !== 'string' || typeof value.buildId !== 'string' || typeof value.project !== 'string' || typeof value.pushed !== 'boolean') return undefined;
    if (value.imageId !== undefined && (typeof value.imageId !== 'string' || !IMAGE_ID.test(value.imageId))) return undefined;
    return value as ResultEntry;
  } catch {
    return undefined;
  }
}

/** The build a claim's value names (a value not of our making: a claim of an unknown build). */
export function parseClaimHolder(text: string): ClaimHolder {
  try {
    const value = JSON.parse(text) as Partial<ClaimHolder>;
    if (typeof value.buildId === 'string') return { buildId: value.buildId, ...(typeof value.worker === 'string' ? { worker: value.worker } : {}) };
  } catch {
    // see above
  }
  return { buildId: 'unknown' };
}

/** A claim file as read: its holder, the nonce of the process that wrote it, its mtime as revision and refresh time. */
interface ClaimFile {
  holder: ClaimHolder;
  nonce: string | undefined;
  revision: number;
  refreshedAt: number;
}

async function readClaimFile(path: string): Promise<ClaimFile | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    let nonce: string | undefined;
    try {
      nonce = (JSON.parse(text) as { nonce?: string }).nonce;
    } catch {
      nonce = undefined;
    }
    return { holder: parseClaimHolder(text), nonce, revision: Math.round(info.mtimeMs * 1000), refreshedAt: info.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class FileResultIndex implements ResultIndex {
  constructor(
    private readonly dir: string,
    /** For tests: how often a held claim is refreshed. */
    private readonly claimRefreshMs: number = CLAIM_REFRESH_MS,
  ) {}

  private path(key: string, suffix = 'json'): string {
    // Keys are digests (core/result-key.ts); anything else never names a file.
    if (!KEY.test(key)) throw new Error(`Not a result key: ${JSON.stringify(key).slice(0, 80)}`);
    return join(this.dir, `${key}.${suffix}`);
  }

  async claim(key: string, holder: ClaimHolder, replacing?: number): Promise<ClaimAnswer> {
    const path = this.path(key, 'claim');
    await mkdir(this.dir, { recursive: true });
    const nonce = randomBytes(8).toString('hex');
    const data = JSON.stringify({ ...holder, nonce });
    for (let attempt = 0; attempt < 3; attempt++) {
      if (replacing === undefined) {
        if (await createWhole(path, data)) return { claimed: heldFileClaim(path, nonce, this.claimRefreshMs) };
      } else if ((await readClaimFile(path))?.revision === replacing) {
        // Taken over by replacing the file whole; of two that replace it at once, the last one
        // read back holds it (the other may build too: a second build, never a wrong image).
        await writeFileAtomic(path, data, { sync: false });
        if ((await readClaimFile(path))?.nonce === nonce) return { claimed: heldFileClaim(path, nonce, this.claimRefreshMs) };
      }
      const current = await readClaimFile(path);
      if (current) return { heldBy: current.holder, revision: current.revision, refreshedAt: current.refreshedAt };
      replacing = undefined;
    }
    throw new Error(`Cannot claim result ${key.slice(0, 12)} in ${this.dir}: the claim kept changing`);
  }

  async get(key: string): Promise<ResultEntry | undefined> {
    try {
      return parseResultEntry(await readFile(this.path(key), 'utf8'), key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async put(entry: ResultEntry): Promise<void> {
    const path = this.path(entry.key);
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(path, `${JSON.stringify(entry, null, 2)}\n`);
  }
}

/** Creates `path` holding `data`, whole, unless it exists: false when it does. */
async function createWhole(path: string, data: string): Promise<boolean> {
  const temp = `${path}.${process.pid}.${randomBytes(3).toString('hex')}.tmp`;
  await writeFile(temp, data, { flag: 'wx' });
  try {
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(temp, { force: true });
  }
}

/** A claim file this process holds (its nonce in it): its mtime set to now while it is ours, removed on release while it is still ours. */
function heldFileClaim(path: string, nonce: string, refreshMs: number): ResultClaim {
  const ours = async () => (await readClaimFile(path).catch(() => undefined))?.nonce === nonce;
  return keptClaim(
    {
      refresh: async () => {
        if (!(await ours())) return false;
        const now = new Date();
        await utimes(path, now, now);
        return true;
      },
      release: async () => {
        if (await ours()) await unlink(path);
      },
    },
    refreshMs,
  );
}
