// Takes the packfile out of an upload-pack response before isomorphic-git sees it: the pack
// (side-band channel 1) is indexed natively by pack-index.ts and written into the mirror, and
// isomorphic-git is handed an empty pack in its place, so it negotiates, updates refs and the
// shallow file as usual but skips its own (slow) indexing. Everything else in the response —
// shallow/ACK/NAK lines, progress, errors — passes through untouched.

import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { createHash } from 'node:crypto';
import { PackFormatError } from './pack-index.js';

/** What an empty version-2 pack looks like: header, zero objects, SHA-1 trailer. */
function emptyPack(): Buffer {
  const header = Buffer.from('5041434b0000000200000000', 'hex');
  return Buffer.concat([header, createHash('sha1').update(header).digest()]);
}

/** One pkt-line: four hex digits of length (the payload's plus their own), then the payload. */
export function pktLine(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from((payload.length + 4).toString(16).padStart(4, '0'), 'latin1'), payload]);
}

/**
 * Wraps an isomorphic-git HTTP client; `storePack` receives each fetched pack (complete, checksum
 * not yet verified) and must store it before the response is allowed to end.
 */
export function interceptPacks(base: HttpClient, storePack: (pack: Buffer) => Promise<void>): HttpClient {
  return {
    async request(request: GitHttpRequest): Promise<GitHttpResponse> {
      const response = await base.request(request);
      const isPackResponse = (request.method ?? 'GET').toUpperCase() === 'POST' && /\/git-upload-pack$/.test(request.url) && response.statusCode === 200;
      if (!isPackResponse || !response.body) return response;
      return { ...response, body: demuxPack(response.body, storePack) };
    },
  };
}

async function* demuxPack(body: AsyncIterableIterator<Uint8Array>, storePack: (pack: Buffer) => Promise<void>): AsyncIterableIterator<Uint8Array> {
  const packChunks: Buffer[] = [];
  let pending = Buffer.alloc(0);
  let sawPack = false;
  for await (const chunk of body) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    const passThrough: Buffer[] = [];
    let pos = 0;
    while (pending.length - pos >= 4) {
      const length = Number.parseInt(pending.toString('latin1', pos, pos + 4), 16);
      if (Number.isNaN(length)) throw new PackFormatError('malformed pkt-line in the upload-pack response');
      if (length < 4) {
        // flush (0000) and other special packets carry no payload
        passThrough.push(pending.subarray(pos, pos + 4));
        pos += 4;
        continue;
      }
      if (pending.length - pos < length) break;
      const band = pending[pos + 4];
      if (band === 1) {
        sawPack = true;
        packChunks.push(pending.subarray(pos + 5, pos + length));
      } else {
        passThrough.push(pending.subarray(pos, pos + length));
      }
      pos += length;
    }
    pending = pending.subarray(pos);
    // Copy what we keep: `pending` may be a view of a chunk the stream reuses.
    pending = Buffer.from(pending);
    if (passThrough.length > 0) yield Buffer.concat(passThrough);
  }
  if (pending.length > 0) throw new PackFormatError('unexpected end of the upload-pack response (truncated pkt-line)');
  if (sawPack) {
    await storePack(Buffer.concat(packChunks));
    yield pktLine(Buffer.concat([Buffer.from([1]), emptyPack()]));
  }
}
