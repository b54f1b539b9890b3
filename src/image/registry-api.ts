// The few calls of the OCI distribution API that reusing an image needs (image/registry-tag.ts): is
// manifest repo@digest there (HEAD), and the same manifest bytes under a new tag (GET, then PUT in
// the same repository, where every blob it names already is). Spoken directly, in-process: a
// `skopeo inspect` and one `skopeo copy` per tag cost 40-100 ms each in process start and in the
// round trips skopeo makes before the one that matters.
//
// A fast path, never the only one: it answers `undefined` whenever it is not sure (an auth scheme
// it does not speak, credentials it does not have, an answer it does not expect), and the caller
// then asks skopeo, which knows every credential store. What it does answer is checked: a manifest
// is only written under a tag when its bytes hash to the digest reused, and the registry's digest
// for the tag must be that digest.
//
// Credentials: the `image.authFile` (containers-auth.json: `auths.<host>.auth`, base64 user:pass)
// only, sent to the registry host (Basic) or to the token service its Bearer challenge names, as
// buildah and skopeo do; never logged, never in an error.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** What a manifest may be, as the Accept header of every manifest request lists it. */
const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const TIMEOUT_MS = 30_000;
/** A manifest is a few KB; anything much larger is not one. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface RegistryApiOptions {
  tlsVerify: boolean;
  authFile?: string;
  signal?: AbortSignal;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** `host[:port]/path/name` → the API's host and the repository name in it. */
export function splitRepository(repository: string): { host: string; apiHost: string; name: string } | undefined {
  const slash = repository.indexOf('/');
  if (slash <= 0) return undefined;
  const host = repository.slice(0, slash);
  const name = repository.slice(slash + 1);
  if (!/^[a-z0-9][a-z0-9._-]*(:\d+)?$/i.test(host) || !/^[a-z0-9]+([._/-][a-z0-9]+)*$/.test(name)) return undefined;
  // Docker Hub's credentials are kept under its name, its API answers elsewhere.
  return { host, apiHost: apiHost(host), name };
}

/** The parameters of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge. */
export function parseBearerChallenge(header: string | undefined): Record<string, string> | undefined {
  if (!header || !/^bearer\s/i.test(header)) return undefined;
  const params: Record<string, string> = {};
  for (const match of header.slice(header.indexOf(' ') + 1).matchAll(/([a-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))/gi)) {
    params[match[1]!.toLowerCase()] = match[2] ?? match[3] ?? '';
  }
  return params.realm ? params : undefined;
}

/** `auths.<host>.auth` of a containers-auth.json, undefined when it has none for the host. */
async function basicCredentials(authFile: string | undefined, host: string): Promise<string | undefined> {
  if (!authFile) return undefined;
  try {
    const parsed = JSON.parse(await readFile(authFile, 'utf8')) as { auths?: Record<string, { auth?: unknown }> };
    const auth = parsed.auths?.[host]?.auth ?? parsed.auths?.[`https://${host}`]?.auth;
    return typeof auth === 'string' && auth.length > 0 ? auth : undefined;
  } catch {
    return undefined;
  }
}

/** Docker Hub's API does not live at its name. */
export function apiHost(host: string): string {
  return host === 'docker.io' ? 'registry-1.docker.io' : host;
}

/** One request to a registry over node:http(s), its answer read whole (`insecure`: no TLS verification). */
export function send(url: string, init: { method: string; headers: Record<string, string>; body?: Buffer; insecure: boolean; signal?: AbortSignal; timeoutMs?: number }): Promise<Answer> {
  const timeoutMs = init.timeoutMs ?? TIMEOUT_MS;
  return new Promise((resolveAnswer, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(
      url,
      { method: init.method, headers: init.headers, timeout: timeoutMs, ...(init.insecure ? { rejectUnauthorized: false } : {}), ...(init.signal ? { signal: init.signal } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_MANIFEST_BYTES) req.destroy(new Error('answer too large for a manifest'));
          else chunks.push(chunk);
        });
        res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(init.body);
  });
}

/** A client for one repository of one registry; every method answers undefined when unsure. */
export class RegistryApi {
  private base: string | undefined;
  private authorization: string | undefined;

  private constructor(
    private readonly host: string,
    private readonly apiHost: string,
    private readonly name: string,
    private readonly options: RegistryApiOptions,
  ) {}

  static for(repository: string, options: RegistryApiOptions): RegistryApi | undefined {
    const parts = splitRepository(repository);
    return parts ? new RegistryApi(parts.host, parts.apiHost, parts.name, options) : undefined;
  }

