// Which files of a local checkout differ from HEAD, found the way `git status` finds them: from the
// index, without reading a file it need not read.
//
// isomorphic-git's statusMatrix walks HEAD's trees, the index and the worktree together, and
// checks the index's SHA-1 with WebCrypto (whose first use loads Node's whole webcrypto): 10–11 ms
// of every local build's source phase on a 4-file repository, about a sixth of what oci-build adds
// to `go build` + `buildah bud` (bench/local-overhead). This reads the index itself:
//
// 1. The index's cache tree (its TREE extension, which git writes on commit, checkout, merge and
//    clone) names the tree the index holds; when that is HEAD's tree, the index is HEAD and no tree
//    object need be read. Otherwise (something is staged) HEAD's files, read from its trees, are
//    compared with the worktree, the index's stat data trusted only where it holds HEAD's blob.
// 2. An index entry whose file has the stat data recorded for it (times to the nanosecond, size,
//    inode) and was not written in the same instant as the index ("racily clean") is unchanged,
//    as git decides it; any other file is hashed and compared with the blob.
// 3. Files in no index entry are found by walking the worktree: an untracked entry that
//    isomorphic-git's gitignore rules ignore (the ones statusMatrix uses) is passed over whole.
//
// Whatever the index does not settle — an index version or extension this does not read,
// unmerged, sparse, intent-to-add or assume-unchanged entries, submodules, or a staged index when
// HEAD's files cannot be read — returns undefined, and the caller uses statusMatrix. The answer
// is the same set of paths in every case (test/integration/worktree-status.test.ts checks it on
// random worktrees against statusMatrix and `git status`).

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { gitObjectId } from './object-hash.js';

/** One stage-0 entry of the index: its path, blob, and the stat data git recorded for it. */
interface IndexEntry {
  path: string;
  oid: string;
  mode: number;
  ctimeSeconds: number;
  ctimeNanoseconds: number;
  mtimeSeconds: number;
  mtimeNanoseconds: number;
  ino: number;
  size: number;
}

interface ParsedIndex {
  entries: IndexEntry[];
  /** The tree the whole index holds, from a valid root entry of the cache tree. */
  tree?: string;
}

const SIGNATURE = 0x44495243; // 'DIRC'
const HASH_BYTES = 20;
const MODE_FILE = 0o100644;
const MODE_EXECUTABLE = 0o100755;
const MODE_SYMLINK = 0o120000;
const FLAG_ASSUME_VALID = 0x8000;
const FLAG_EXTENDED = 0x4000;
const FLAG_STAGE = 0x3000;
const NAME_MASK = 0x0fff;

/**
 * The index at `indexBytes` (format versions 2–4), or undefined when it holds something only the
 * full walk decides: see the file's comment.
 */
export function parseIndex(indexBytes: Buffer): ParsedIndex | undefined {
  if (indexBytes.length < 12 + HASH_BYTES || indexBytes.readUInt32BE(0) !== SIGNATURE) return undefined;
  const version = indexBytes.readUInt32BE(4);
  if (version < 2 || version > 4) return undefined;
  const body = indexBytes.subarray(0, indexBytes.length - HASH_BYTES);
  if (!createHash('sha1').update(body).digest().equals(indexBytes.subarray(body.length))) return undefined;
  const count = body.readUInt32BE(8);
  const entries: IndexEntry[] = [];
  let offset = 12;
  let previous = '';
  for (let i = 0; i < count; i++) {
    const start = offset;
    if (offset + 62 > body.length) return undefined;
    const flags = body.readUInt16BE(offset + 60);
    let extended = 0;
    offset += 62;
    if (flags & FLAG_EXTENDED) {
      if (version < 3) return undefined;
      extended = body.readUInt16BE(offset);
      offset += 2;
    }
    // Unmerged, assume-unchanged, skip-worktree, intent-to-add: the full walk decides.
    if (flags & (FLAG_STAGE | FLAG_ASSUME_VALID) || extended !== 0) return undefined;
    let path: string;
    if (version === 4) {
      // The path is the previous one less N bytes, then a NUL-terminated suffix.
      let strip = 0;
      let byte: number;
      do {
        if (offset >= body.length) return undefined;
        byte = body[offset++]!;
        strip = (strip << 7) | (byte & 0x7f);
        if (byte & 0x80) strip += 1;
      } while (byte & 0x80);
      const end = body.indexOf(0, offset);
      if (end < 0 || strip > Buffer.byteLength(previous)) return undefined;
      const kept = Buffer.from(previous).subarray(0, Buffer.byteLength(previous) - strip);
      path = Buffer.concat([kept, body.subarray(offset, end)]).toString('utf8');
      offset = end + 1;
    } else {
      const length = flags & NAME_MASK;
      const end = length < NAME_MASK ? offset + length : body.indexOf(0, offset);
      if (end < 0 || end > body.length || body[end] !== 0) return undefined;
      path = body.toString('utf8', offset, end);
      // NUL padding to a multiple of 8 bytes from the entry's start, at least one NUL.
      offset = start + Math.ceil((end - start + 1) / 8) * 8;
    }
    previous = path;
    const mode = body.readUInt32BE(start + 24);
    // Submodules (gitlinks) and sparse directories: the full walk decides.
    if (mode !== MODE_FILE && mode !== MODE_EXECUTABLE && mode !== MODE_SYMLINK) return undefined;
    entries.push({
      path,
      oid: body.toString('hex', start + 40, start + 60),
      mode,
      ctimeSeconds: body.readUInt32BE(start),
      ctimeNanoseconds: body.readUInt32BE(start + 4),
      mtimeSeconds: body.readUInt32BE(start + 8),
      mtimeNanoseconds: body.readUInt32BE(start + 12),
      ino: body.readUInt32BE(start + 20),
      size: body.readUInt32BE(start + 36),
    });
  }
  let tree: string | undefined;
  while (offset + 8 <= body.length) {
    const signature = body.toString('latin1', offset, offset + 4);
    const size = body.readUInt32BE(offset + 4);
    const data = body.subarray(offset + 8, offset + 8 + size);
    if (data.length !== size) return undefined;
    // Extensions A–Z are optional (a reader may skip them); any other one changes what the index means.
    if (signature === 'TREE') tree = rootOfCacheTree(data);
    else if (!/^[A-Z]/.test(signature)) return undefined;
    offset += 8 + size;
  }
  return { entries, ...(tree ? { tree } : {}) };
}

