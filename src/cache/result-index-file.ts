// The result index of `oci-build build`: one JSON file per key under `<workDir>/results/`, written
// atomically (fs/atomic-write.ts), so a reader sees an entry whole or not at all.

import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResultEntry, ResultIndex } from '../core/ports.js';
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

export class FileResultIndex implements ResultIndex {
  constructor(private readonly dir: string) {}

  private path(key: string): string {
    // Keys are digests (core/result-key.ts); anything else never names a file.
    if (!KEY.test(key)) throw new Error(`Not a result key: ${JSON.stringify(key).slice(0, 80)}`);
    return join(this.dir, `${key}.json`);
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
