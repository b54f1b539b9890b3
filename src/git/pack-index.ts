// Indexes a received packfile with Node's native zlib, SHA-1 and CRC-32, and writes the .pack and
// its version-2 .idx into the mirror. isomorphic-git's own indexer (pako, one asynchronous
// WebCrypto digest per object, an O(256·n) fan-out table) took most of a cold sync's CPU time;
// see pack-intercept.ts for how the pack is taken off isomorphic-git's hands.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { inflateSync } from 'node:zlib';

/** zlib.crc32 is Node ≥ 20.15; engines allows any 20, so older ones get a table-driven one. */
const crc32: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function'
    ? (zlib as unknown as { crc32: (data: Uint8Array) => number }).crc32
    : (() => {
        const table = new Int32Array(256);
        for (let n = 0; n < 256; n++) {
          let c = n;
          for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
          table[n] = c;
        }
        return (data: Uint8Array) => {
          let crc = -1;
          for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
          return (crc ^ -1) >>> 0;
        };
      })();

const TYPES: Record<number, string> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
const OFS_DELTA = 6;
const REF_DELTA = 7;

interface Entry {
  offset: number;
  /** Where the zlib stream starts (after the header and the delta base reference). */
  dataStart: number;
  end: number;
  type: number;
  baseOffset?: number;
  baseOid?: string;
  /** The base of a ref-delta that is not in the pack (thin pack). */
  externalBase?: Buffer;
  oid?: string;
  /** Resolved object type name. */
  kind?: string;
  /** The object's full content, while the memory budget allows keeping it. */
  full?: Buffer;
  /** A delta's instructions, while the budget allows. */
  delta?: Buffer;
}

/**
 * Inflated data kept in memory while indexing a pack. Beyond it, objects are inflated again
 * from the pack when a delta needs them: a large repository costs time, not all of its
 * uncompressed size in memory.
 */
const RETAIN_BYTES = 256 * 1024 * 1024;

export class PackFormatError extends Error {}

/** Reads an object that is not in the pack (the base of a delta in a thin pack). */
export type ExternalObjectReader = (oid: string) => Promise<{ type: string; data: Buffer } | undefined>;

export interface IndexedPack {
  packPath: string;
  objects: number;
}

function hashObject(kind: string, data: Buffer): string {
  return createHash('sha1').update(`${kind} ${data.length}\0`).update(data).digest('hex');
}

/** Applies a git delta (copy/insert instructions) to `base`. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  let pos = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = delta[pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return value;
  };
  const baseSize = varint();
  if (baseSize !== base.length) throw new PackFormatError(`delta base size ${baseSize} does not match ${base.length}`);
  const size = varint();
  const out = Buffer.allocUnsafe(size);
  let written = 0;
  while (pos < delta.length) {
    const op = delta[pos++]!;
    if (op & 0x80) {
      let offset = 0;
      let length = 0;
      for (let bit = 0; bit < 4; bit++) if (op & (1 << bit)) offset += delta[pos++]! * 2 ** (8 * bit);
      for (let bit = 0; bit < 3; bit++) if (op & (0x10 << bit)) length += delta[pos++]! * 2 ** (8 * bit);
      if (length === 0) length = 0x10000;
      if (offset + length > base.length || written + length > size) throw new PackFormatError('delta copy out of range');
      base.copy(out, written, offset, offset + length);
      written += length;
    } else if (op > 0) {
      if (pos + op > delta.length || written + op > size) throw new PackFormatError('delta insert out of range');
      delta.copy(out, written, pos, pos + op);
      pos += op;
      written += op;
    } else {
      throw new PackFormatError('delta opcode 0 is reserved');
    }
  }
  if (written !== size) throw new PackFormatError(`delta result is ${written} bytes, expected ${size}`);
  return out;
}

/**
 * Parses and checks `pack`, resolves its deltas, and writes `pack-<sha>.pack` and `.idx` into
 * `<gitdir>/objects/pack` (each atomically, the pack first so a reader never sees an index
 * without its pack). Returns undefined for a pack without objects.
 */
