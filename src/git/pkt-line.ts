// pkt-line framing, the Git protocol's one packet format (gitprotocol-common, "pkt-line Format"):
// four hex digits giving the packet's length, the payload's plus their own, then the payload.
// Lengths below 4 carry no payload: 0000 is a flush, 0001 a delimiter, 0002 a response end
// (protocol v2). Both of our wrappers around isomorphic-git's HTTP client read this format
// (head-intercept.ts the ref advertisement, pack-intercept.ts the upload-pack response): this
// is the one reader they share, and the one writer.

export interface PktLine {
  /** The payload, or undefined for a flush, delimiter or response-end packet (length < 4). */
  payload?: Buffer;
  /** The whole packet as received, length prefix included. */
  raw: Buffer;
}

export interface PktLines {
  /** The complete packets at the start of the data, in order. */
  lines: PktLine[];
  /** Where the unread rest begins: a packet cut short, or data.length when nothing is left over. */
  rest: number;
}

const HEX_LENGTH = /^[0-9a-fA-F]{4}$/;

/** One pkt-line: four hex digits of length (the payload's plus their own), then the payload. */
export function pktLine(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0'), 'latin1'), payload]);
}

/**
 * The complete pkt-lines at the start of `data`, and where an incomplete last one begins (a
 * stream reader keeps that part for the next chunk). Undefined when a length prefix is not four
 * hex digits: the data is not made of pkt-lines. The payloads and raw packets are views of `data`.
 */
export function readPktLines(data: Buffer): PktLines | undefined {
  const lines: PktLine[] = [];
  let pos = 0;
  while (data.length - pos >= 4) {
    const prefix = data.toString('latin1', pos, pos + 4);
    if (!HEX_LENGTH.test(prefix)) return undefined;
    const length = Number.parseInt(prefix, 16);
    if (length < 4) {
      lines.push({ raw: data.subarray(pos, pos + 4) });
      pos += 4;
      continue;
    }
    if (data.length - pos < length) break;
    lines.push({ payload: data.subarray(pos + 4, pos + length), raw: data.subarray(pos, pos + length) });
    pos += length;
  }
  return { lines, rest: pos };
}
