// The one host rule (core/hosts.ts) agrees with WHATWG URL parsing for every URL form: userinfo,
// ports (default, explicit, leading zeros), IPv6, decimal / hex / octal / short IPv4, trailing
// dots, mixed case, percent-encoded and Unicode host names.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { effectivePort, hostAllowed, hostLabel, isLoopbackHost, parseHostEntry, parseHostList } from '../../src/core/hosts.js';
import { ENTRIES, hostArb, urlArb } from '../helpers/url-forms.js';

const DEFAULT_PORT: Record<string, number> = { 'http:': 80, 'https:': 443 };

/** The rule restated on WHATWG's reading of the URL: same host name; no port listed = the scheme's default port only. */
function reference(url: URL, entries: Array<[string, string, number | undefined]>): boolean {
  const port = url.port === '' ? DEFAULT_PORT[url.protocol]! : Number(url.port);
  return entries.some(([, hostname, entryPort]) => hostname === url.hostname && (entryPort === undefined ? url.port === '' : entryPort === port));
}

describe('hostAllowed: agrees with WHATWG URL parsing', () => {
  it('for every URL form and every list of entries', () => {
    fc.assert(
      fc.property(urlArb, fc.subarray(ENTRIES), (generated, entries) => {
        const url = new URL(generated.text);
        // The generator and WHATWG agree on the host the client connects to…
        expect(url.hostname).toBe(generated.host.hostname);
        // …and the rule agrees with the reference on that reading.
        const parsed = parseHostList(entries.map(([text]) => text));
        expect(parsed).toEqual(entries.map(([, hostname, port]) => ({ hostname, ...(port !== undefined ? { port } : {}) })));
        expect(hostAllowed(url, parsed)).toBe(reference(url, entries));
        expect(isLoopbackHost(url.hostname)).toBe(generated.host.loopback);
        expect(effectivePort(url)).toBe(url.port === '' ? DEFAULT_PORT[url.protocol] : Number(url.port));
        // hostLabel names the host the way an entry that allows exactly this URL is written.
        expect(hostAllowed(url, [parseHostEntry(hostLabel(url))])).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('an entry written in any case, radix or IPv6 spelling means the same host', () => {
    fc.assert(
      fc.property(hostArb, fc.constantFrom('', ':8080'), (host, port) => {
        fc.pre(!host.text.includes('%'));
        expect(parseHostEntry(`${host.text}${port}`)).toEqual({ hostname: host.hostname, ...(port ? { port: 8080 } : {}) });
      }),
      { numRuns: 1000 },
    );
  });
});

describe('hostAllowed: cases', () => {
  const github = parseHostList(['github.com']);

  it('reads the host after the userinfo', () => {
    expect(hostAllowed(new URL('http://github.com@evil.example/'), github)).toBe(false);
    expect(hostAllowed(new URL('http://github.com@evil.example/'), parseHostList(['evil.example']))).toBe(true);
    expect(hostAllowed(new URL('https://evil.example@github.com/'), github)).toBe(true);
  });

  it('reads a decimal IPv4 address as the address', () => {
    expect(new URL('http://2130706433/').hostname).toBe('127.0.0.1');
    expect(hostAllowed(new URL('http://2130706433/'), parseHostList(['127.0.0.1']))).toBe(true);
    expect(isLoopbackHost(new URL('http://2130706433/').hostname)).toBe(true);
    expect(hostAllowed(new URL('http://0x7f.1/'), parseHostList(['127.0.0.1']))).toBe(true);
  });

  it('ignores case and the default port', () => {
    expect(hostAllowed(new URL('HTTPS://GITHUB.COM:443/'), github)).toBe(true);
    expect(hostAllowed(new URL('https://github.com:8443/'), github)).toBe(false);
    expect(hostAllowed(new URL('http://github.com:443/'), github)).toBe(false);
  });

  it('a trailing dot is another host unless listed with it', () => {
    expect(hostAllowed(new URL('https://github.com./'), github)).toBe(false);
    expect(hostAllowed(new URL('https://github.com./'), parseHostList(['github.com.']))).toBe(true);
  });

  it('refuses entries that are not a host or host:port', () => {
    for (const bad of ['', ' ', 'https://github.com', 'github.com/x', 'user@github.com', '::1', 'github.com:99999', 'a b']) {
      expect(() => parseHostEntry(bad), bad).toThrow(TypeError);
    }
  });

  it('loopback is 127/8, ::1 (also IPv4-mapped) and localhost, nothing a resolver could place elsewhere', () => {
    for (const host of ['127.0.0.1', '127.255.0.9', '[::1]', '[::ffff:7f00:1]', 'localhost']) expect(isLoopbackHost(host), host).toBe(true);
    // `*.localhost` goes to DNS here (nsswitch `files dns`), which may answer anything.
    for (const host of ['evil.localhost', 'localhost.', '0.0.0.0', '10.0.0.1', '[::]', '[fe80::1]', 'localhost.evil.example']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });
});
