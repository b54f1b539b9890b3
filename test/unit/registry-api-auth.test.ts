// image/registry-api.ts's authentication, against an in-process server that speaks the
// distribution spec's two schemes: the token flow (a 401 with a Bearer challenge, a token from the
// realm it names, asked with the auth file's credentials and the repository's scope) and Basic.
// The API calls themselves run against the real docker-registry in test/integration/registry-api.test.ts.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBearerChallenge, RegistryApi, splitRepository } from '../../src/image/registry-api.js';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const CREDENTIALS = Buffer.from('robot:s3cret-Registry-Pass').toString('base64');
const TOKEN = 'registry-token-0123';

let server: Server;
let host: string;
let dir: string;
let scheme: 'bearer' | 'basic' = 'bearer';
const seen: string[] = [];

function authorized(req: IncomingMessage): boolean {
  return req.headers.authorization === (scheme === 'bearer' ? `Bearer ${TOKEN}` : `Basic ${CREDENTIALS}`);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-build-registry-auth-'));
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push(`${req.method} ${url.pathname}${url.search} ${req.headers.authorization?.split(' ')[0] ?? 'anonymous'}`);
    if (url.pathname === '/token') {
      const ok = req.headers.authorization === `Basic ${CREDENTIALS}` && url.searchParams.get('service') === 'reg.test' && url.searchParams.get('scope') === 'repository:team/app:pull,push';
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end(ok ? JSON.stringify({ token: TOKEN }) : '{}');
      return;
    }
    if (!authorized(req)) {
      const challenge = scheme === 'bearer' ? `Bearer realm="http://${host}/token",service="reg.test",scope="repository:team/app:pull"` : 'Basic realm="registry"';
      res.writeHead(401, { 'www-authenticate': challenge }).end();
      return;
    }
    if (url.pathname === `/v2/team/app/manifests/${DIGEST}`) res.writeHead(200, { 'docker-content-digest': DIGEST }).end();
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolveClose) => server.close(resolveClose));
  await rm(dir, { recursive: true, force: true });
});

async function authFile(auths: Record<string, { auth: string }>): Promise<string> {
  const path = join(dir, `auth-${seen.length}.json`);
  await writeFile(path, JSON.stringify({ auths }));
  return path;
}

describe('RegistryApi authentication', () => {
  it('follows a Bearer challenge: a token from its realm, asked with the auth file credentials and the push scope', async () => {
    scheme = 'bearer';
    seen.length = 0;
    const api = RegistryApi.for(`${host}/team/app`, { tlsVerify: false, authFile: await authFile({ [host]: { auth: CREDENTIALS } }) })!;
    expect(await api.hasManifest(DIGEST)).toBe(true);
    expect(seen.filter((line) => !line.startsWith('GET /v2/ '))).toEqual([
      `HEAD /v2/team/app/manifests/${DIGEST} anonymous`,
      'GET /token?service=reg.test&scope=repository%3Ateam%2Fapp%3Apull%2Cpush Basic',
      `HEAD /v2/team/app/manifests/${DIGEST} Bearer`,
    ]);
    // The token is kept for the next call.
    seen.length = 0;
    expect(await api.hasManifest(`sha256:${'d'.repeat(64)}`)).toBe(false);
    expect(seen).toEqual([`HEAD /v2/team/app/manifests/sha256:${'d'.repeat(64)} Bearer`]);
  });

  it('answers Basic with the auth file credentials of that host only', async () => {
    scheme = 'basic';
    expect(await RegistryApi.for(`${host}/team/app`, { tlsVerify: false, authFile: await authFile({ [host]: { auth: CREDENTIALS } }) })!.hasManifest(DIGEST)).toBe(true);
    expect(await RegistryApi.for(`${host}/team/app`, { tlsVerify: false, authFile: await authFile({ 'other.example': { auth: CREDENTIALS } }) })!.hasManifest(DIGEST)).toBeUndefined();
  });

  it('is unsure (undefined) without credentials, or with ones refused, and never retries in a loop', async () => {
    scheme = 'bearer';
    seen.length = 0;
    expect(await RegistryApi.for(`${host}/team/app`, { tlsVerify: false })!.hasManifest(DIGEST)).toBeUndefined();
    const wrong = Buffer.from('robot:wrong').toString('base64');
    expect(await RegistryApi.for(`${host}/team/app`, { tlsVerify: false, authFile: await authFile({ [host]: { auth: wrong } }) })!.hasManifest(DIGEST)).toBeUndefined();
    expect(seen.filter((line) => line.startsWith('HEAD'))).toHaveLength(2);
  });
});

describe('parsing', () => {
  it('reads the parameters of a Bearer challenge, quoted or not', () => {
    expect(parseBearerChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"')).toEqual({
      realm: 'https://auth.example/token',
      service: 'registry.example',
      scope: 'repository:a/b:pull',
    });
    expect(parseBearerChallenge('bearer realm=https://auth.example/token')).toEqual({ realm: 'https://auth.example/token' });
    expect(parseBearerChallenge('Basic realm="x"')).toBeUndefined();
    expect(parseBearerChallenge('Bearer service="x"')).toBeUndefined();
    expect(parseBearerChallenge(undefined)).toBeUndefined();
  });

  it('splits a repository into the API host and the name; Docker Hub is answered at registry-1.docker.io', () => {
    expect(splitRepository('127.0.0.1:5000/team/app')).toEqual({ host: '127.0.0.1:5000', apiHost: '127.0.0.1:5000', name: 'team/app' });
    expect(splitRepository('docker.io/library/busybox')).toEqual({ host: 'docker.io', apiHost: 'registry-1.docker.io', name: 'library/busybox' });
    for (const bad of ['app', '/app', 'host/../etc', 'host/App', 'host/a//b']) expect(splitRepository(bad)).toBeUndefined();
  });
});
