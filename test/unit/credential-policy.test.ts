// Where credentials may go (git/credential-policy.ts): its answer for every URL form equals the
// rule restated on what `new URL()` reads as the protocol, host name and port.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideCredentials, TOKEN_USERNAME } from '../../src/git/credential-policy.js';
import { ENTRIES, urlArb } from '../helpers/url-forms.js';

const DEFAULT_PORT: Record<string, number> = { 'http:': 80, 'https:': 443 };
const TOKEN = 'ghp_PolicyToken0123456789';

describe('decideCredentials: agrees with WHATWG URL parsing', () => {
  it('for every URL form, token and git.tokenHosts', () => {
    fc.assert(
      fc.property(urlArb, fc.subarray(ENTRIES), fc.boolean(), (generated, entries, withToken) => {
        const decision = decideCredentials(generated.text, { ...(withToken ? { token: TOKEN } : {}), tokenHosts: entries.map(([text]) => text) });

        const url = new URL(generated.text);
        // The generator knows which hosts are loopback; the policy must not need to be trusted for it.
        const secure = url.protocol === 'https:' || (url.protocol === 'http:' && generated.host.loopback);
        const port = url.port === '' ? DEFAULT_PORT[url.protocol]! : Number(url.port);
        const listed = entries.some(([, hostname, entryPort]) => hostname === url.hostname && (entryPort === undefined ? url.port === '' : entryPort === port));

        if (url.username !== '' || url.password !== '') {
          expect(decision.source).toBe('url');
          expect(decision.send).toBe(secure);
          if (decision.send) expect(decision.credentials).toEqual({ username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) });
        } else if (!withToken) {
          expect(decision).toEqual({ send: false, source: 'none' });
        } else {
          expect(decision.source).toBe('git.token');
          expect(decision.send).toBe(listed && secure);
          if (decision.send) expect(decision.credentials).toEqual({ username: TOKEN_USERNAME, password: TOKEN });
        }
        if (!decision.send && decision.source !== 'none') {
          expect(decision.failed).toEqual([...(decision.source === 'git.token' && !listed ? ['host'] : []), ...(!secure ? ['transport'] : [])]);
          // The reason names where, never what.
          expect(decision.reason).toContain(`${url.protocol}//${url.host}`);
          expect(JSON.stringify(decision)).not.toContain(TOKEN);
          expect(JSON.stringify(decision)).not.toMatch(/pass|tok%40en|tok@en/);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

describe('decideCredentials: cases', () => {
  const git = { token: TOKEN, tokenHosts: ['github.com'] };

  it('sends git.token to a listed host over HTTPS only', () => {
    expect(decideCredentials('https://github.com/acme/api.git', git).send).toBe(true);
    expect(decideCredentials('HTTPS://GITHUB.COM:443/acme/api.git', git).send).toBe(true);
    expect(decideCredentials('https://github.com:8443/acme/api.git', git)).toMatchObject({ send: false, failed: ['host'] });
    expect(decideCredentials('https://github.com./acme/api.git', git)).toMatchObject({ send: false, failed: ['host'] });
    expect(decideCredentials('http://github.com/acme/api.git', git)).toMatchObject({ send: false, failed: ['transport'] });
  });

  it('says why it withholds the token, and what to do', () => {
    const decision = decideCredentials('http://evil.example:8080/acme/api.git', git);
    expect(decision).toMatchObject({ send: false, source: 'git.token', failed: ['host', 'transport'] });
    if (decision.send || decision.source === 'none') throw new Error('unreachable');
    expect(decision.reason).toBe(
      'git.token is not sent to http://evil.example:8080 (evil.example:8080 is not in git.tokenHosts (github.com); plain HTTP to a host that is not a loopback address: the token goes over HTTPS only)',
    );
    expect(decision.hint).toBe('Add evil.example:8080 to git.tokenHosts (OCI_BUILD_GIT_TOKEN_HOSTS) if it should get the token, and use the https:// URL of the repository.');
  });

  it('plain HTTP carries credentials to loopback only, and only to a listed port', () => {
    expect(decideCredentials('http://127.0.0.1:8080/a/b.git', { token: TOKEN, tokenHosts: ['127.0.0.1:8080'] }).send).toBe(true);
    expect(decideCredentials('http://2130706433:8080/a/b.git', { token: TOKEN, tokenHosts: ['127.0.0.1:8080'] }).send).toBe(true);
    expect(decideCredentials('http://127.0.0.1:8081/a/b.git', { token: TOKEN, tokenHosts: ['127.0.0.1:8080'] })).toMatchObject({ send: false, failed: ['host'] });
    expect(decideCredentials('http://10.0.0.5/a/b.git', { token: TOKEN, tokenHosts: ['10.0.0.5'] })).toMatchObject({ send: false, failed: ['transport'] });
    expect(decideCredentials('http://evil.localhost/a/b.git', { token: TOKEN, tokenHosts: ['evil.localhost'] })).toMatchObject({ send: false, failed: ['transport'] });
  });

  it('credentials in the URL go to that host over HTTPS or loopback HTTP, not over plain HTTP elsewhere', () => {
    expect(decideCredentials('https://ci:s3cr%40t@git.example.com/a/b.git', git)).toEqual({ send: true, source: 'url', credentials: { username: 'ci', password: 's3cr@t' } });
    expect(decideCredentials('http://ci:secret@127.0.0.1:9/a/b.git', git).send).toBe(true);
    expect(decideCredentials('http://ci:secret@git.example.com/a/b.git', git)).toMatchObject({ send: false, source: 'url', failed: ['transport'] });
    // `github.com@` is userinfo: the host is evil.example, and git.token is not offered instead.
    expect(decideCredentials('http://github.com@evil.example/a/b.git', git)).toMatchObject({ send: false, source: 'url' });
    expect(decideCredentials('https://github.com@evil.example/a/b.git', git)).toMatchObject({ send: true, source: 'url', credentials: { username: 'github.com', password: '' } });
  });

  it('sends nothing when there is nothing to send', () => {
    expect(decideCredentials('https://github.com/a/b.git', { tokenHosts: ['github.com'] })).toEqual({ send: false, source: 'none' });
  });
});
