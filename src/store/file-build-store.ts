// The local BuildStore of `oci-build build` and `oci-build status`: one JSON file per build under
// <workDir>/builds. Written atomically (temp file, rename) so a concurrent `status` never sees half
// a record; the final record is also fsynced (file and directory) so it survives a crash. The
// states before it (running, a phase done) are not: each is replaced a moment later, and fsyncs
// competing with buildah's own for the disk's journal cost a build more than they keep.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isBuildId } from '../core/build-id.js';
import { InputError, OciBuildError } from '../core/errors.js';
import { matchesBuildFilter, newestFirst, checkedListLimit } from '../core/build-list.js';
import type { BuildListFilter, BuildStore } from '../core/ports.js';
import { isFinalStatus, type BuildRecord } from '../core/types.js';
import { writeFileAtomic } from '../fs/atomic-write.js';

/**
 * Throws InputError for an id that cannot be a file name in the store (`../x`, `a/b`, empty). Ids
 * become file names: the build-id grammar (core/build-id.ts) has no separator and no leading dot,
 * so no id can name a path outside the store or a hidden file.
 */
export function assertValidBuildId(id: string): void {
  if (!isBuildId(id)) {
    throw new InputError(`Invalid build id ${JSON.stringify(id)}`, {
      hint: 'A build id has letters, digits, ".", "_" and "-" only, e.g. 20261129-080102-ab12cd; `oci-build status` lists them.',
    });
  }
}

/**
 * `20261129-080102-ab12cd`: UTC time to the second, then 24 random bits. Sorting ids sorts builds
 * by start time; two builds in the same second collide with odds of one in 16 million.
 */
export function newBuildId(now: Date): string {
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, '').replace(/[-:]/g, '').replace('T', '-');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

const RECORD_SUFFIX = '.json';
// Reading every record at once could exhaust file descriptors in a large store.
const READ_BATCH = 64;

export class FileBuildStore implements BuildStore {
  /** @param dir the store's directory, `<workDir>/builds`; created on the first write. */
  constructor(readonly dir: string) {}

  /** Path of a build's record file. */
  pathOf(id: string): string {
    assertValidBuildId(id);
    return join(this.dir, `${id}${RECORD_SUFFIX}`);
  }

  async put(record: BuildRecord): Promise<void> {
    const target = this.pathOf(record.id);
    await mkdir(this.dir, { recursive: true });
    try {
      // The temp file is dot-prefixed (list() skips it) and unique per write, so concurrent puts
      // never share one.
      const final = isFinalStatus(record.status);
      await writeFileAtomic(target, `${JSON.stringify(record, null, 2)}\n`, { sync: final, syncDir: final });
    } catch (err) {
      throw storeError(`Could not write the build record ${target}`, err);
    }
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    const path = this.pathOf(id);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw storeError(`Could not read the build record ${path}`, err);
    }
    try {
      return JSON.parse(text) as BuildRecord;
    } catch (err) {
      throw new OciBuildError(`The build record ${path} is not valid JSON`, {
        cause: err,
        hint: 'The file was changed by hand or the disk is damaged; delete it to drop the record.',
      });
    }
  }

  /** Newest first by createdAt, then filtered (repository full name, branch, status), then cut at limit. */
  async list(filter: BuildListFilter = {}): Promise<BuildRecord[]> {
    const limit = checkedListLimit(filter);
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw storeError(`Could not list the build records in ${this.dir}`, err);
    }
    const ids = names.filter((n) => n.endsWith(RECORD_SUFFIX)).map((n) => n.slice(0, -RECORD_SUFFIX.length)).filter(isBuildId);
    const records: BuildRecord[] = [];
    for (let i = 0; i < ids.length; i += READ_BATCH) {
      const batch = await Promise.all(ids.slice(i, i + READ_BATCH).map((id) => this.readForList(id)));
      for (const record of batch) if (record && matchesBuildFilter(record, filter)) records.push(record);
    }
    return records.sort(newestFirst).slice(0, limit);
  }

  /** One record for a listing: a file removed or damaged meanwhile is left out, not fatal. */
  private async readForList(id: string): Promise<BuildRecord | undefined> {
    try {
      const record = await this.get(id);
      return looksLikeRecord(record) ? record : undefined;
    } catch {
      return undefined;
    }
  }
}

/** Enough of the shape for sorting, filtering and rendering not to trip over a hand-edited file. */
function looksLikeRecord(value: unknown): value is BuildRecord {
  const r = value as Partial<BuildRecord> | undefined;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.id === 'string' &&
    typeof r.status === 'string' &&
    typeof r.createdAt === 'string' &&
    typeof r.repository === 'object' &&
    r.repository !== null &&
    Array.isArray(r.phases) &&
    Array.isArray(r.images)
  );
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function storeError(message: string, err: unknown): OciBuildError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const hint =
    code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
      ? 'Make the work directory writable, or point workDir (OCI_BUILD_WORK_DIR) elsewhere.'
      : code === 'ENOSPC'
        ? 'Free disk space under the work directory.'
        : undefined;
  return new OciBuildError(`${message}: ${(err as Error | undefined)?.message ?? String(err)}`, { cause: err, ...(hint ? { hint } : {}) });
}
