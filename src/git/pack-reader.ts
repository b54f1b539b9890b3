// Reads objects straight from a repository's packs (the .idx by binary search, one fan-out bucket
// at a time; the object from its offset in the .pack, deltas through pack-objects.ts) with native
// zlib. worktree.ts reads the blobs of a checkout through it, mirror.ts asks it whether a ref's
// object arrived (an index lookup: isomorphic-git would load and checksum every pack whole), and a
// local build reads HEAD's commit and trees through it (local-repository.ts); anything it does not
// find is left to isomorphic-git.
//
// Neither file is read whole for a few objects: a local build of a fresh clone with 404,000
// objects (an 11 MB .idx) spent 74–87 ms reading HEAD's commit when the whole index was read and
// every object's offset sorted to find where the commit ended; reading the fan-out table, one
// bucket and the commit's bytes to zlib's bound takes 2–3.5 ms. A checkout that reads many objects
// reads each bucket once and, past a 64th of the pack, sorts the offsets after all (BOUNDS_AFTER):
// 761 blobs of a 3,700-object pack 14.8–15.8 ms, 14.2–17.9 ms before (medians of 15).
//
// Why our own: isomorphic-git's readBlob (pako, a file-system wrapper per call) cost more CPU than
// inflating the data. All 1,175 blobs of a pack like bench/git-sync's (1,175 commits, 11.2 MB;
// medians of 3 on these 2-core machines, loaded): readBlob 896 ms, PackReader.read 64 ms. A
// checkout of each build's worktree reads every blob that changed, so this is on the path of the
// bench's cold target (sync + worktree ≤ 1.5× `git clone`) and of every warm build.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { applyDelta, OBJECT_TYPE_NAMES, OFS_DELTA, PackFormatError, readObjectHeader, readOfsDeltaDistance, REF_DELTA } from './pack-objects.js';

interface LoadedPack {
  /** Open file descriptors of the .idx and the .pack: both are read by range, neither is loaded whole. */
  idxFd: number;
  fd: number;
  /** The fan-out table: entry b is how many object ids start with a byte ≤ b. */
  fanout: Buffer;
  count: number;
  /** Offset of the sorted object ids in the .idx. */
  namesAt: number;
  offsetsAt: number;
  largeAt: number;
  packSize: number;
  /** The ids and 4-byte offsets of the objects whose id starts with a given byte, read on the first lookup there. */
  buckets: Map<number, { names: Buffer; offsets: Buffer }>;
  /** The 8-byte offsets of objects past 2 GiB (from largeAt to the index's two checksums), read when first needed. */
  large?: Buffer;
  /** Objects read from the pack so far. */
  reads: number;
  /** Every object's offset, ascending, then the trailer's (an object ends where the next begins): made once the pack has served many reads. */
  bounds?: Float64Array;
}

/** Bytes read at an object's offset first: its header, and the whole of most commits, trees and small files (under 4 KiB, a Buffer comes from Node's pool). */
const FIRST_READ = 2048;
/**
 * Once a pack has served a 64th of its objects (a checkout reading every blob), each object's end
 * is looked up instead: every offset is read and sorted once, and each object is then read in one
 * exact range, where a read to the bound takes two for an object over FIRST_READ.
 */
const BOUNDS_AFTER = 64;

/**
 * The most a zlib stream of `size` bytes takes (zlib's compressBound, which covers the stored
 * blocks of level 0 too). The stream is inflated from a range that long: zlib stops at its end,
 * ignoring what follows, so the next object's offset need not be known.
 */
function deflatedBound(size: number): number {
  return size + Math.floor(size / 4096) + Math.floor(size / 16384) + Math.floor(size / 33554432) + 13;
}

/** The objects of a repository's packs, by id (see above). Opens every pack's files: close() it. */
export class PackReader {
  private readonly packs: LoadedPack[];
  /** Delta bases by pack and offset: a chain of deltas shares its bases. */
  private readonly bases = new Map<string, { type: number; data: Buffer }>();

  private constructor(packs: LoadedPack[]) {
    this.packs = packs;
  }

