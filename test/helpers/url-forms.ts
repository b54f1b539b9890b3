// URL forms for property tests of the host rule (core/hosts.ts) and of what uses it: every way
// of writing a host that WHATWG URL parsing reads as one host name, with what that name must be.

import fc from 'fast-check';

/** A host the generator means, and how `URL#hostname` must read it. */
export interface IntendedHost {
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

export const hostArb = fc.oneof(domainArb, ipv4Arb, ipv6Arb);

const userinfoArb = fc.constantFrom('', 'user@', 'user:pass@', 'github.com@', 'github.com:443@', '127.0.0.1@', 'x-access-token:tok%40en@', ':@', '@');
const portArb = fc.constantFrom('', ':80', ':443', ':8080', ':0443', ':00080', ':3000', ':1');
const schemeArb = fc.constantFrom('http', 'https').chain(randomCase);

export const urlArb = fc.record({ scheme: schemeArb, userinfo: userinfoArb, host: hostArb, port: portArb, path: fc.constantFrom('/', '/acme/api.git', '') }).map((parts) => ({
  ...parts,
  text: `${parts.scheme}://${parts.userinfo}${parts.host.text}${parts.port}${parts.path}`,
}));

/** Configured entries, as a user may write them, with what each means (hostname, port or none). */
export const ENTRIES: Array<[string, string, number | undefined]> = [
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

