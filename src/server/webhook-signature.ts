// GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//
// node:crypto rather than @octokit/webhooks-methods `verify`: that one takes the body as a string,
// so the raw bytes would be decoded to UTF-8 and re-encoded first (a copy of up to 25 MB, and
// invalid UTF-8 sequences collapse to U+FFFD, so two different bodies could share a signature).
// Here the HMAC covers exactly the bytes received, and the comparison is timingSafeEqual over the
// two 32-byte digests, so its time does not depend on where they differ.
//
// Two steps for `serve`: the header's shape is checked before a byte of the body is read (a
// request that cannot be signed is refused without being read), and the HMAC is updated chunk by
// chunk as the body streams in, so verifying a body never needs the body whole in memory.

import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';

const SIGNATURE_PATTERN = /^sha256=([0-9a-fA-F]{64})$/;

/** `sha256=<hex>` for a body, as GitHub computes it (tests, the benchmark). */
export function signWebhookBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * The 32 digest bytes of a well-formed `sha256=<64 hex>` header; undefined for a missing,
 * repeated, malformed or wrong-length one. Never throws.
 */
export function parseSignatureHeader(header: string | string[] | undefined): Buffer | undefined {
  if (typeof header !== 'string') return undefined;
  const match = SIGNATURE_PATTERN.exec(header.trim());
  return match ? Buffer.from(match[1]!, 'hex') : undefined;
}

/** An HMAC-SHA256 fed as the body arrives; `matches()` once, at the end. */
export class StreamingSignatureCheck {
  private readonly hmac: Hmac;

  constructor(
    secret: string,
    private readonly expected: Buffer,
  ) {
    this.hmac = createHmac('sha256', secret);
  }

  update(chunk: Buffer): void {
    this.hmac.update(chunk);
  }

  matches(): boolean {
    const digest = this.hmac.digest();
    return this.expected.length === digest.length && timingSafeEqual(this.expected, digest);
  }
}

/**
 * True when `header` is the HMAC-SHA256 of `body` under `secret`. Never throws: a missing,
 * malformed or wrong-length header is simply false.
 */
export function verifyWebhookSignature(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  const received = parseSignatureHeader(header);
  if (!received || secret.length === 0) return false;
  const check = new StreamingSignatureCheck(secret, received);
  check.update(body);
  return check.matches();
}
