// Reads objects straight from the mirror's packs (the .idx by binary search, the object by its
// byte range in the .pack, deltas through pack-objects.ts) with native zlib. worktree.ts reads the
// blobs of a checkout through it, and mirror.ts asks it whether a ref's object arrived (an index
// lookup: isomorphic-git would load and checksum every pack whole); anything it does not find is
// left to isomorphic-git.
//
// Why our own: isomorphic-git's readBlob (pako, a file-system wrapper per call) cost more CPU than
// inflating the data. All 1,175 blobs of a pack like bench/git-sync's (1,175 commits, 11.2 MB;
// medians of 3 on these 2-core machines, loaded): readBlob 896 ms, PackReader.read 64 ms. A
// checkout of each build's worktree reads every blob that changed, so this is on the path of the
// bench's cold target (sync + worktree ≤ 1.5× `git clone`) and of every warm build.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { applyDelta, OBJECT_TYPE_NAMES, OFS_DELTA, readObjectHeader, readOfsDeltaDistance, REF_DELTA } from './pack-objects.js';

interface LoadedPack {
  /** Open file descriptor of the .pack: objects are read by range, the pack is never loaded whole. */
  fd: number;
  idx: Buffer;
  count: number;
  /** Offset of the sorted object ids in the .idx. */
  namesAt: number;
  offsetsAt: number;
  largeAt: number;
  packSize: number;
  /** Every object's offset, ascending, then the trailer's: an object ends where the next begins. Made on first read. */
  bounds?: Float64Array;
}

/** The objects of a mirror's packs, by id (see above). Opens every pack's file: close() it. */
export class PackReader {
  private readonly packs: LoadedPack[];
  /** Delta bases by pack and offset: a chain of deltas shares its bases. */
  private readonly bases = new Map<string, { type: number; data: Buffer }>();

  private constructor(packs: LoadedPack[]) {
    this.packs = packs;
  }

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
      let fd: number | undefined;
      try {
        const idx = fs.readFileSync(join(dir, name));
        if (idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) continue;
        fd = fs.openSync(join(dir, name.replace(/\.idx$/, '.pack')), 'r');
        const packSize = fs.fstatSync(fd).size;
        const count = idx.readUInt32BE(8 + 255 * 4);
        const namesAt = 8 + 256 * 4;
        const offsetsAt = namesAt + count * 20 + count * 4;
        packs.push({ fd, idx, count, namesAt, offsetsAt, largeAt: offsetsAt + count * 4, packSize });
      } catch {
        // a pack being written right now, or unreadable: isomorphic-git will be asked instead
        if (fd !== undefined) fs.closeSync(fd);
      }
    }
    return new PackReader(packs);
  }

  close(): void {
    for (const p of this.packs) fs.closeSync(p.fd);
    this.packs.length = 0;
    this.bases.clear();
  }

  /** Whether a pack holds the object (an index lookup, nothing inflated). */
  has(oid: string): boolean {
    const wanted = Buffer.from(oid, 'hex');
    return wanted.length === 20 && this.packs.some((p) => this.find(p, wanted) !== undefined);
  }

  /** Position of the object in the pack's index, by binary search within its fan-out bucket. */
  private find(p: LoadedPack, wanted: Buffer): number | undefined {
    const first = wanted[0]!;
    let lo = first === 0 ? 0 : p.idx.readUInt32BE(8 + (first - 1) * 4);
    let hi = p.idx.readUInt32BE(8 + first * 4);
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      // > 0: the wanted id sorts after this entry
      const cmp = wanted.compare(p.idx, p.namesAt + mid * 20, p.namesAt + mid * 20 + 20);
      if (cmp === 0) return mid;
      if (cmp < 0) hi = mid;
      else lo = mid + 1;
    }
    return undefined;
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
      const index = this.find(p, wanted);
      if (index !== undefined) return this.readAt(p, PackReader.offsetOf(p, index), 0);
    }
    return undefined;
  }

  private static bounds(p: LoadedPack): Float64Array {
    const bounds = new Float64Array(p.count + 1);
    for (let i = 0; i < p.count; i++) bounds[i] = PackReader.offsetOf(p, i);
    bounds[p.count] = p.packSize - 20;
    return bounds.sort();
  }

  private static offsetOf(p: Pick<LoadedPack, 'idx' | 'offsetsAt' | 'largeAt'>, index: number): number {
    const small = p.idx.readUInt32BE(p.offsetsAt + index * 4);
    if (!(small & 0x80000000)) return small;
    return Number(p.idx.readBigUInt64BE(p.largeAt + (small & 0x7fffffff) * 8));
  }

  private readAt(p: LoadedPack, offset: number, depth: number): { type: number; data: Buffer } | undefined {
    if (depth > 64) return undefined;
    const key = `${this.packs.indexOf(p)}:${offset}`;
    const cached = this.bases.get(key);
    if (cached) return cached;
    // The object's bytes run to the next object's offset.
    const bounds = (p.bounds ??= PackReader.bounds(p));
    let lo = 0;
    let hi = bounds.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bounds[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    const end = bounds[lo]!;
    if (end <= offset) return undefined;
    const raw = Buffer.allocUnsafe(end - offset);
    if (fs.readSync(p.fd, raw, 0, raw.length, offset) !== raw.length) return undefined;
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
    const data = inflateSync(raw.subarray(pos));
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
