// The one masking function: a secret, in any of its encodings, inside any line, never survives.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MASK,
  SecretRegistry,
  base64Middles,
  encodedForms,
  hasSecrets,
  maskSecrets,
  registerSecret,
  registerSecrets,
  secretMasker,
} from '../../src/core/secrets.js';

const TOKEN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-'.split('');
/** Token-like secrets: what GitHub, NATS and our own API tokens look like. */
const secretArb = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 4, maxLength: 64 });
/** Any text around it, any code point. */
const textArb = fc.string({ unit: 'binary', maxLength: 40 });
const bytesArb = fc.uint8Array({ maxLength: 24 });

type Encoding = 'plain' | 'encodeURIComponent' | 'form' | 'base64' | 'base64url';
const ENCODINGS: Record<Encoding, (secret: string) => string> = {
  plain: (s) => s,
  encodeURIComponent: (s) => encodeURIComponent(s),
  form: (s) => new URLSearchParams({ v: s }).toString().slice(2),
  base64: (s) => Buffer.from(s).toString('base64'),
  base64url: (s) => Buffer.from(s).toString('base64url'),
};

function registryOf(...secrets: string[]): SecretRegistry {
  const registry = new SecretRegistry();
  registry.registerAll(secrets);
  return registry;
}

/** Every byte string that a base64 run of `text` decodes to, from each of its first 4 offsets, in both alphabets. */
function decodedRuns(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (const [pattern, encoding] of [
    [/[A-Za-z0-9+/]+/g, 'base64'],
    [/[A-Za-z0-9_-]+/g, 'base64url'],
  ] as const) {
    for (const run of text.match(pattern) ?? []) {
      for (let offset = 0; offset < 4 && offset < run.length; offset++) out.push(Buffer.from(run.slice(offset), encoding));
    }
  }
  return out;
}

