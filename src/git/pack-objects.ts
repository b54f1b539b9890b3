// The parts of Git's packfile format (gitformat-pack, "pack-*.pack files have the following
// format") that both the indexer (pack-indexer.ts, a received pack) and the reader
// (pack-reader.ts, objects for a checkout) need, written once: the object header (type and
// inflated size), the offset of an ofs-delta's base, and delta application.
//
// Each object in a pack starts with a header: the first byte holds a continuation bit, the type
// in bits 6–4 and the size's low 4 bits; each following byte (while the previous one has its
// high bit set) adds 7 more bits of size, least significant first. An ofs-delta then gives its
// base's distance back from the object's own offset, most significant group first and with an
// offset added at each continuation (so that every distance has exactly one encoding); a
// ref-delta gives its base's 20-byte id. Then comes the zlib stream.

/** Pack object types that are objects in their own right (gitformat-pack: 5 is reserved). */
export const OBJECT_TYPE_NAMES: Readonly<Record<number, string>> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
export const OFS_DELTA = 6;
export const REF_DELTA = 7;

/** A pack (or a delta in it) that is not what the format says: truncated, corrupt or unsupported. */
export class PackFormatError extends Error {}

export interface ObjectHeader {
  /** 1–4 an object type (OBJECT_TYPE_NAMES), 6 OFS_DELTA, 7 REF_DELTA; anything else is invalid. */
  type: number;
  /** The inflated size: of the object, or of a delta's instructions. */
  size: number;
  /** Where the header ends: the ofs-delta distance, the ref-delta base id, or the zlib stream. */
  next: number;
}

/** The type-and-size header of the object at `pos`. */
export function readObjectHeader(data: Uint8Array, pos: number): ObjectHeader {
  let byte = data[pos++]!;
  const type = (byte >> 4) & 7;
  let size = byte & 15;
  let shift = 4;
  while (byte & 0x80) {
    byte = data[pos++]!;
    size += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  }
  return { type, size, next: pos };
}

/** An ofs-delta's base distance at `pos` (right after its header): the base is at offset − distance. */
export function readOfsDeltaDistance(data: Uint8Array, pos: number): { distance: number; next: number } {
  let byte = data[pos++]!;
  let distance = byte & 0x7f;
  while (byte & 0x80) {
    byte = data[pos++]!;
    distance = (distance + 1) * 128 + (byte & 0x7f);
  }
  return { distance, next: pos };
}

/** Applies a git delta (the base's size, the result's size, then copy/insert instructions) to `base`. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  let pos = 0;
  // The two sizes: 7 bits a byte, least significant first (unlike the object header, no type bits).
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
