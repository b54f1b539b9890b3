// pkt-line framing (pkt-line.ts): what pktLine writes, readPktLines reads back, whole or in any
// chunks, and what is not pkt-lines is said to be so.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pktLine, readPktLines } from '../../src/git/pkt-line.js';

/** A data packet (its payload) or a special one (flush 0000, delimiter 0001, response end 0002). */
type Packet = { payload: Buffer } | { special: string };

const packet: fc.Arbitrary<Packet> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => ({ payload: Buffer.from(a) })),
  fc.constantFrom('0000', '0001', '0002').map((special) => ({ special })),
);

const frame = (p: Packet) => ('payload' in p ? pktLine(p.payload) : Buffer.from(p.special, 'latin1'));
const payloadOf = (p: Packet) => ('payload' in p ? p.payload : undefined);

describe('pkt-lines', () => {
  it('pktLine writes four hex digits of the whole length, then the payload', () => {
    expect(pktLine(Buffer.from('# service=git-upload-pack\n')).toString()).toBe('001e# service=git-upload-pack\n');
    expect(pktLine(Buffer.alloc(0)).toString()).toBe('0004');
  });

  it('reads back every packet written, payloads and raw bytes, with nothing left over', () => {
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 20 }), (packets) => {
        const framed = packets.map(frame);
        const data = Buffer.concat(framed);
        const read = readPktLines(data);
        expect(read?.rest).toBe(data.length);
        expect(read?.lines.map((l) => l.payload)).toEqual(packets.map(payloadOf));
        expect(read?.lines.map((l) => l.raw)).toEqual(framed);
      }),
    );
  });

  it('read chunk by chunk, keeping the rest for the next chunk, gives the same packets', () => {
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 10 }), (packets, cuts) => {
        const data = Buffer.concat(packets.map(frame));
        const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
        const chunks = [...points, data.length].map((end, i, all) => data.subarray(i === 0 ? 0 : all[i - 1], end));
        const payloads: Array<Buffer | undefined> = [];
        let pending = Buffer.alloc(0);
        for (const chunk of chunks) {
          pending = Buffer.concat([pending, chunk]);
          const read = readPktLines(pending)!;
          // the rest is where a packet begins: what was read ends on a packet boundary
          expect(Buffer.concat(read.lines.map((l) => l.raw))).toEqual(pending.subarray(0, read.rest));
          payloads.push(...read.lines.map((l) => (l.payload ? Buffer.from(l.payload) : undefined)));
          pending = Buffer.from(pending.subarray(read.rest));
        }
        expect(pending.length).toBe(0);
        expect(payloads).toEqual(packets.map(payloadOf));
      }),
    );
  });

  it('says data whose length prefix is not four hex digits is not pkt-lines', () => {
    expect(readPktLines(Buffer.from('HTTP/1.1 200 OK\r\n'))).toBeUndefined();
    expect(readPktLines(Buffer.from('0x10abcdefghijkl'))).toBeUndefined();
    expect(readPktLines(Buffer.concat([pktLine(Buffer.from('ok\n')), Buffer.from(' 01a')]))).toBeUndefined();
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => Buffer.from(a)).filter((prefix) => !/^[0-9a-fA-F]{4}$/.test(prefix.toString('latin1'))),
        (prefix) => {
          expect(readPktLines(Buffer.concat([prefix, Buffer.alloc(70)]))).toBeUndefined();
        },
      ),
    );
  });

  it('leaves a packet cut short, or fewer than four bytes, for later', () => {
    const whole = pktLine(Buffer.from('abcdef'));
    expect(readPktLines(whole.subarray(0, 7))).toEqual({ lines: [], rest: 0 });
    expect(readPktLines(Buffer.from('00'))).toEqual({ lines: [], rest: 0 });
  });
});