describe('maskSecrets: properties', () => {
  it('a secret in any encoding, inside any line, is gone', () => {
    fc.assert(
      fc.property(secretArb, textArb, textArb, fc.constantFrom(...(Object.keys(ENCODINGS) as Encoding[])), (secret, prefix, suffix, encoding) => {
        const encoded = ENCODINGS[encoding](secret);
        const masked = registryOf(secret).mask(prefix + encoded + suffix);
        expect(masked).not.toContain(encoded);
        expect(masked).toContain(MASK);
      }),
      { numRuns: 500 },
    );
  });

  it('inside a longer base64 string (any bytes before and after), no base64 run left decodes to the secret', () => {
    fc.assert(
      fc.property(secretArb, bytesArb, bytesArb, textArb, textArb, fc.boolean(), (secret, before, after, prefix, suffix, urlSafe) => {
        const payload = Buffer.concat([before, Buffer.from(secret), after]);
        const line = `${prefix}${payload.toString(urlSafe ? 'base64url' : 'base64')}${suffix}`;
        const masked = registryOf(secret).mask(line);
        // The test itself must be able to see a secret: unmasked, it is found.
        expect(decodedRuns(line).some((bytes) => bytes.includes(Buffer.from(secret)))).toBe(true);
        for (const bytes of decodedRuns(masked)) expect(bytes.includes(Buffer.from(secret))).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('is idempotent', () => {
    const pieceArb = (secret: string) =>
      fc.oneof(textArb, fc.constantFrom(...Object.values(ENCODINGS).map((enc) => enc(secret))), bytesArb.map((b) => Buffer.concat([b, Buffer.from(secret)]).toString('base64')));
    fc.assert(
      fc.property(
        secretArb.chain((secret) => fc.tuple(fc.constant(secret), fc.array(pieceArb(secret), { maxLength: 6 }))),
        ([secret, pieces]) => {
          const registry = registryOf(secret);
          const once = registry.mask(pieces.join(''));
          expect(registry.mask(once)).toBe(once);
        },
      ),
    );
  });

  it('leaves text without any form of a secret unchanged, and everything unchanged when none is registered', () => {
    fc.assert(
      fc.property(secretArb, textArb, (secret, text) => {
        fc.pre(!encodedForms(secret).some((form) => text.includes(form)));
        expect(registryOf(secret).mask(text)).toBe(text);
        expect(new SecretRegistry().mask(text)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it('masks several secrets at once, and a secret containing another whole', () => {
    fc.assert(
      fc.property(secretArb, secretArb, textArb, textArb, (inner, extra, prefix, suffix) => {
        // The text around holds neither on its own: masking removes secrets, not text that
        // happens to equal part of one (fast-check found prefix "ueOf" with extra "ueOf").
        fc.pre(![prefix, suffix].some((text) => text.includes(inner) || text.includes(extra)));
        const outer = `${inner}${extra}`;
        const registry = registryOf(inner, outer);
        expect(registry.mask(`${prefix}${outer}${suffix}`)).not.toContain(extra);
        expect(registry.mask(`${prefix}${inner}|${extra}${suffix}`)).not.toContain(inner);
      }),
    );
  });
});

describe('maskSecrets: cases', () => {
  const token = 'ghp_R3alLookingT0ken0123456789abcdef';

  it('masks the token inside an Authorization: Basic header, whatever the username', () => {
    // The usernames put the token at each of the three alignments within a base64 group.
    for (const username of ['x-access-token', 'oauth2', 'git']) {
      const header = `Authorization: Basic ${Buffer.from(`${username}:${token}`).toString('base64')}`;
      const masked = registryOf(token).mask(header);
      expect(masked.startsWith('Authorization: Basic ')).toBe(true);
      expect(masked).toContain(MASK);
      for (const part of masked.slice('Authorization: Basic '.length).split(MASK)) {
        expect(Buffer.from(part, 'base64').toString('latin1')).not.toContain(token.slice(0, 4));
      }
    }
  });

  it('masks the URL-encoded, form-encoded and JSON-escaped forms', () => {
    const secret = 'p@ss word/"quoted"&more';
    const registry = registryOf(secret);
    expect(registry.mask(`https://u:${encodeURIComponent(secret)}@host/`)).toBe('https://u:***@host/');
    expect(registry.mask(`password=${new URLSearchParams({ a: secret }).toString().slice(2)}&x=1`)).toBe('password=***&x=1');
    expect(registry.mask(JSON.stringify({ msg: `failed: ${secret}` }))).toBe('{"msg":"failed: ***"}');
  });

  it('ignores empty and short values (fewer than 4 characters)', () => {
    const registry = registryOf('', 'abc');
    expect(registry.size).toBe(0);
    expect(registry.mask('abc abc YWJj')).toBe('abc abc YWJj');
    registry.register('abcd');
    expect(registry.mask('abcd and YWJjZA==')).toBe('*** and ***');
  });

  it('the stable base64 middles are what base64 of a longer string contains, at each alignment', () => {
    const bytes = Buffer.from(token);
    const middles = base64Middles(bytes);
    expect(middles).toHaveLength(3);
    for (let align = 0; align < 3; align++) {
      const around = Buffer.concat([Buffer.from('xyz'.slice(0, align)), bytes, Buffer.from('tail')]).toString('base64');
      expect(around).toContain(middles[align]);
    }
  });
});

describe('the process-wide registry', () => {
  it('is identity until a secret is registered, then masks it everywhere, plus per-use extras', () => {
    expect(hasSecrets()).toBe(false);
    expect(maskSecrets('nothing s3cret-value here')).toBe('nothing s3cret-value here');
    const withExtra = secretMasker(['extra-secret-1']);
    expect(withExtra('extra-secret-1 s3cret-value')).toBe('*** s3cret-value');

    registerSecret('s3cret-value');
    registerSecrets([undefined, '', 'other-secret-2']);
    expect(hasSecrets()).toBe(true);
    expect(maskSecrets('a s3cret-value b other-secret-2 c')).toBe('a *** b *** c');
    // A masker made before a registration follows it.
    expect(withExtra('extra-secret-1 s3cret-value')).toBe('*** ***');
    expect(secretMasker()(`Basic ${Buffer.from('s3cret-value').toString('base64')}`)).toBe('Basic ***');
  });
});
