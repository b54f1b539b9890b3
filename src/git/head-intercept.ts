// A remote whose HEAD names a branch that does not exist (a dangling `ref: refs/heads/main` on a
// repository that only has `develop`: a default branch renamed, a first push to another branch)
// advertises no HEAD at all. isomorphic-git's fetch cannot do without one: it resolves HEAD before
// it asks for anything and again afterwards to name the default branch, and fails with "Could not
// find HEAD." — so not even `--ref develop` could be fetched. That is isomorphic-git issue #1654
// (github.com/isomorphic-git/isomorphic-git/issues/1654, open since 2022: Gogs leaves HEAD out the
// same way, and fetch resolves HEAD "regardless of whether ref is explicitly specified"). Without
// this wrapper every fetch of such a remote failed, even with --ref, with a misleading "did not
// answer as a Git smart-HTTP server" (test/integration/git-remote-head.test.ts serves one).
//
// The wrapper notices the missing HEAD in the ref advertisement and adds a stand-in pointing at a
// commit that is fetched anyway (an advertised branch), so the fetch of every branch and tag goes
// through. The caller is told, and must not believe the default branch isomorphic-git then derives
// from the stand-in.

import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { pktLine, readPktLines } from './pkt-line.js';

/**
 * A protocol v0/v1 upload-pack advertisement with a HEAD added when it has refs but no HEAD;
 * undefined when it needs none (HEAD advertised, no refs at all, protocol v2, or anything this
 * does not understand, which is left for isomorphic-git to report).
 */
export function withStandInHead(advertisement: Buffer): Buffer | undefined {
  // Read whole before it is looked at (see supplyMissingHead): a packet cut short is not pkt-lines.
  const read = readPktLines(advertisement);
  if (!read || read.rest !== advertisement.length) return undefined;
  const lines = read.lines;
  // Refs start at the first data line that is not the `# service=…` announcement.
  const first = lines.findIndex((line) => line.payload !== undefined && !line.payload.toString('utf8').startsWith('# '));
  if (first < 0) return undefined;
  const firstText = lines[first]!.payload!.toString('utf8');
  const nul = firstText.indexOf('\0');
  if (nul < 0) return undefined;
  const refs: Array<{ oid: string; name: string }> = [];
  for (const [index, line] of lines.slice(first).entries()) {
    if (!line.payload) break;
    const text = line.payload.toString('utf8');
    const match = /^([0-9a-f]{40}|[0-9a-f]{64}) ([^\0\n]+)/.exec(index === 0 ? text.slice(0, nul) : text);
    if (!match) return undefined;
    refs.push({ oid: match[1]!, name: match[2]! });
  }
  // `capabilities^{}` is how a server says "no refs at all": an empty repository, nothing to fetch.
  if (refs.length === 0 || refs[0]!.name === 'capabilities^{}' || refs.some((ref) => ref.name === 'HEAD')) return undefined;
  const standIn = refs.find((ref) => ref.name.startsWith('refs/heads/')) ?? refs[0]!;
  const capabilities = firstText.slice(nul); // `\0caps…\n`: only the first ref line carries them
  const firstRef = `${firstText.slice(0, nul)}${capabilities.endsWith('\n') ? '\n' : ''}`;
  return Buffer.concat([
    ...lines.slice(0, first).map((line) => line.raw),
    pktLine(Buffer.from(`${standIn.oid} HEAD${capabilities}`, 'utf8')),
    pktLine(Buffer.from(firstRef, 'utf8')),
    ...lines.slice(first + 1).map((line) => line.raw),
  ]);
}

/** Wraps an isomorphic-git HTTP client; `onMissingHead` is called when a stand-in HEAD was added. */
export function supplyMissingHead(base: HttpClient, onMissingHead: () => void): HttpClient {
  return {
    async request(request: GitHttpRequest): Promise<GitHttpResponse> {
      const response = await base.request(request);
      const isAdvertisement =
        (request.method ?? 'GET').toUpperCase() === 'GET' && /\/info\/refs\?service=git-upload-pack$/.test(request.url) && response.statusCode === 200;
      if (!isAdvertisement || !response.body) return response;
      // isomorphic-git reads the advertisement whole before it looks at it; so may we.
      const chunks: Buffer[] = [];
      for await (const chunk of response.body) chunks.push(Buffer.from(chunk));
      const original = Buffer.concat(chunks);
      const rewritten = withStandInHead(original);
      if (rewritten) onMissingHead();
      return { ...response, body: single(rewritten ?? original) };
    },
  };
}

async function* single(data: Buffer): AsyncIterableIterator<Uint8Array> {
  yield data;
}
