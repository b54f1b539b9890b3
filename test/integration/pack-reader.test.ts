// PackReader (src/git/pack-reader.ts) against git: every object of packs git wrote (stored and
// fully compressed zlib streams, offset and ref deltas, 64-bit offsets) reads back as `git cat-file`
// gives it, ids a pack does not hold are not found, and a zlib stream longer than zlib's own bound
// (which the reader reads first) is still read whole.

import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackReader } from '../../src/git/pack-reader.js';
import { git, tempDir, type TempDir } from '../helpers/fixtures.js';
import { workRepo } from '../helpers/git-http-server.js';

/** Every object of the repository as git reads it: id → type and content. */
function allObjects(gitdir: string): Map<string, { type: string; data: Buffer }> {
  const ids = execFileSync('git', ['--git-dir', gitdir, 'cat-file', '--batch-all-objects', '--batch-check=%(objectname)'], { encoding: 'utf8' }).trim().split('\n');
  const batch = execFileSync('git', ['--git-dir', gitdir, 'cat-file', '--batch'], { input: `${ids.join('\n')}\n`, maxBuffer: 1 << 28 });
  const objects = new Map<string, { type: string; data: Buffer }>();
  let pos = 0;
  while (pos < batch.length) {
    const eol = batch.indexOf(0x0a, pos);
    const [oid, type, size] = batch.toString('utf8', pos, eol).split(' ') as [string, string, string];
    const data = batch.subarray(eol + 1, eol + 1 + Number(size));
    objects.set(oid, { type, data: Buffer.from(data) });
    pos = eol + 1 + Number(size) + 1;
  }
  return objects;
}

/**
 * Reads every object through PackReader and compares it with git's; absent ids are not found.
 * Each object is read twice: by a reader of its own (its first read: up to zlib's bound of its
 * size) and by one reader for all (past a 64th of the pack, from the sorted offsets).
 */
function expectSameObjects(gitdir: string): number {
  const objects = allObjects(gitdir);
  for (const [oid, object] of objects) {
    const alone = PackReader.open(gitdir);
    try {
      expect(alone.read(oid)?.data.equals(object.data), oid).toBe(true);
    } finally {
      alone.close();
    }
  }
  const reader = PackReader.open(gitdir);
  try {
    for (const [oid, object] of objects) {
      const ours = reader.read(oid);
      expect(ours?.type, oid).toBe(object.type);
      expect(ours?.data.equals(object.data), oid).toBe(true);
      expect(reader.has(oid)).toBe(true);
    }
    // Ids in every fan-out bucket, empty or not, that no pack holds.
    for (let byte = 0; byte < 256; byte += 5) {
      const absent = byte.toString(16).padStart(2, '0') + createHash('sha1').update(String(byte)).digest('hex').slice(2);
      if (objects.has(absent)) continue;
      expect(reader.read(absent)).toBeUndefined();
      expect(reader.has(absent)).toBe(false);
    }
  } finally {
    reader.close();
  }
  return objects.size;
}

/** A bare repository holding `source`'s objects in one pack written by `git pack-objects` with `args`. */
function packedCopy(parent: string, name: string, source: string, args: string[]): string {
  const gitdir = join(parent, name);
  git(parent, ['init', '-q', '--bare', gitdir]);
  const objects = execFileSync('git', ['-C', source, 'rev-list', '--objects', '--all']);
  execFileSync('git', ['-C', source, 'pack-objects', '-q', ...args, join(gitdir, 'objects/pack/pack')], { input: objects });
  return gitdir;
}

