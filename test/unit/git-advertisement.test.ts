// src/git/advertisement.ts: when a mirror is up to date with a ref advertisement (stated as
// properties), and the advertisement recorded once and handed to the fetch once.

import fc from 'fast-check';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';
import { describe, expect, it } from 'vitest';
import { recordingAdvertisement, replayingAdvertisement, requestAdvertisement, upToDateHead, type AdvertisedRef } from '../../src/git/advertisement.js';

const oid = fc.stringMatching(/^[0-9a-f]{40}$/);
const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
/** Branches (at least one) and tags of a remote, and which branch HEAD names. */
const remote = fc
  .record({ branches: fc.dictionary(name, oid, { minKeys: 1, maxKeys: 6 }), tags: fc.dictionary(name, oid, { maxKeys: 4 }), headIndex: fc.nat() })
  .map(({ branches, tags, headIndex }) => {
    const names = Object.keys(branches);
    const head = names[headIndex % names.length]!;
    const advertised: AdvertisedRef[] = [
      { ref: 'HEAD', oid: branches[head]!, target: `refs/heads/${head}` },
      ...Object.entries(branches).map(([b, o]) => ({ ref: `refs/heads/${b}`, oid: o })),
      ...Object.entries(tags).map(([t, o]) => ({ ref: `refs/tags/${t}`, oid: o })),
      // Refs a fetch of branches and tags never takes.
      { ref: 'refs/pull/1/head', oid: branches[head]! },
    ];
    const mirrored = new Map<string, string>([
      ...Object.entries(branches).map(([b, o]): [string, string] => [`refs/remotes/origin/${b}`, o]),
      ...Object.entries(tags).map(([t, o]): [string, string] => [`refs/tags/${t}`, o]),
    ]);
    return { advertised, mirrored, head: `refs/heads/${head}` };
  });

describe('upToDateHead', () => {
  it('names the default branch when the mirror holds exactly the advertised branches and tags', () => {
    fc.assert(
      fc.property(remote, ({ advertised, mirrored, head }) => {
        expect(upToDateHead(advertised, { refs: mirrored, defaultBranch: head }, 'origin')).toBe(head);
      }),
    );
  });

  it('asks for a fetch when any one thing differs: an object, a ref more or less, the default branch', () => {
    fc.assert(
      fc.property(remote, oid, fc.nat(), fc.constantFrom('moved', 'extra', 'missing', 'head'), ({ advertised, mirrored, head }, other, pick, change) => {
        const refs = new Map(mirrored);
        const names = [...refs.keys()];
        const chosen = names[pick % names.length]!;
        if (change === 'moved') {
          fc.pre(refs.get(chosen) !== other);
          refs.set(chosen, other);
        } else if (change === 'extra') refs.set('refs/remotes/origin/zz-extra-branch', other);
        else if (change === 'missing') refs.delete(chosen);
        const defaultBranch = change === 'head' ? 'refs/heads/zz-elsewhere' : head;
        expect(upToDateHead(advertised, { refs, defaultBranch }, 'origin')).toBeUndefined();
      }),
    );
  });

  it('asks for a fetch when the advertisement has no HEAD, or a HEAD that names no branch', () => {
    const refs = new Map([['refs/remotes/origin/main', 'a'.repeat(40)]]);
    expect(upToDateHead([{ ref: 'refs/heads/main', oid: 'a'.repeat(40) }], { refs, defaultBranch: 'refs/heads/main' }, 'origin')).toBeUndefined();
    expect(upToDateHead([{ ref: 'HEAD', oid: 'a'.repeat(40) }, { ref: 'refs/heads/main', oid: 'a'.repeat(40) }], { refs, defaultBranch: 'refs/heads/main' }, 'origin')).toBeUndefined();
    expect(upToDateHead([{ ref: 'HEAD', oid: 'a'.repeat(40), target: 'refs/heads/gone' }], { refs: new Map(), defaultBranch: 'refs/heads/gone' }, 'origin')).toBeUndefined();
  });
});