  /**
   * Opens the packs of `gitdir`, reading only each index's header and fan-out table: a lookup
   * reads the ids and offsets of one fan-out bucket (1/256th of the index), so finding a few
   * objects in a large repository (a local build reads HEAD's commit and a tree or two) costs a
   * few small reads, not the whole index, while a checkout that reads every blob reads each
   * bucket once.
   */
  static open(gitdir: string): PackReader {
    const dir = join(gitdir, 'objects', 'pack');
    const packs: LoadedPack[] = [];
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith('.idx'));
    } catch {
      // no packs
    }
    for (const name of names) {
      let idxFd: number | undefined;
      let fd: number | undefined;
      try {
        idxFd = fs.openSync(join(dir, name), 'r');
        const head = readRange(idxFd, 0, 8 + 256 * 4);
        if (head.length !== 8 + 256 * 4 || head.readUInt32BE(0) !== 0xff744f63 || head.readUInt32BE(4) !== 2) {
          fs.closeSync(idxFd);
          continue;
        }
        fd = fs.openSync(join(dir, name.replace(/\.idx$/, '.pack')), 'r');
        const packSize = fs.fstatSync(fd).size;
        const fanout = head.subarray(8);
        const count = fanout.readUInt32BE(255 * 4);
        const namesAt = 8 + 256 * 4;
        const offsetsAt = namesAt + count * 20 + count * 4;
        packs.push({ idxFd, fd, fanout, count, namesAt, offsetsAt, largeAt: offsetsAt + count * 4, packSize, buckets: new Map(), reads: 0 });
      } catch {
        // a pack being written right now, or unreadable: isomorphic-git will be asked instead
        if (idxFd !== undefined) fs.closeSync(idxFd);
        if (fd !== undefined) fs.closeSync(fd);
      }
    }
    return new PackReader(packs);
  }

  close(): void {
    for (const p of this.packs) {
      fs.closeSync(p.idxFd);
      fs.closeSync(p.fd);
    }
    this.packs.length = 0;
    this.bases.clear();
  }

  /** Whether a pack holds the object (an index lookup, nothing inflated). */
  has(oid: string): boolean {
    const wanted = Buffer.from(oid, 'hex');
    return wanted.length === 20 && this.packs.some((p) => this.locate(p, wanted) !== undefined);
  }

  /** The object's offset in the pack, by binary search within its fan-out bucket; undefined when the pack does not hold it. */
  private locate(p: LoadedPack, wanted: Buffer): number | undefined {
    const bucket = this.bucket(p, wanted[0]!);
    let lo = 0;
    let hi = bucket.names.length / 20;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      // > 0: the wanted id sorts after this entry
      const cmp = wanted.compare(bucket.names, mid * 20, mid * 20 + 20);
      if (cmp === 0) {
        return PackReader.offsetOf(p, bucket.offsets.readUInt32BE(mid * 4));
      }
      if (cmp < 0) hi = mid;
      else lo = mid + 1;
    }
    return undefined;
  }

  /** The ids and offsets of the objects whose id starts with `byte`, read once. */
  private bucket(p: LoadedPack, byte: number): { names: Buffer; offsets: Buffer } {
    const known = p.buckets.get(byte);
    if (known) return known;
    const first = byte === 0 ? 0 : p.fanout.readUInt32BE((byte - 1) * 4);
    const end = p.fanout.readUInt32BE(byte * 4);
    const n = Math.max(0, end - first);
    const names = readRange(p.idxFd, p.namesAt + first * 20, n * 20);
    const offsets = readRange(p.idxFd, p.offsetsAt + first * 4, n * 4);
    if (names.length !== n * 20 || offsets.length !== n * 4) throw new PackFormatError(`the index of a pack is truncated (fan-out bucket ${byte})`);
    const bucket = { names, offsets };
    p.buckets.set(byte, bucket);
    return bucket;
  }

  /** The object's type name and content, or undefined when no pack has it. */
  read(oid: string): { type: string; data: Buffer } | undefined {
    const found = this.readTyped(oid);
    return found ? { type: OBJECT_TYPE_NAMES[found.type]!, data: found.data } : undefined;
  }

  private readTyped(oid: string): { type: number; data: Buffer } | undefined {
    const wanted = Buffer.from(oid, 'hex');
    if (wanted.length !== 20) return undefined;
    for (const p of this.packs) {
      const offset = this.locate(p, wanted);
      if (offset !== undefined) return this.readAt(p, offset, 0);
    }
    return undefined;
  }

  /** Every object's offset in the pack, ascending, then the trailer's. */
  private static bounds(p: LoadedPack): Float64Array {
    const small = readRange(p.idxFd, p.offsetsAt, p.count * 4);
    if (small.length !== p.count * 4) throw new PackFormatError('the index of a pack is truncated (offsets)');
    const bounds = new Float64Array(p.count + 1);
    for (let i = 0; i < p.count; i++) bounds[i] = PackReader.offsetOf(p, small.readUInt32BE(i * 4));
    bounds[p.count] = p.packSize - 20;
    return bounds.sort();
  }

  /** An object's offset from its 4-byte entry: the entry itself, or past 2 GiB the 8-byte one its 31 low bits index. */
  private static offsetOf(p: LoadedPack, entry: number): number {
    if (!(entry & 0x80000000)) return entry;
    // The 8-byte table runs from largeAt to the two checksums that end the index.
    p.large ??= readRange(p.idxFd, p.largeAt, Math.max(0, fs.fstatSync(p.idxFd).size - 40 - p.largeAt));
    const at = (entry & 0x7fffffff) * 8;
    if (at + 8 > p.large.length) throw new PackFormatError(`the index of a pack is truncated (large offset ${entry & 0x7fffffff})`);
    return Number(p.large.readBigUInt64BE(at));
  }

  private readAt(p: LoadedPack, offset: number, depth: number): { type: number; data: Buffer } | undefined {
    if (depth > 64) return undefined;
    const key = `${this.packs.indexOf(p)}:${offset}`;
    const cached = this.bases.get(key);
    if (cached) return cached;
    // The trailer (the pack's checksum) ends every object's range.
    const limit = p.packSize - 20;
    if (offset < 12 || offset >= limit) return undefined;
    p.reads++;
    if (!p.bounds && p.reads * BOUNDS_AFTER >= p.count) p.bounds = PackReader.bounds(p);
    const end = p.bounds ? objectEnd(p.bounds, offset) : undefined;
    if (end !== undefined && end <= offset) return undefined;
    let raw = readRange(p.fd, offset, end !== undefined ? end - offset : Math.min(FIRST_READ, limit - offset));
    const header = readObjectHeader(raw, 0);
    const type = header.type;
    let pos = header.next;
    let base: { type: number; data: Buffer } | undefined;
    if (type === OFS_DELTA) {
      const distance = readOfsDeltaDistance(raw, pos);
      pos = distance.next;
      base = this.readAt(p, offset - distance.distance, depth + 1);
    } else if (type === REF_DELTA) {
      base = this.readTyped(raw.toString('hex', pos, pos + 20));
      pos += 20;
    }
    // The zlib stream is read to its bound: its end is found by inflating, not looked up. A
    // stream longer than zlib's bound (another encoder's) is read further, up to the trailer.
    let wanted = end !== undefined ? raw.length : Math.min(pos + deflatedBound(header.size), limit - offset);
    let data: Buffer;
    for (;;) {
      if (raw.length < wanted) raw = readRange(p.fd, offset, wanted);
      try {
        data = inflateSync(raw.subarray(pos));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'Z_BUF_ERROR' || end !== undefined || raw.length >= limit - offset) throw err;
        wanted = Math.min(wanted * 2, limit - offset);
      }
    }
    if (type === OFS_DELTA || type === REF_DELTA) {
      if (!base) return undefined;
      const object = { type: base.type, data: applyDelta(base.data, data) };
      // A resolved delta is often the base of the next one (trees, similar files).
      if (object.data.length < 1 << 20 && this.bases.size < 256) this.bases.set(key, object);
      return object;
    }
    if (!OBJECT_TYPE_NAMES[type]) return undefined;
    const object = { type, data };
    if (depth > 0 && data.length < 1 << 20 && this.bases.size < 256) this.bases.set(key, object);
    return object;
  }
}

/** `length` bytes of the file at `position`, fewer at its end. */
function readRange(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  let read = 0;
  while (read < length) {
    const n = fs.readSync(fd, buffer, read, length - read, position + read);
    if (n === 0) break;
    read += n;
  }
  return read === length ? buffer : buffer.subarray(0, read);
}

/** Where the object at `offset` ends: the next offset in `bounds` (ascending), or `offset` itself when none is past it. */
function objectEnd(bounds: Float64Array, offset: number): number {
  let lo = 0;
  let hi = bounds.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bounds[mid]! <= offset) lo = mid + 1;
    else hi = mid;
  }
  return Math.max(bounds[lo]!, offset);
}
