// The HTTP API of an `oci-build serve` as the CLI's actions call it (cancel, rebuild): the URL and
// token checks, the bearer header, and the answers turned into typed errors with the README's exit
// codes — 2 for what the user can fix (a refused token, an unknown build, one that has ended),
// 3 for a server that cannot be reached or is unavailable.

import { InputError, ServiceUnavailableError, UsageError } from '../core/errors.js';

export interface ServerApi {
  readonly origin: string;
  /** POSTs `body` (JSON) to `path`; the answer's JSON, or the error its status means. */
  post<T>(path: string, body?: unknown): Promise<T>;
}

export function serverApi(server: string, token: string | undefined): ServerApi {
  let base: URL;
  try {
    base = new URL(server);
  } catch {
    throw new UsageError(`--server must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(server)}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError(`--server must be an http(s) URL, got ${JSON.stringify(server)}`);
  if (!token) throw new UsageError('--server needs an API token', { hint: "Pass --token TOKEN or set OCI_BUILD_API_TOKEN (one of the server's server.apiTokens)." });

  return {
    origin: base.origin,
    async post<T>(path: string, body?: unknown): Promise<T> {
      let response: Response;
      try {
        response = await fetch(new URL(path, base), {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      } catch (err) {
        const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
        throw new ServiceUnavailableError(`Cannot reach the oci-build server at ${base.origin}: ${cause}`, { hint: 'Check --server, and that `oci-build serve` runs there.' });
      }
      const text = await response.text();
      let answer: Record<string, unknown> = {};
      try {
        answer = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        // not JSON: the status says enough
      }
      if (response.ok) return answer as T;
      const message = typeof answer.error === 'string' ? answer.error : `HTTP ${response.status}`;
      const hint = typeof answer.hint === 'string' ? answer.hint : undefined;
      if (response.status === 401 || response.status === 403) {
        throw new UsageError(`The server at ${base.origin} refused the API token (HTTP ${response.status}): ${message}`, {
          hint: "Check --token / OCI_BUILD_API_TOKEN against the server's server.apiTokens.",
        });
      }
      if (response.status >= 400 && response.status < 500) throw new InputError(message, hint ? { hint } : {});
      throw new ServiceUnavailableError(`The server at ${base.origin} answered HTTP ${response.status}: ${message}`, hint ? { hint } : {});
    },
  };
}