describe('recordingAdvertisement and replayingAdvertisement', () => {
  const URL = 'http://git.example/acme/api.git/info/refs?service=git-upload-pack';
  const body = (response: GitHttpResponse) => collect(response.body);
  async function collect(iterable: AsyncIterableIterator<Uint8Array> | undefined): Promise<string> {
    const parts: Buffer[] = [];
    for await (const chunk of iterable ?? []) parts.push(Buffer.from(chunk));
    return Buffer.concat(parts).toString('utf8');
  }
  /** A server that answers every request with its number and counts them. */
  function server(): HttpClient & { requests: GitHttpRequest[] } {
    const requests: GitHttpRequest[] = [];
    return {
      requests,
      async request(request) {
        requests.push(request);
        async function* chunks() {
          yield new Uint8Array(Buffer.from('part-'));
          yield new Uint8Array(Buffer.from(String(requests.length)));
        }
        return { url: request.url, method: request.method ?? 'GET', statusCode: 200, statusMessage: 'OK', headers: {}, body: chunks() };
      },
    };
  }

  it('hands the advertisement to the fetch once, then asks the server again', async () => {
    const base = server();
    const recording = recordingAdvertisement(base);
    expect(await body(await recording.http.request({ url: URL, method: 'GET', headers: {} }))).toBe('part-1');
    const replaying = replayingAdvertisement(base, recording.recorded());
    expect(await body(await replaying.request({ url: URL, method: 'GET', headers: {} }))).toBe('part-1');
    expect(await body(await replaying.request({ url: URL, method: 'GET', headers: {} }))).toBe('part-2');
    expect(base.requests).toHaveLength(2);
  });

  it('keeps nothing that took credentials, nor anything but a GET of the advertisement', async () => {
    const base = server();
    const recording = recordingAdvertisement(base);
    await recording.http.request({ url: URL, method: 'GET', headers: { Authorization: 'Basic eDp5' } });
    expect(recording.recorded()).toBeUndefined();
    await recording.http.request({ url: URL.replace('info/refs?service=git-upload-pack', 'git-upload-pack'), method: 'POST', headers: {} });
    expect(recording.recorded()).toBeUndefined();
    const replaying = replayingAdvertisement(base, undefined);
    expect(await body(await replaying.request({ url: URL, method: 'GET', headers: {} }))).toBe('part-3');
  });
});

describe('requestAdvertisement (asked for before the sync)', () => {
  const CLONE = 'http://git.example/acme/api.git';
  function answering(statusCode: number, contentType: string | undefined, fail = false): HttpClient & { requests: GitHttpRequest[]; drained: boolean } {
    const client = {
      requests: [] as GitHttpRequest[],
      drained: false,
      async request(request: GitHttpRequest): Promise<GitHttpResponse> {
        client.requests.push(request);
        if (fail) throw new Error('connect ECONNREFUSED');
        async function* chunks() {
          yield new Uint8Array(Buffer.from('001e# service=git-upload-pack\n'));
          client.drained = true;
        }
        return { url: request.url, method: 'GET', statusCode, statusMessage: '', headers: contentType ? { 'content-type': contentType } : {}, body: chunks() };
      },
    };
    return client;
  }

  it('is the GET getRemoteInfo2 makes (no credentials, no header), read whole', async () => {
    const client = answering(200, 'application/x-git-upload-pack-advertisement');
    const early = await requestAdvertisement(client, CLONE);
    expect(client.requests).toEqual([{ method: 'GET', url: `${CLONE}/info/refs?service=git-upload-pack`, headers: {} }]);
    expect(early).toMatchObject({ url: `${CLONE}/info/refs?service=git-upload-pack`, response: { statusCode: 200 } });
    expect(early?.body.toString()).toBe('001e# service=git-upload-pack\n');
    // Replayed as the first advertisement the sync asks for.
    const replayed = await replayingAdvertisement(answering(500, undefined), early).request({ method: 'GET', url: `${CLONE}/info/refs?service=git-upload-pack`, headers: {} });
    expect(replayed.statusCode).toBe(200);
  });

  it('is nothing for a refusal, a dumb server or an error, whose body is still read', async () => {
    for (const client of [answering(401, 'text/plain'), answering(200, 'text/html'), answering(404, undefined)]) {
      expect(await requestAdvertisement(client, CLONE)).toBeUndefined();
      expect(client.drained).toBe(true);
    }
    expect(await requestAdvertisement(answering(200, undefined, true), CLONE)).toBeUndefined();
  });
});
