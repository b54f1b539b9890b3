// Which credentials a Git remote may be sent: a pure decision on the URL (as WHATWG URL parsing,
// the one host rule of core/hosts.ts, reads it) and the config. isomorphic-git sends what onAuth
// returns to whatever host asked, so onAuth is only built when this says `send`.
//
// - `git.token` goes only to a host listed in `git.tokenHosts`, and only over HTTPS (plain HTTP
//   only to a loopback address, whose traffic never leaves the machine).
// - Credentials written into the URL (`https://user:token@host/…`) were put there for that host
//   by whoever wrote the URL, so the host list does not apply; the transport rule does.

import { hostAllowed, hostLabel, isLoopbackHost, parseHostList } from '../core/hosts.js';

export interface UrlCredentials {
  username: string;
  password: string;
}

export type CredentialSource = 'url' | 'git.token';

export type CredentialDecision =
  | { send: true; source: CredentialSource; credentials: UrlCredentials }
  | {
      send: false;
      source: CredentialSource;
      /** Why they are withheld, for the error when the remote then asks (401). */
      reason: string;
      hint: string;
      /** Each rule the URL fails. */
      failed: Array<'host' | 'transport'>;
    }
  /** Nothing to send: no token configured and none in the URL. */
  | { send: false; source: 'none' };

/** The username isomorphic-git sends with `git.token` (what GitHub and Gitea expect for a token). */
export const TOKEN_USERNAME = 'x-access-token';

/** HTTPS, or plain HTTP to a loopback address. */
export function secureTransport(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname));
}

export function decideCredentials(rawUrl: string, git: { token?: string; tokenHosts: readonly string[] }): CredentialDecision {
  const url = new URL(rawUrl);
  const origin = `${url.protocol}//${url.host}`;
  const plainHttp = !secureTransport(url);
  const transportWhy = `plain ${url.protocol.slice(0, -1).toUpperCase()} to a host that is not a loopback address`;

  if (url.username !== '' || url.password !== '') {
    const credentials = { username: decode(url.username), password: decode(url.password) };
    if (!plainHttp) return { send: true, source: 'url', credentials };
    return {
      send: false,
      source: 'url',
      reason: `the credentials in the URL are not sent to ${origin} (${transportWhy})`,
      hint: 'Use the https:// URL of the repository: credentials go over plain HTTP only to a loopback address.',
      failed: ['transport'],
    };
  }

  if (!git.token) return { send: false, source: 'none' };
  const listed = hostAllowed(url, parseHostList(git.tokenHosts));
  if (listed && !plainHttp) return { send: true, source: 'git.token', credentials: { username: TOKEN_USERNAME, password: git.token } };
  const label = hostLabel(url);
  const why: string[] = [];
  const hints: string[] = [];
  const failed: Array<'host' | 'transport'> = [];
  if (!listed) {
    failed.push('host');
    why.push(`${label} is not in git.tokenHosts${git.tokenHosts.length > 0 ? ` (${git.tokenHosts.join(', ')})` : ''}`);
    hints.push(`add ${label} to git.tokenHosts (OCI_BUILD_GIT_TOKEN_HOSTS) if it should get the token`);
  }
  if (plainHttp) {
    failed.push('transport');
    why.push(`${transportWhy}: the token goes over HTTPS only`);
    hints.push('use the https:// URL of the repository');
  }
  const hint = hints.join(', and ');
  return {
    send: false,
    source: 'git.token',
    reason: `git.token is not sent to ${origin} (${why.join('; ')})`,
    hint: hint.charAt(0).toUpperCase() + hint.slice(1) + '.',
    failed,
  };
}

/** `URL#username`/`#password` stay percent-encoded; a malformed escape is kept as written. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