/** The root entry of a TREE extension: `"" NUL entry-count SP subtrees LF oid`; invalid when its count is -1. */
function rootOfCacheTree(data: Buffer): string | undefined {
  if (data[0] !== 0) return undefined;
  const newline = data.indexOf(0x0a, 1);
  if (newline < 0) return undefined;
  const [count] = data.toString('latin1', 1, newline).split(' ');
  if (count === undefined || !/^\d+$/.test(count) || newline + 1 + HASH_BYTES > data.length) return undefined;
  return data.toString('hex', newline + 1, newline + 1 + HASH_BYTES);
}

/** A file of HEAD's tree: its blob and mode (100644, 100755, 120000). */
export interface HeadFile {
  oid: string;
  mode: string;
}

export interface WorktreeStatusOptions {
  /** The repository's root (the directory the worktree is). */
  root: string;
  /** The index file (`.git/index`; a linked worktree's is in its own git directory). */
  indexFile?: string;
  /** The tree of the commit checked out. */
  headTree: string;
  /**
   * HEAD's files under the prefix (paths relative to the root), read when the index is not HEAD
   * (something is staged): each is then compared with the worktree itself. Undefined when they
   * cannot be read; without it such an index is left to the caller.
   */
  headFiles?: (prefix: string) => Map<string, HeadFile> | undefined;
  /** Only paths under this directory (relative to the root) count; the whole worktree when absent. */
  prefix?: string;
  /** Whether an untracked path (relative to the root) is ignored: isomorphic-git's isIgnored. */
  isIgnored: (path: string) => Promise<boolean>;
}

/**
 * The paths (relative to the root, sorted) whose worktree state differs from HEAD, ignored files
 * excluded; undefined when the index cannot tell (see the file's comment).
 */
