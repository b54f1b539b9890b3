// How every BuildStore lists builds: the same filter and the same order, wherever records live.

import { InputError } from './errors.js';
import type { BuildListFilter } from './ports.js';
import type { BuildRecord } from './types.js';

/** The record passes the listing's filter (repository, branch, status). */
export function matchesBuildFilter(record: BuildRecord, filter: BuildListFilter): boolean {
  // GitHub treats owner/name case-insensitively; so does the filter.
  if (filter.repo !== undefined && record.repository?.fullName?.toLowerCase() !== filter.repo.toLowerCase()) return false;
  if (filter.branch !== undefined && record.repository?.branch !== filter.branch) return false;
  if (filter.status !== undefined && record.status !== filter.status) return false;
  return true;
}

/**
 * The listing's `limit` (see BuildListFilter): undefined for every match, else a positive whole
 * number; 0, a negative or a fraction is an InputError, never silently "none" or "all".
 */
export function checkedListLimit(filter: BuildListFilter): number | undefined {
  const { limit } = filter;
  if (limit === undefined) return undefined;
  if (!Number.isInteger(limit) || limit < 1) throw new InputError(`Invalid limit ${limit}: expected a positive whole number`);
  return limit;
}

/** Sort order of a listing: newest createdAt first, then the greater id (a stable total order). */
export function newestFirst(a: BuildRecord, b: BuildRecord): number {
  const diff = timeOf(b.createdAt) - timeOf(a.createdAt);
  if (diff !== 0) return diff;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

function timeOf(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}
