// A fetch into a mirror that already has everything the remote advertises needs no fetch at all.
// isomorphic-git's fetch does not know that: after the ref advertisement (GET info/refs) it always
// POSTs to upload-pack, which makes the server start a second git process, then reads and rewrites
// every ref. Rebuilds, a second worker's sync of a commit the mirror has, a retried job: all sync an
// up-to-date mirror. So the mirror asks for the advertisement first (isomorphic-git's own
// getRemoteInfo2, auth included), compares it with its refs here, and only fetches when something
// differs — handing that fetch the advertisement already received, so the remote is asked once.
// The CLI asks for it even before that, while it loads the rest of itself (EarlyAdvertisement).

import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';

/** A ref as isomorphic-git's getRemoteInfo2 lists it (protocol v1). */
export interface AdvertisedRef {
  ref: string;
  oid: string;
  /** The ref a symbolic ref names (HEAD → refs/heads/main). */
  target?: string;
}

/** What the mirror holds, as Mirror.snapshotRefs reads it, and the default branch of its state. */
export interface MirrorRefs {
  /** `refs/remotes/origin/<branch>` and `refs/tags/<tag>` → object id. */
  refs: ReadonlyMap<string, string>;
  defaultBranch: string | undefined;
}

/**
 * The remote's default branch (`refs/heads/main`) when the mirror already has exactly what the
 * advertisement names: every branch as `refs/remotes/<remote>/<branch>` and every tag at the same
 * object, nothing more (a fetch would prune the rest), and HEAD naming the same branch. Undefined
 * when a fetch is needed, or when the advertisement is one the fetch treats specially (no refs, no
 * HEAD, a HEAD that names no branch).
 */
export function upToDateHead(advertised: readonly AdvertisedRef[], mirror: MirrorRefs, remote: string): string | undefined {
  const head = advertised.find((r) => r.ref === 'HEAD');
  if (!head?.target?.startsWith('refs/heads/') || head.target !== mirror.defaultBranch) return undefined;
  const wanted = new Map<string, string>();
  for (const { ref, oid } of advertised) {
    if (ref.startsWith('refs/heads/')) wanted.set(`refs/remotes/${remote}/${ref.slice('refs/heads/'.length)}`, oid);
    else if (ref.startsWith('refs/tags/')) wanted.set(ref, oid);
  }
  if (!wanted.has(`refs/remotes/${remote}/${head.target.slice('refs/heads/'.length)}`)) return undefined;
  if (wanted.size !== mirror.refs.size) return undefined;
  for (const [name, oid] of wanted) if (mirror.refs.get(name) !== oid) return undefined;
  return head.target;
}

/** A response's body read whole, so that it can be handed out again. */
export interface RecordedResponse {
  url: string;
  response: Omit<GitHttpResponse, 'body'>;
  body: Buffer;
}

const isAdvertisement = (request: GitHttpRequest) => (request.method ?? 'GET') === 'GET' && /\/info\/refs\?service=git-upload-pack$/.test(request.url);

/**
 * Wraps an HTTP client: the last successful ref advertisement it fetched without credentials is
 * kept (`recorded()`), read whole before it is handed on.
 */
export function recordingAdvertisement(base: HttpClient): { http: HttpClient; recorded: () => RecordedResponse | undefined } {
  let recorded: RecordedResponse | undefined;
  return {
    recorded: () => recorded,
    http: {
      async request(request: GitHttpRequest): Promise<GitHttpResponse> {
        const response = await base.request(request);
        if (!isAdvertisement(request) || response.statusCode !== 200) return response;
        const { body: _body, ...rest } = response;
        const body = await readWhole(response);
        // Not kept when it took credentials: isomorphic-git sends them with its POST only after
        // it was refused without them itself, so the fetch must ask for the advertisement again.
        const authorized = Object.keys(request.headers ?? {}).some((name) => name.toLowerCase() === 'authorization');
        recorded = authorized ? undefined : { url: request.url, response: rest, body };
        return { ...rest, body: once(body) };
      },
    },
  };
}

/** Wraps an HTTP client: the first request for `recorded`'s advertisement is answered with it. */
export function replayingAdvertisement(base: HttpClient, recorded: RecordedResponse | undefined): HttpClient {
  let pending = recorded;
  return {
    async request(request: GitHttpRequest): Promise<GitHttpResponse> {
      if (pending && isAdvertisement(request) && request.url === pending.url) {
        const { response, body } = pending;
        pending = undefined;
        return { ...response, body: once(body) };
      }
      return base.request(request);
    },
  };
}

/**
 * A ref advertisement asked for before the sync that needs it (source-provider.ts `warm`: the
 * CLI asks while it loads the rest of itself), and when it was asked for.
 */
export interface EarlyAdvertisement {
  /** Epoch milliseconds, on the clock the mirror records its syncs with. */
  startedAt: number;
  response: Promise<RecordedResponse | undefined>;
}

const ADVERTISEMENT_TYPE = 'application/x-git-upload-pack-advertisement';

/**
 * GET of `cloneUrl`'s ref advertisement, without credentials and with the headers isomorphic-git's
 * getRemoteInfo2 sends (none for protocol v1), read whole. Undefined for anything but a smart-HTTP
 * advertisement (a 401, a dumb server, an error): the sync then asks as it always does.
 */
export async function requestAdvertisement(http: HttpClient, cloneUrl: string): Promise<RecordedResponse | undefined> {
  const request: GitHttpRequest = { method: 'GET', url: `${cloneUrl}/info/refs?service=git-upload-pack`, headers: {} };
  try {
    const response = await http.request(request);
    const body = await readWhole(response);
    if (response.statusCode !== 200 || response.headers?.['content-type'] !== ADVERTISEMENT_TYPE) return undefined;
    const { body: _body, ...rest } = response;
    return { url: request.url, response: rest, body };
  } catch {
    return undefined;
  }
}

async function readWhole(response: GitHttpResponse): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of response.body ?? []) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function* once(body: Buffer): AsyncIterableIterator<Uint8Array> {
  yield new Uint8Array(body);
}
