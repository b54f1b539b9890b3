// The pack format's pieces (pack-objects.ts) against encoders written here from gitformat-pack
// and from git's own writer (pack-objects.c: the header loop, and the ofs-delta distance
// `dheader[--pos] = 128 | (--ofs & 127)`), and against a pack native git wrote.

import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyDelta, OBJECT_TYPE_NAMES, OFS_DELTA, PackFormatError, readObjectHeader, readOfsDeltaDistance, REF_DELTA } from '../../src/git/pack-objects.js';
import { tempDir } from '../helpers/fixtures.js';

/** Type and size header: 4 bits of size in the first byte, then 7 a byte, least significant first. */
function encodeObjectHeader(type: number, size: number): Buffer {
  const bytes: number[] = [];
  let byte = (type << 4) | (size % 16);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(byte | 0x80);
    byte = rest % 128;
    rest = Math.floor(rest / 128);
  }
  bytes.push(byte);
  return Buffer.from(bytes);
}

/** An ofs-delta's distance, as git writes it: most significant group first, minus one per continuation. */
function encodeOfsDeltaDistance(distance: number): Buffer {
  const bytes = [distance % 128];
  let rest = Math.floor(distance / 128);
  while (rest > 0) {
    rest -= 1;
    bytes.unshift(0x80 | rest % 128);
    rest = Math.floor(rest / 128);
  }
  return Buffer.from(bytes);
}

/** A delta's two sizes: 7 bits a byte, least significant first. */
function encodeDeltaSize(size: number): number[] {
  const bytes: number[] = [];
  do {
    const low = size % 128;
    size = Math.floor(size / 128);
    bytes.push(size > 0 ? low | 0x80 : low);
  } while (size > 0);
  return bytes;
}

type DeltaOp = { copy: [number, number] } | { insert: Buffer };

function encodeDelta(baseSize: number, resultSize: number, ops: DeltaOp[]): Buffer {
  const bytes = [...encodeDeltaSize(baseSize), ...encodeDeltaSize(resultSize)];
  for (const op of ops) {
    if ('insert' in op) {
      bytes.push(op.insert.length, ...op.insert);
      continue;
    }
    const [offset, length] = op.copy;
    let code = 0x80;
    const args: number[] = [];
    for (let bit = 0; bit < 4; bit++) {
      const b = Math.floor(offset / 2 ** (8 * bit)) % 256;
      if (b !== 0) {
        code |= 1 << bit;
        args.push(b);
      }
    }
    const stored = length === 0x10000 ? 0 : length; // 0x10000 is written as no length bytes at all
    for (let bit = 0; bit < 3; bit++) {
      const b = Math.floor(stored / 2 ** (8 * bit)) % 256;
      if (b !== 0) {
        code |= 0x10 << bit;
        args.push(b);
      }
    }
    bytes.push(code, ...args);
  }
  return Buffer.from(bytes);
}

const objectType = fc.constantFrom(1, 2, 3, 4, OFS_DELTA, REF_DELTA);
const junk = fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a));

describe('object headers', () => {
  it('decode what git encodes: type, size and where the header ends, wherever it starts', () => {
    fc.assert(
      fc.property(junk, objectType, fc.maxSafeNat(), junk, (before, type, size, after) => {
        const header = encodeObjectHeader(type, size);
        const decoded = readObjectHeader(Buffer.concat([before, header, after]), before.length);
        expect(decoded).toEqual({ type, size, next: before.length + header.length });
      }),
    );
  });

  it('decode the first object of a pack native git wrote', async () => {
    const content = Buffer.from('x'.repeat(1000) + '\n');
    const input = { input: content };
    const oid = execFileSync('git', ['hash-object', '--stdin'], input).toString().trim();
    // pack-objects reads ids from a repository: a throwaway one holding the blob.
    const tmp = await tempDir();
    const dir = tmp.path;
    try {
      execFileSync('git', ['init', '-q', '--bare', dir]);
      execFileSync('git', ['--git-dir', dir, 'hash-object', '-w', '--stdin'], input);
      const pack = execFileSync('git', ['--git-dir', dir, 'pack-objects', '--stdout', '-q'], { input: `${oid}\n` });
      expect(pack.toString('latin1', 0, 4)).toBe('PACK');
      expect(readObjectHeader(pack, 12)).toMatchObject({ type: 3, size: content.length, next: 14 });
      expect(OBJECT_TYPE_NAMES[3]).toBe('blob');
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('ofs-delta distances', () => {
  it('decode what git encodes, and each distance has one encoding', () => {
    fc.assert(
      fc.property(junk, fc.maxSafeNat(), junk, (before, distance, after) => {
        const encoded = encodeOfsDeltaDistance(distance);
        const decoded = readOfsDeltaDistance(Buffer.concat([before, encoded, after]), before.length);
        expect(decoded).toEqual({ distance, next: before.length + encoded.length });
      }),
    );
    // the offset added at each continuation: 0x80 0x00 is 128, not 0 (as plain base-128 would read it)
    expect(readOfsDeltaDistance(Buffer.from([0x80, 0x00]), 0).distance).toBe(128);
    expect(encodeOfsDeltaDistance(128)).toEqual(Buffer.from([0x80, 0x00]));
  });
});

describe('applyDelta', () => {
  const base = fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from(a));
  const opsFor = (baseLength: number) =>
    fc.array(
      fc.oneof(
        fc
          .tuple(fc.nat(baseLength - 1), fc.nat(baseLength))
          .map(([offset, length]): DeltaOp => ({ copy: [offset, Math.max(1, Math.min(length, baseLength - offset))] })),
        fc.uint8Array({ minLength: 1, maxLength: 127 }).map((a): DeltaOp => ({ insert: Buffer.from(a) })),
      ),
      { maxLength: 20 },
    );

  it('builds the target from copies of the base and inserted bytes', () => {
    fc.assert(
      fc.property(
        base.chain((b) => fc.tuple(fc.constant(b), opsFor(b.length))),
        ([b, ops]) => {
          const expected = Buffer.concat(ops.map((op) => ('insert' in op ? op.insert : b.subarray(op.copy[0], op.copy[0] + op.copy[1]))));
          expect(applyDelta(b, encodeDelta(b.length, expected.length, ops)).equals(expected)).toBe(true);
        },
      ),
    );
  });

  it('copies 0x10000 bytes for a copy without length bytes', () => {
    const b = Buffer.alloc(0x10000 + 5, 7);
    expect(applyDelta(b, encodeDelta(b.length, 0x10000, [{ copy: [5, 0x10000] }])).length).toBe(0x10000);
  });

  it('refuses a delta made for another base, a copy out of range, a wrong result size, opcode 0', () => {
    const b = Buffer.from('hello world');
    expect(() => applyDelta(b, encodeDelta(b.length + 1, 5, [{ copy: [0, 5] }]))).toThrow(PackFormatError);
    expect(() => applyDelta(b, encodeDelta(b.length, 5, [{ copy: [8, 5] }]))).toThrow(PackFormatError);
    expect(() => applyDelta(b, encodeDelta(b.length, 6, [{ copy: [0, 5] }]))).toThrow(PackFormatError);
    expect(() => applyDelta(b, Buffer.from([...encodeDeltaSize(b.length), 0, 0]))).toThrow(PackFormatError);
  });
});
