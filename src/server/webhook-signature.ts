// GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//
// node:crypto rather than @octokit/webhooks-methods `verify`: that one takes the body as a string,
// so the raw bytes would be decoded to UTF-8 and re-encoded first (a copy of up to 25 MB, and
// invalid UTF-8 sequences collapse to U+FFFD, so two different bodies could share a signature).
// Here the HMAC covers exactly the bytes received, and the comparison is timingSafeEqual over the
// two 32-byte digests, so its time does not depend on where they differ.

import { createHmac, timingSafeEqual } from 'node:crypto';

const SIGNATURE_PATTERN = /^sha256=([0-9a-fA-F]{64})$/;

/** `sha256=<hex>` for a body, as GitHub computes it (tests, the benchmark). */
export function signWebhookBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * True when `header` is the HMAC-SHA256 of `body` under `secret`. Never throws: a missing,
 * malformed or wrong-length header is simply false.
 */
export function verifyWebhookSignature(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || secret.length === 0) return false;
  const match = SIGNATURE_PATTERN.exec(header.trim());
  if (!match) return false;
  const received = Buffer.from(match[1]!, 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  return received.length === expected.length && timingSafeEqual(received, expected);
}