describe('PackReader', () => {
  let tmp: TempDir;
  let source: string;

  beforeAll(async () => {
    tmp = await tempDir('oci-build-pack-reader-');
    const repo = await workRepo(tmp);
    source = repo.dir;
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i}`);
    for (let c = 0; c < 8; c++) {
      lines[c * 11] = `changed in commit ${c}`;
      const files: Record<string, string> = { 'similar.txt': lines.join('\n'), [`noise/${c}.bin`]: randomBytes(c === 0 ? 200_000 : 3_000).toString('latin1') };
      for (let f = 0; f < 40; f++) files[`many/f${f}.txt`] = `file ${f} in commit ${c % 3}\n`;
      repo.commit(files, `c${c}`);
    }
    repo.git(['tag', '-a', 'v1', '-m', 'an annotated tag']);
  });
  afterAll(() => tmp.cleanup());

  it('reads every object of packs git wrote: stored and compressed streams, offset and ref deltas', () => {
    for (const [name, args] of [
      ['stored', ['--compression=0']],
      ['compressed', ['--compression=9']],
      ['ref-deltas', ['--no-delta-base-offset']],
    ] as const) {
      const gitdir = packedCopy(tmp.path, name, source, [...args]);
      expect(expectSameObjects(gitdir), name).toBeGreaterThan(150);
    }
  });

  it('reads objects past the 31-bit offsets, from the index table of 64-bit ones', () => {
    // --index-version=2,64: every object after the pack's 64th byte gets a 64-bit entry, as in a pack over 2 GiB.
    const gitdir = packedCopy(tmp.path, 'large-offsets', source, ['--index-version=2,64']);
    const idx = join(gitdir, 'objects/pack', readdirSync(join(gitdir, 'objects/pack')).find((n) => n.endsWith('.idx'))!);
    const count = expectSameObjects(gitdir);
    // header, fan-out, ids, CRCs, 4-byte offsets, two checksums: anything more is the 8-byte table.
    expect(statSync(idx).size - (8 + 1024 + count * 28 + 40)).toBeGreaterThan((count - 2) * 8);
  });

  it("reads a zlib stream longer than zlib's bound, which another encoder may write", () => {
    const content = Buffer.from('a blob whose zlib stream is one stored block per byte\n'.repeat(20));
    const stream = storedBlockPerByte(content);
    expect(stream.length).toBeGreaterThan(content.length * 5);
    const gitdir = join(tmp.path, 'long-stream');
    git(tmp.path, ['init', '-q', '--bare', gitdir]);
    // A pack by hand (gitformat-pack): PACK, version 2, the count, each object's header and zlib
    // stream, the SHA-1 trailer. Other blobs after it, so that its read is a first one.
    const others = Array.from({ length: 99 }, (_, i) => Buffer.from(`another blob ${i}\n`));
    const objects = [content, ...others].map((data, i) => Buffer.concat([objectHeader(3, data.length), i === 0 ? stream : deflateSync(data)]));
    const body = Buffer.concat([Buffer.from('PACK'), u32(2), u32(objects.length), ...objects]);
    const pack = Buffer.concat([body, createHash('sha1').update(body).digest()]);
    const packFile = join(gitdir, 'objects/pack/pack-by-hand.pack');
    mkdirSync(join(gitdir, 'objects/pack'), { recursive: true });
    writeFileSync(packFile, pack);
    execFileSync('git', ['--git-dir', gitdir, 'index-pack', packFile]);
    const oid = createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
    const reader = PackReader.open(gitdir);
    try {
      expect(reader.read(oid)?.data.equals(content)).toBe(true);
    } finally {
      reader.close();
    }
    expect(execFileSync('git', ['--git-dir', gitdir, 'cat-file', 'blob', oid]).equals(content)).toBe(true);
  });
});

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** A pack object header: type in bits 6–4 of the first byte, the size 4 then 7 bits a byte. */
function objectHeader(type: number, size: number): Buffer {
  const bytes = [(type << 4) | (size & 15)];
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes[bytes.length - 1]! |= 0x80;
    bytes.push(rest & 0x7f);
    rest = Math.floor(rest / 128);
  }
  return Buffer.from(bytes);
}

/** A valid zlib stream (RFC 1950/1951) of one-byte stored blocks: six bytes for each byte of data. */
function storedBlockPerByte(data: Buffer): Buffer {
  const parts = [Buffer.from([0x78, 0x01])];
  data.forEach((byte, i) => parts.push(Buffer.from([i === data.length - 1 ? 1 : 0, 1, 0, 0xfe, 0xff, byte])));
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  parts.push(u32(((b << 16) | a) >>> 0));
  return Buffer.concat(parts);
}
