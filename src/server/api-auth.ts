// Bearer tokens of the status API (server.apiTokens). Each token is compared as a SHA-256 digest
// with timingSafeEqual, and every configured token is checked (no early exit), so the time taken
// says nothing about how much of a token matched or which one did.

import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthResult =
  /** `position`: which token of server.apiTokens matched (from 1): who cancelled, in a record. */
  | { ok: true; position: number }
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
    let position = 0;
    digests.forEach((expected, i) => {
      if (timingSafeEqual(presented, expected)) position = i + 1;
    });
    if (position === 0) {
      return { ok: false, status: 401, message: 'The bearer token is not valid', wwwAuthenticate: `${REALM}, error="invalid_token"` };
    }
    return { ok: true, position };
  };
}
