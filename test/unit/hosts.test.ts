// The one host rule (core/hosts.ts) agrees with WHATWG URL parsing for every URL form: userinfo,
// ports (default, explicit, leading zeros), IPv6, decimal / hex / octal / short IPv4, trailing
// dots, mixed case, percent-encoded and Unicode host names.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { effectivePort, hostAllowed, hostLabel, isLoopbackHost, parseHostEntry, parseHostList } from '../../src/core/hosts.js';

/** A host the generator means, and how `URL#hostname` must read it. */
interface IntendedHost {
  text: string;
  hostname: string;
  loopback: boolean;
}

const randomCase = (text: string) =>
  fc.array(fc.boolean(), { minLength: text.length, maxLength: text.length }).map((upper) => [...text].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''));

const NAMES = ['github.com', 'evil.example', 'gitea.internal', 'localhost', 'evil.localhost', 'git-hub.com', 'github.com.evil.example'];

/** Domain names, in random case, sometimes with a trailing dot (another host), sometimes percent-encoded. */
const domainArb: fc.Arbitrary<IntendedHost> = fc
  .tuple(fc.constantFrom(...NAMES), fc.boolean(), fc.nat({ max: 40 }), fc.boolean())
  .chain(([name, trailingDot, at, percent]) =>
    randomCase(name).map((cased) => {
      let text = cased + (trailingDot ? '.' : '');
      // One letter percent-encoded: WHATWG decodes it before anything else.
      const index = at % text.length;
      if (percent && /[a-z]/i.test(text[index]!)) text = `${text.slice(0, index)}%${text.charCodeAt(index).toString(16)}${text.slice(index + 1)}`;
      const hostname = name + (trailingDot ? '.' : '');
      return { text, hostname, loopback: hostname === 'localhost' };
    }),
  );

const IPV4_POOL = [0x7f000001, 0x7f000102, 0x7fffffff, 0x0a000005, 0xa9fea9fe, 0xc0a80101, 0x08080808, 0x00000000];

function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** One IPv4 part in decimal, hex (either case of x and digits) or octal. */
const partArb = (value: number) =>
  fc.constantFrom('dec', 'hex', 'HEX', 'oct').map((radix) => {
    if (radix === 'dec') return String(value);
    if (radix === 'oct') return `0${value.toString(8)}`;
    const hex = `0x${value.toString(16)}`;
    return radix === 'HEX' ? hex.toUpperCase() : hex;
  });

/** An IPv4 address in 1 to 4 parts (the last part holds the remaining bytes), any radix per part, optional trailing dot. */
const ipv4Arb: fc.Arbitrary<IntendedHost> = fc
  .tuple(fc.oneof(fc.constantFrom(...IPV4_POOL), fc.integer({ min: 0, max: 0xffffffff })), fc.integer({ min: 1, max: 4 }), fc.boolean())
  .chain(([n, parts, trailingDot]) => {
    const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    const leading = bytes.slice(0, parts - 1);
    const last = bytes.slice(parts - 1).reduce((acc, b) => acc * 256 + b, 0);
    return fc.tuple(...[...leading, last].map(partArb)).map((written) => ({
      text: written.join('.') + (trailingDot ? '.' : ''),
      hostname: dotted(n),
      loopback: n >>> 24 === 127,
    }));
  });

const IPV6_POOL: Array<[string, string, boolean]> = [
  ['::1', '[::1]', true],
  ['0:0:0:0:0:0:0:1', '[::1]', true],
  ['0000::0001', '[::1]', true],
  ['::ffff:127.0.0.1', '[::ffff:7f00:1]', true],
  ['::ffff:7f00:2', '[::ffff:7f00:2]', true],
  ['2001:db8::1', '[2001:db8::1]', false],
  ['2001:0DB8:0:0:0:0:0:1', '[2001:db8::1]', false],
  ['fe80::1', '[fe80::1]', false],
  ['::ffff:a9fe:a9fe', '[::ffff:a9fe:a9fe]', false],
  ['::', '[::]', false],
];

const ipv6Arb: fc.Arbitrary<IntendedHost> = fc
  .constantFrom(...IPV6_POOL)
  .chain(([text, hostname, loopback]) => randomCase(text).map((cased) => ({ text: `[${cased}]`, hostname, loopback })));

const hostArb = fc.oneof(domainArb, ipv4Arb, ipv6Arb);

const userinfoArb = fc.constantFrom('', 'user@', 'user:pass@', 'github.com@', 'github.com:443@', '127.0.0.1@', 'x-access-token:tok%40en@', ':@', '@');
const portArb = fc.constantFrom('', ':80', ':443', ':8080', ':0443', ':00080', ':3000', ':1');
const schemeArb = fc.constantFrom('http', 'https').chain(randomCase);

const urlArb = fc.record({ scheme: schemeArb, userinfo: userinfoArb, host: hostArb, port: portArb, path: fc.constantFrom('/', '/acme/api.git', '') }).map((parts) => ({
  ...parts,
  text: `${parts.scheme}://${parts.userinfo}${parts.host.text}${parts.port}${parts.path}`,
}));

/** Configured entries, as a user may write them, with what each means (hostname, port or none). */
const ENTRIES: Array<[string, string, number | undefined]> = [
  ['github.com', 'github.com', undefined],
  ['GitHub.COM', 'github.com', undefined],
  ['github.com:443', 'github.com', 443],
  ['github.com:8080', 'github.com', 8080],
  ['github.com.', 'github.com.', undefined],
  ['evil.example:80', 'evil.example', 80],
  ['localhost:3000', 'localhost', 3000],
  ['127.0.0.1', '127.0.0.1', undefined],
  ['127.0.0.1:8080', '127.0.0.1', 8080],
  ['2130706433:3000', '127.0.0.1', 3000],
  ['0x0a000005', '10.0.0.5', undefined],
  ['169.254.169.254', '169.254.169.254', undefined],
  ['[::1]:8080', '[::1]', 8080],
  ['[0:0:0:0:0:0:0:1]', '[::1]', undefined],
  ['[2001:DB8::1]:443', '[2001:db8::1]', 443],
  ['gitea.internal:0443', 'gitea.internal', 443],
];

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