export async function indexAndStorePack(
  pack: Buffer,
  gitdir: string,
  readExternal?: ExternalObjectReader,
  retainBytes: number = RETAIN_BYTES,
): Promise<IndexedPack | undefined> {
  if (pack.length < 32 || pack.toString('latin1', 0, 4) !== 'PACK') throw new PackFormatError('unexpected end of pack data (no PACK header)');
  const version = pack.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new PackFormatError(`unsupported pack version ${version}`);
  const count = pack.readUInt32BE(8);
  const trailer = pack.subarray(pack.length - 20);
  const checksum = createHash('sha1').update(pack.subarray(0, pack.length - 20)).digest();
  if (!checksum.equals(trailer)) throw new PackFormatError('unexpected end of pack data (checksum mismatch: truncated or corrupt)');
  if (count === 0) return undefined;

  const entries: Entry[] = [];
  const byOffset = new Map<number, Entry>();
  let retained = 0;
  const retain = (data: Buffer): Buffer | undefined => {
    if (retained + data.length > retainBytes) return undefined;
    retained += data.length;
    return data;
  };
  let pos = 12;
  const limit = pack.length - 20;
  for (let i = 0; i < count; i++) {
    if (pos >= limit) throw new PackFormatError('unexpected end of pack data');
    const offset = pos;
    let byte = pack[pos++]!;
    const type = (byte >> 4) & 7;
    let size = byte & 15;
    let shift = 4;
    while (byte & 0x80) {
      byte = pack[pos++]!;
      size += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    }
    const entry: Entry = { offset, dataStart: 0, end: 0, type };
    if (type === OFS_DELTA) {
      byte = pack[pos++]!;
      let distance = byte & 0x7f;
      while (byte & 0x80) {
        byte = pack[pos++]!;
        distance = (distance + 1) * 128 + (byte & 0x7f);
      }
      entry.baseOffset = offset - distance;
    } else if (type === REF_DELTA) {
      entry.baseOid = pack.toString('hex', pos, pos + 20);
      pos += 20;
    } else if (!TYPES[type]) {
      throw new PackFormatError(`unknown object type ${type} at offset ${offset}`);
    }
    entry.dataStart = pos;
    let inflated: { buffer: Buffer; engine: { bytesWritten: number } };
    try {
      inflated = inflateSync(pack.subarray(pos, limit), { info: true }) as unknown as typeof inflated;
    } catch (err) {
      throw new PackFormatError(`unexpected end of pack data: object at offset ${offset} does not inflate (${(err as Error).message})`);
    }
    if (inflated.buffer.length !== size) throw new PackFormatError(`object at offset ${offset} inflates to ${inflated.buffer.length} bytes, expected ${size}`);
    pos += inflated.engine.bytesWritten;
    entry.end = pos;
    if (TYPES[type]) {
      entry.kind = TYPES[type];
      entry.oid = hashObject(entry.kind, inflated.buffer);
      entry.full = retain(inflated.buffer);
    } else {
      entry.delta = retain(inflated.buffer);
    }
    entries.push(entry);
    byOffset.set(offset, entry);
  }
  if (pos !== limit) throw new PackFormatError(`${limit - pos} stray bytes after the last object`);

  const inflateAt = (entry: Entry) => inflateSync(pack.subarray(entry.dataStart, entry.end));
  const contentOf = (entry: Entry): Buffer => {
    if (entry.full) return entry.full;
    if (TYPES[entry.type]) return inflateAt(entry);
    const base = entry.externalBase ?? contentOf(entry.baseOffset !== undefined ? byOffset.get(entry.baseOffset)! : byOid.get(entry.baseOid!)!);
    return applyDelta(base, entry.delta ?? inflateAt(entry));
  };

  // Resolve deltas; a base may itself be a delta, and a ref-delta's base may come later.
  const byOid = new Map<string, Entry>();
  for (const entry of entries) if (entry.oid) byOid.set(entry.oid, entry);
  let pending = entries.filter((e) => !e.oid);
  while (pending.length > 0) {
    const next: Entry[] = [];
    for (const entry of pending) {
      const base = entry.baseOffset !== undefined ? byOffset.get(entry.baseOffset) : byOid.get(entry.baseOid!);
      if (base?.oid) {
        const full = applyDelta(contentOf(base), entry.delta ?? inflateAt(entry));
        entry.kind = base.kind!;
        entry.oid = hashObject(entry.kind, full);
        entry.full = retain(full);
        byOid.set(entry.oid, entry);
      } else if (!base && entry.baseOid && readExternal) {
        const external = await readExternal(entry.baseOid);
        if (!external) throw new PackFormatError(`delta base ${entry.baseOid} is neither in the pack nor in the repository`);
        entry.externalBase = external.data;
        const full = applyDelta(external.data, entry.delta ?? inflateAt(entry));
        entry.kind = external.type;
        entry.oid = hashObject(entry.kind, full);
        entry.full = retain(full);
        byOid.set(entry.oid, entry);
      } else if (!base) {
        throw new PackFormatError(`delta at offset ${entry.offset} has no base in the pack`);
      } else {
        next.push(entry);
      }
    }
    if (next.length === pending.length) throw new PackFormatError('circular deltas in pack');
    pending = next;
  }

  const idx = buildIndex(entries, pack, trailer);
  const packDir = join(gitdir, 'objects', 'pack');
  await fs.promises.mkdir(packDir, { recursive: true });
  const name = `pack-${trailer.toString('hex')}`;
  const packPath = join(packDir, `${name}.pack`);
  await writeAtomically(packPath, pack);
  await writeAtomically(join(packDir, `${name}.idx`), idx);
  return { packPath, objects: entries.length };
}

