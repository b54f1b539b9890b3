// Writing a file so that a reader sees the old content or the new, never part of it, and a crash
// leaves no torn file: the one implementation for build records, the mirror's state file, pack
// indexes and isomorphic-git's own writes into a mirror.
//
// A temp file beside the target (same directory, so the rename is atomic; a name no reader
// lists: dot-prefixed, pid and a counter), written, fsynced (without it a crash after the rename
// can leave an empty file under the final name), renamed over the target; with `syncDir`, the
// directory is fsynced too, so the rename itself survives a crash. A failure removes the temp.

import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of a new file (default 0o644). */
  mode?: number;
  /** Also fsync the directory after the rename (default false). */
  syncDir?: boolean;
  /**
   * fsync the file before the rename (default true). Without it the write is still atomic for a
   * reader, but a crash can leave the target empty: only for states a later write replaces.
   */
  sync?: boolean;
}

let counter = 0;

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${++counter}.${randomBytes(3).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      if (options.sync ?? true) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  if (options.syncDir) await syncDirectory(dirname(path));
}

/** fsync of a directory: makes a rename or a new entry in it durable. Best effort where unsupported. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    await handle?.close();
  }
}