export async function worktreeChangesFromIndex(options: WorktreeStatusOptions): Promise<string[] | undefined> {
  const indexFile = options.indexFile ?? join(options.root, '.git', 'index');
  let bytes: Buffer;
  let indexStat: fs.BigIntStats;
  try {
    indexStat = fs.statSync(indexFile, { bigint: true });
    bytes = fs.readFileSync(indexFile);
  } catch {
    return undefined;
  }
  const index = parseIndex(bytes);
  if (!index) return undefined;

  const prefix = options.prefix?.replace(/\/+$/, '') ?? '';
  const inside = (path: string) => prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
  const changed: string[] = [];
  const tracked = new Set<string>();
  const trackedDirs = new Set<string>();
  const track = (path: string) => {
    tracked.add(path);
    for (let slash = path.indexOf('/'); slash >= 0; slash = path.indexOf('/', slash + 1)) trackedDirs.add(path.slice(0, slash));
  };
  if (index.tree === options.headTree) {
    // The index is HEAD: each entry's file is compared with the entry.
    for (const entry of index.entries) {
      if (!inside(entry.path)) continue;
      track(entry.path);
      if (!unchangedSince(options.root, entry, { oid: entry.oid, mode: entry.mode === MODE_SYMLINK ? '120000' : 'file' }, indexStat.mtimeNs)) changed.push(entry.path);
    }
  } else {
    // Something is staged (or the cache tree is gone): HEAD's files are compared with the
    // worktree, the index's stat data trusted only for an entry that holds HEAD's blob.
    const head = options.headFiles?.(prefix);
    if (!head) return undefined;
    const entries = new Map(index.entries.filter((e) => inside(e.path)).map((e) => [e.path, e]));
    for (const [path, file] of head) {
      track(path);
      const entry = entries.get(path);
      const known = entry && entry.oid === file.oid ? entry : undefined;
      if (!unchangedSince(options.root, known, { oid: file.oid, mode: file.mode === '120000' ? '120000' : 'file' }, indexStat.mtimeNs, path)) changed.push(path);
    }
    // Only in the index (added, not committed): changed while the worktree has it.
    for (const path of entries.keys()) {
      if (head.has(path)) continue;
      track(path);
      if (existsAsEntry(join(options.root, path))) changed.push(path);
    }
  }

  // Untracked files: the worktree's entries that are in no index entry and not ignored.
  const walk = async (dir: string): Promise<void> => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(dir === '' ? options.root : join(options.root, dir), { withFileTypes: true });
    } catch {
      return;
    }
    for (const dirent of names) {
      if (dirent.name === '.git') continue;
      const path = dir === '' ? dirent.name : `${dir}/${dirent.name}`;
      // A tracked file that is now a directory was found changed above; what is in it is untracked.
      if (tracked.has(path) && !dirent.isDirectory()) continue;
      if (dirent.isDirectory() && trackedDirs.has(path)) {
        await walk(path);
        continue;
      }
      if (await options.isIgnored(path)) continue;
      if (dirent.isDirectory()) await walk(path);
      else changed.push(path);
    }
  };
  if (prefix === '') await walk('');
  else {
    // Only the prefix itself is walked; its ancestors are tracked directories (or it is untracked whole).
    let kind: fs.Stats | undefined;
    try {
      kind = fs.lstatSync(join(options.root, prefix));
    } catch {
      kind = undefined;
    }
    if (kind?.isDirectory()) {
      if (trackedDirs.has(prefix)) await walk(prefix);
      else if (!(await options.isIgnored(prefix))) await walk(prefix);
    }
  }
  return [...new Set(changed)].sort(compareBytes);
}

/**
 * Whether the worktree's file at the entry's path holds the blob `want` (a link when its mode is
 * 120000, a regular file otherwise): by its stat data when `entry` recorded them for that blob and
 * git would trust them, else by its content.
 */
function unchangedSince(root: string, entry: IndexEntry | undefined, want: { oid: string; mode: '120000' | 'file' }, indexMtimeNs: bigint, path = entry?.path): boolean {
  const file = join(root, path!);
  let stat: fs.BigIntStats;
  try {
    stat = fs.lstatSync(file, { bigint: true });
  } catch {
    return false;
  }
  const isLink = stat.isSymbolicLink();
  if (isLink !== (want.mode === '120000') || (!isLink && !stat.isFile())) return false;
  if (entry && statTrusted(entry, stat, indexMtimeNs)) return true;
  try {
    const content = isLink ? Buffer.from(fs.readlinkSync(file, { encoding: 'buffer' })) : fs.readFileSync(file);
    return gitObjectId('blob', content) === want.oid;
  } catch {
    return false;
  }
}

/** Whether a path exists in the worktree as a file or a link (what an index entry can be). */
function existsAsEntry(file: string): boolean {
  try {
    const stat = fs.lstatSync(file);
    return stat.isFile() || stat.isSymbolicLink();
  } catch {
    return false;
  }
}

type StatData = Pick<fs.BigIntStats, 'mtimeNs' | 'ctimeNs' | 'ino' | 'size'>;

/**
 * Whether a file's stat data proves it unchanged since the index recorded it: the same times to
 * the nanosecond, inode and size, and modified before the index was written. A file modified in
 * the same instant as the index ("racily clean": timestamps are coarser than writes) may have
 * changed after git looked at it, and must be hashed.
 */
export function statTrusted(entry: Pick<IndexEntry, 'mtimeSeconds' | 'mtimeNanoseconds' | 'ctimeSeconds' | 'ctimeNanoseconds' | 'ino' | 'size'>, stat: StatData, indexMtimeNs: bigint): boolean {
  const mtimeNs = BigInt(entry.mtimeSeconds) * 1_000_000_000n + BigInt(entry.mtimeNanoseconds);
  return (
    stat.mtimeNs === mtimeNs &&
    stat.ctimeNs === BigInt(entry.ctimeSeconds) * 1_000_000_000n + BigInt(entry.ctimeNanoseconds) &&
    Number(stat.ino & 0xffffffffn) === entry.ino &&
    Number(stat.size & 0xffffffffn) === entry.size &&
    mtimeNs < indexMtimeNs
  );
}

/** Git sorts paths by their bytes. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