function buildIndex(entries: Entry[], pack: Buffer, packChecksum: Buffer): Buffer {
  const sorted = [...entries].sort((a, b) => (a.oid! < b.oid! ? -1 : a.oid! > b.oid! ? 1 : 0));
  const n = sorted.length;
  const large = sorted.filter((e) => e.offset >= 0x80000000);
  const size = 8 + 256 * 4 + n * 20 + n * 4 + n * 4 + large.length * 8 + 40;
  const out = Buffer.alloc(size);
  let pos = 0;
  out.writeUInt32BE(0xff744f63, pos);
  out.writeUInt32BE(2, pos + 4);
  pos += 8;
  const fanout = new Uint32Array(256);
  for (const e of sorted) fanout[parseInt(e.oid!.slice(0, 2), 16)]! += 1;
  let running = 0;
  for (let i = 0; i < 256; i++) {
    running += fanout[i]!;
    out.writeUInt32BE(running, pos);
    pos += 4;
  }
  for (const e of sorted) {
    out.write(e.oid!, pos, 'hex');
    pos += 20;
  }
  for (const e of sorted) {
    out.writeUInt32BE(crc32(pack.subarray(e.offset, e.end)) >>> 0, pos);
    pos += 4;
  }
  let largeIndex = 0;
  const largeOffsets: number[] = [];
  for (const e of sorted) {
    if (e.offset >= 0x80000000) {
      out.writeUInt32BE((0x80000000 | largeIndex++) >>> 0, pos);
      largeOffsets.push(e.offset);
    } else {
      out.writeUInt32BE(e.offset, pos);
    }
    pos += 4;
  }
  for (const offset of largeOffsets) {
    out.writeBigUInt64BE(BigInt(offset), pos);
    pos += 8;
  }
  packChecksum.copy(out, pos);
  pos += 20;
  createHash('sha1').update(out.subarray(0, pos)).digest().copy(out, pos);
  return out;
}

let tmpCounter = 0;
async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${++tmpCounter}`;
  try {
    await fs.promises.writeFile(tmp, data);
    await fs.promises.rename(tmp, path);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

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

/**
 * Reads objects straight from the mirror's packs with native zlib: used for the blobs of a
 * checkout, where isomorphic-git's reader (pako, a file-system wrapper per call) cost more CPU
 * than inflating the data. Anything it does not find is left to isomorphic-git. close() it.
 */
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
    return found ? { type: TYPES[found.type]!, data: found.data } : undefined;
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
    let pos = 0;
    let byte = raw[pos++]!;
    const type = (byte >> 4) & 7;
    while (byte & 0x80) byte = raw[pos++]!;
    let base: { type: number; data: Buffer } | undefined;
    if (type === OFS_DELTA) {
      byte = raw[pos++]!;
      let distance = byte & 0x7f;
      while (byte & 0x80) {
        byte = raw[pos++]!;
        distance = (distance + 1) * 128 + (byte & 0x7f);
      }
      base = this.readAt(p, offset - distance, depth + 1);
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
    if (!TYPES[type]) return undefined;
    const object = { type, data };
    if (depth > 0 && data.length < 1 << 20 && this.bases.size < 256) this.bases.set(key, object);
    return object;
  }
}
