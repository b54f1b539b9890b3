// Git tree objects, parsed from their bytes (a pack's or a loose object's).

import { posix } from 'node:path';
import { InputError } from '../core/errors.js';

export interface TreeEntry {
  path: string;
  oid: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
}

/**
 * A tree object's entries (`<octal mode> <name>\0<20-byte id>`…), with the modes and types
 * isomorphic-git's readTree gives: 040000 trees, 160000 submodules, 120000 links, files as 100644
 * or 100755 (old trees hold 100664 and the like). Names are checked by the caller (unsafeEntryName).
 */
export function parseTree(data: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const nul = data.indexOf(0, space + 1);
    if (space < 0 || nul < 0 || nul + 21 > data.length) throw new InputError('A tree object of the repository is malformed');
    const raw = data.toString('latin1', at, space);
    const path = data.toString('utf8', space + 1, nul);
    const oid = data.toString('hex', nul + 1, nul + 21);
    at = nul + 21;
    if (/^0?4/.test(raw)) entries.push({ path, oid, mode: '040000', type: 'tree' });
    else if (/^1006/.test(raw)) entries.push({ path, oid, mode: '100644', type: 'blob' });
    else if (/^1007/.test(raw)) entries.push({ path, oid, mode: '100755', type: 'blob' });
    else if (/^120/.test(raw)) entries.push({ path, oid, mode: '120000', type: 'blob' });
    else if (/^160/.test(raw)) entries.push({ path, oid, mode: '160000', type: 'commit' });
    else throw new InputError(`A tree object of the repository has an entry of unknown mode ${JSON.stringify(raw)}`);
  }
  return entries;
}

/**
 * A path as a tree lookup takes it: `/`-separated, without `./`, a trailing `/` or `..` segments
 * collapsed; '' for the root; undefined for a path leading out of the tree.
 */
export function treePath(path: string): string | undefined {
  const normal = posix.normalize(path.replace(/\\/g, '/')).replace(/^\.\/?|\/+$/g, '');
  if (normal.startsWith('..')) return undefined;
  return normal === '.' ? '' : normal;
}
