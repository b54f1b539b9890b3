// Bearer tokens of the status API (server.apiTokens). Each token is compared as a SHA-256 digest
// with timingSafeEqual, and every configured token is checked (no early exit), so the time taken
// says nothing about how much of a token matched or which one did.

import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthResult =
  | { ok: true }
  | { ok: false; status: 401 | 403; message: string; wwwAuthenticate?: string };

const REALM = 'Bearer realm="oci-build"';

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export function createTokenCheck(tokens: readonly string[]): (authorization: string | undefined) => AuthResult {
  const digests = tokens.map(digest);
  return (authorization) => {
    if (digests.length === 0) {
      return {
        ok: false,
        status: 403,
        message: 'The status API is disabled: no API token is configured. Set server.apiTokens (OCI_BUILD_SERVER_API_TOKENS, comma-separated) and restart serve.',
      };
    }
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match) {
      return { ok: false, status: 401, message: 'An Authorization: Bearer <token> header is required', wwwAuthenticate: REALM };
    }
    const presented = digest(match[1]!);
    let valid = false;
    for (const expected of digests) valid = timingSafeEqual(presented, expected) || valid;
    if (!valid) {
      return { ok: false, status: 401, message: 'The bearer token is not valid', wwwAuthenticate: `${REALM}, error="invalid_token"` };
    }
    return { ok: true };
  };
}