  /** Whether the registry serves manifest `digest`: true, false (404), undefined (unsure). */
  async hasManifest(digest: string): Promise<boolean | undefined> {
    const answer = await this.call('HEAD', `manifests/${digest}`, { accept: MANIFEST_TYPES });
    if (!answer) return undefined;
    if (answer.status === 404) return false;
    if (answer.status !== 200) return undefined;
    const served = answer.headers['docker-content-digest'];
    return served === undefined || served === digest ? true : undefined;
  }

  /** The manifest `digest`'s bytes and media type, checked against the digest. */
  async manifest(digest: string): Promise<{ bytes: Buffer; mediaType: string } | undefined> {
    const answer = await this.call('GET', `manifests/${digest}`, { accept: MANIFEST_TYPES });
    const mediaType = answer?.headers['content-type']?.split(';')[0]?.trim();
    if (answer?.status !== 200 || !mediaType) return undefined;
    if (`sha256:${createHash('sha256').update(answer.body).digest('hex')}` !== digest) return undefined;
    return { bytes: answer.body, mediaType };
  }

  /**
   * Writes the manifest under `tag`; answers the digest the registry gives it, `retry` for a 5xx
   * (a registry busy writing the same manifest under another tag), undefined when unsure.
   */
  async putManifest(tag: string, manifest: { bytes: Buffer; mediaType: string }): Promise<string | 'retry' | undefined> {
    const answer = await this.call('PUT', `manifests/${tag}`, { 'content-type': manifest.mediaType }, manifest.bytes);
    if (!answer) return undefined;
    if (answer.status >= 500) return 'retry';
    if (answer.status !== 201 && answer.status !== 200) return undefined;
    const given = answer.headers['docker-content-digest'];
    return typeof given === 'string' ? given : `sha256:${createHash('sha256').update(manifest.bytes).digest('hex')}`;
  }

  /** One request, authenticated on a 401 when the challenge is one this speaks; undefined when unsure. */
  private async call(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Answer | undefined> {
    try {
      const base = this.base ?? (await this.findBase());
      if (!base) return undefined;
      const url = `${base}/v2/${this.name}/${path}`;
      const request = () => send(url, { method, headers: { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) }, ...(body ? { body } : {}), insecure: !this.options.tlsVerify, ...(this.options.signal ? { signal: this.options.signal } : {}) });
      let answer = await request();
      if (answer.status === 401 && !this.authorization && (await this.authenticate(answer.headers['www-authenticate']))) answer = await request();
      return answer.status === 401 || answer.status === 403 ? undefined : answer;
    } catch (err) {
      if (this.options.signal?.aborted) throw err;
      return undefined;
    }
  }

  /** https, or with tlsVerify off https without verification and then http (buildah's order). */
  private async findBase(): Promise<string | undefined> {
    for (const scheme of this.options.tlsVerify ? ['https'] : ['https', 'http']) {
      try {
        const answer = await send(`${scheme}://${this.apiHost}/v2/`, { method: 'GET', headers: {}, insecure: !this.options.tlsVerify, ...(this.options.signal ? { signal: this.options.signal } : {}) });
        if (answer.status === 200 || answer.status === 401) return (this.base = `${scheme}://${this.apiHost}`);
      } catch (err) {
        if (this.options.signal?.aborted) throw err;
      }
    }
    return undefined;
  }

  private async authenticate(challenge: string | undefined): Promise<boolean> {
    const basic = await basicCredentials(this.options.authFile, this.host);
    if (challenge && /^basic\s/i.test(challenge)) {
      if (!basic) return false;
      this.authorization = `Basic ${basic}`;
      return true;
    }
    const bearer = parseBearerChallenge(challenge);
    if (!bearer) return false;
    const realm = new URL(bearer.realm!);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && !this.options.tlsVerify)) return false;
    if (bearer.service) realm.searchParams.set('service', bearer.service);
    realm.searchParams.set('scope', `repository:${this.name}:pull,push`);
    const answer = await send(realm.toString(), { method: 'GET', headers: basic ? { authorization: `Basic ${basic}` } : {}, insecure: !this.options.tlsVerify, ...(this.options.signal ? { signal: this.options.signal } : {}) });
    if (answer.status !== 200) return false;
    const parsed = JSON.parse(answer.body.toString('utf8')) as { token?: unknown; access_token?: unknown };
    const token = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : undefined;
    if (!token) return false;
    this.authorization = `Bearer ${token}`;
    return true;
  }
}
