// Takes the packfile out of an upload-pack response before isomorphic-git sees it: the pack
// (side-band channel 1) is indexed natively by pack-indexer.ts and written into the mirror, and
// isomorphic-git is handed an empty pack in its place, so it negotiates, updates refs and the
// shallow file as usual but skips its own (slow) indexing: on a pack like bench/git-sync's,
// isomorphic-git's indexPack takes about twice as long as ours (figures in pack-indexer.ts), and it
// was most of a cold sync. Everything else in the response — shallow/ACK/NAK lines, progress,
// errors — passes through untouched.

import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { createHash } from 'node:crypto';
import { PackFormatError } from './pack-objects.js';
import { pktLine, readPktLines } from './pkt-line.js';

/** What an empty version-2 pack looks like: header, zero objects, SHA-1 trailer. */
function emptyPack(): Buffer {
  const header = Buffer.from('5041434b0000000200000000', 'hex');
  return Buffer.concat([header, createHash('sha1').update(header).digest()]);
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
    const read = readPktLines(pending);
    if (!read) throw new PackFormatError('malformed pkt-line in the upload-pack response');
    const passThrough: Buffer[] = [];
    for (const line of read.lines) {
      // Side-band: the payload's first byte is the channel; 1 carries the pack. Flush packets
      // (no payload) and the other channels (progress, errors) go on to isomorphic-git as they came.
      if (line.payload?.[0] === 1) {
        sawPack = true;
        packChunks.push(line.payload.subarray(1));
      } else {
        passThrough.push(line.raw);
      }
    }
    // Copy what we keep: `pending` may be a view of a chunk the stream reuses.
    pending = Buffer.from(pending.subarray(read.rest));
    if (passThrough.length > 0) yield Buffer.concat(passThrough);
  }
  if (pending.length > 0) throw new PackFormatError('unexpected end of the upload-pack response (truncated pkt-line)');
  if (sawPack) {
    await storePack(Buffer.concat(packChunks));
    yield pktLine(Buffer.concat([Buffer.from([1]), emptyPack()]));
  }
}
