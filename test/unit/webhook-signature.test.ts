import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHmac } from 'node:crypto';
import { StreamingSignatureCheck, parseSignatureHeader, signWebhookBody, verifyWebhookSignature } from '../../src/server/webhook-signature.js';

const secret = fc.string({ minLength: 1, maxLength: 64 });
const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), maxLength: 70 });
const body = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a));

describe('webhook signature', () => {
  it('matches GitHub\'s documented example', () => {
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const header = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
    expect(signWebhookBody("It's a Secret to Everybody", 'Hello, World!')).toBe(header);
    expect(verifyWebhookSignature("It's a Secret to Everybody", Buffer.from('Hello, World!'), header)).toBe(true);
  });

  it('a signature made with the secret verifies (any body, any secret)', () => {
    fc.assert(
      fc.property(secret, body, (s, b) => {
        expect(verifyWebhookSignature(s, b, signWebhookBody(s, b))).toBe(true);
        // GitHub sends lowercase hex; uppercase is the same digest.
        expect(verifyWebhookSignature(s, b, `sha256=${signWebhookBody(s, b).slice(7).toUpperCase()}`)).toBe(true);
      }),
    );
  });

  it('any change to the body fails', () => {
    fc.assert(
      fc.property(secret, body.filter((b) => b.length > 0), fc.nat(), fc.integer({ min: 1, max: 255 }), (s, b, at, xor) => {
        const signature = signWebhookBody(s, b);
        const changed = Buffer.from(b);
        changed[at % changed.length] = changed[at % changed.length]! ^ xor;
        expect(verifyWebhookSignature(s, changed, signature)).toBe(false);
        expect(verifyWebhookSignature(s, Buffer.concat([b, Buffer.from(' ')]), signature)).toBe(false);
      }),
    );
  });

  it('any change to the signature fails, and a different secret fails', () => {
    fc.assert(
      fc.property(secret, secret, body, fc.integer({ min: 0, max: 63 }), (s, other, b, at) => {
        const signature = signWebhookBody(s, b);
        const hex = signature.slice('sha256='.length);
        const flipped = hex.slice(0, at) + (hex[at] === '0' ? '1' : '0') + hex.slice(at + 1);
        expect(verifyWebhookSignature(s, b, `sha256=${flipped}`)).toBe(false);
        if (other !== s) expect(verifyWebhookSignature(other, b, signature)).toBe(false);
      }),
    );
  });

  it('a wrong-length, malformed or missing signature is false and never throws', () => {
    fc.assert(
      fc.property(secret, body, fc.oneof(fc.string(), hex.map((h) => `sha256=${h}`), fc.constant(undefined)), (s, b, header) => {
        const valid = header === signWebhookBody(s, b);
        expect(() => verifyWebhookSignature(s, b, header)).not.toThrow();
        expect(verifyWebhookSignature(s, b, header)).toBe(valid);
      }),
    );
    const b = Buffer.from('{}');
    const full = signWebhookBody('s', b);
    expect(verifyWebhookSignature('s', b, full.slice(0, -2))).toBe(false);
    expect(verifyWebhookSignature('s', b, `${full}00`)).toBe(false);
    expect(verifyWebhookSignature('s', b, full.replace('sha256=', 'sha1='))).toBe(false);
    expect(verifyWebhookSignature('s', b, ['a', 'b'])).toBe(false);
    expect(verifyWebhookSignature('', b, `sha256=${createHmac('sha256', '').update(b).digest('hex')}`)).toBe(false);
  });

  it('the streamed check agrees with the one-shot check for any split of the body into chunks', () => {
    fc.assert(
      fc.property(secret, body, fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (s, b, cuts, tamper) => {
        const header = tamper ? `sha256=${'0'.repeat(64)}` : signWebhookBody(s, b);
        const check = new StreamingSignatureCheck(s, parseSignatureHeader(header)!);
        const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
        let from = 0;
        for (const at of [...points, b.length]) {
          check.update(b.subarray(from, at));
          from = at;
        }
        expect(check.matches()).toBe(verifyWebhookSignature(s, b, header));
      }),
    );
  });

  it('the header shape is checked alone: sha256= and exactly 64 hex digits', () => {
    expect(parseSignatureHeader(`sha256=${'a'.repeat(64)}`)).toHaveLength(32);
    for (const bad of [undefined, '', 'sha256=00', `sha256=${'a'.repeat(63)}`, `sha256=${'a'.repeat(65)}`, `sha1=${'a'.repeat(40)}`, `sha256=${'g'.repeat(64)}`, [`sha256=${'a'.repeat(64)}`]]) {
      expect(parseSignatureHeader(bad)).toBeUndefined();
    }
  });
});
