// The GitHub REST API's side of commit statuses: Octokit (`@octokit/core`), authenticated by a
// token or as a GitHub App installation (`@octokit/auth-app` makes the JWT and the installation
// tokens, and caches them), one `POST /repos/{owner}/{repo}/statuses/{sha}` per status. Failures
// become StatusPostErrors whose kind the retry rules read (status-queue.ts).
//
// The credential goes to github.apiUrl and nowhere else: every request Octokit makes passes a fetch
// that refuses any other scheme, host or port (core/hosts.ts, as URL parsing reads it) and never
// follows a redirect (a 3xx is an error), so neither a misbuilt URL nor an API answer can send the
// token to another host.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Octokit } from '@octokit/core';
import { createAppAuth } from '@octokit/auth-app';
import { ConfigError } from '../core/errors.js';
import { hostAllowed, hostLabel, parseHostEntry } from '../core/hosts.js';
import { maskSecrets, registerSecret, registerSecrets } from '../core/secrets.js';
import { StatusPostError, type StatusRequest } from './status-queue.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

/** GitHub's REST API version we speak (the `X-GitHub-Api-Version` header). */
export const GITHUB_API_VERSION = '2022-11-28';
/** One request to the API; a slower answer counts as a network failure (retried). */
const REQUEST_TIMEOUT_MS = 15_000;

export type GithubAuth = { kind: 'token'; token: string } | { kind: 'app'; appId: number; privateKey: string };

export interface StatusPosterOptions {
  /** github.apiUrl, without a trailing slash. */
  apiUrl: string;
  auth: GithubAuth;
  /** For Octokit's own warnings (deprecations); masked by the caller's logger. */
  warn?: (message: string) => void;
}

export type StatusPoster = (request: StatusRequest) => Promise<void>;

/** The GitHub App's private key, from github.privateKeyFile; registered as a secret. */
export function readPrivateKey(path: string): string {
  let key: string;
  try {
    key = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read the GitHub App private key ${path}`, [{ path: 'github.privateKeyFile', message: (err as Error).message }], {
      hint: 'Download the key from the App\'s settings (Private keys → Generate) and point github.privateKeyFile (OCI_BUILD_GITHUB_PRIVATE_KEY_FILE) at it.',
    });
  }
  if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(key)) {
    throw new ConfigError(`${path} is not a PEM private key`, [{ path: 'github.privateKeyFile', message: 'expected -----BEGIN RSA PRIVATE KEY----- (as GitHub generates it) or -----BEGIN PRIVATE KEY-----' }]);
  }
  // The whole PEM, and its base64 body on one line (how a key pasted into an environment variable may appear).
  registerSecrets([key, key.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')]);
  return key;
}

/** A fetch for Octokit that reaches github.apiUrl's origin only and follows no redirect. */
export function apiOnlyFetch(apiUrl: string, timeoutMs = REQUEST_TIMEOUT_MS): typeof fetch {
  const base = new URL(apiUrl);
  const allowed = [parseHostEntry(hostLabel(base))];
  return async (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    if (url.protocol !== base.protocol || !hostAllowed(url, allowed)) {
      throw new StatusPostError(`refused to send the GitHub credential to ${url.protocol}//${hostLabel(url)}: only github.apiUrl (${base.protocol}//${hostLabel(base)}) gets it`, 'client');
    }
    const response = await fetch(url, { ...init, redirect: 'manual', signal: init?.signal ?? AbortSignal.timeout(timeoutMs) });
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      throw new StatusPostError(`${base.protocol}//${hostLabel(base)} answered ${response.status} (a redirect); not followed: the GitHub credential goes to github.apiUrl only`, 'client', response.status);
    }
    return response;
  };
}

/** Posts one status per call; throws StatusPostError. */
export function createStatusPoster(options: StatusPosterOptions): StatusPoster {
  const warn = (message: string) => options.warn?.(maskSecrets(message));
  const octokit = new Octokit({
    baseUrl: options.apiUrl,
    userAgent: `oci-build/${version}`,
    request: { fetch: apiOnlyFetch(options.apiUrl) },
    log: { debug: () => undefined, info: () => undefined, warn, error: warn },
  });
  const headers = { accept: 'application/vnd.github+json', 'x-github-api-version': GITHUB_API_VERSION };
  let authorization: (request: StatusRequest) => Promise<string>;
  if (options.auth.kind === 'token') {
    const token = options.auth.token;
    registerSecret(token);
    authorization = async () => `token ${token}`;
  } else {
    const appAuth = createAppAuth({ appId: options.auth.appId, privateKey: options.auth.privateKey, request: octokit.request, log: { warn } });
    /** Installations found by repository for jobs that carry none (a webhook not sent by the App). */
    const installations = new Map<string, number>();
    const installationOf = async (request: StatusRequest): Promise<number> => {
      if (request.installationId !== undefined) return request.installationId;
      const key = `${request.target.owner}/${request.target.repo}`.toLowerCase();
      const known = installations.get(key);
      if (known !== undefined) return known;
      const { token: jwt } = await appAuth({ type: 'app' });
      const { data } = await octokit.request('GET /repos/{owner}/{repo}/installation', { owner: request.target.owner, repo: request.target.repo, headers: { ...headers, authorization: `bearer ${jwt}` } });
      installations.set(key, data.id);
      return data.id;
    };
    authorization = async (request) => {
      const { token } = await appAuth({ type: 'installation', installationId: await installationOf(request) });
      registerSecret(token);
      return `token ${token}`;
    };
  }
  return async (request) => {
    try {
      const { target, status } = request;
      await octokit.request('POST /repos/{owner}/{repo}/statuses/{sha}', {
        owner: target.owner,
        repo: target.repo,
        sha: target.sha,
        state: status.state,
        context: status.context,
        description: status.description,
        ...(status.targetUrl ? { target_url: status.targetUrl } : {}),
        headers: { ...headers, authorization: await authorization(request) },
      });
    } catch (err) {
      throw postError(err);
    }
  };
}

interface OctokitFailure {
  status?: number;
  message?: string;
  cause?: unknown;
  response?: { headers?: Record<string, string | number | undefined> };
}

/**
 * What a failed request means for the retry rules. A rate limit (primary: 403/429 with
 * `x-ratelimit-remaining: 0`, wait until `x-ratelimit-reset`; secondary: `Retry-After`) waits; a
 * 5xx or no answer is retried; any other 4xx is not.
 */
export function postError(err: unknown, now: number = Date.now()): StatusPostError {
  if (err instanceof StatusPostError) return err;
  const failure = (err ?? {}) as OctokitFailure;
  if (failure.cause instanceof StatusPostError) return failure.cause;
  const message = maskSecrets(`GitHub: ${failure.message ?? String(err)}`).slice(0, 500);
  const status = typeof failure.status === 'number' ? failure.status : undefined;
  const headers = failure.response?.headers;
  if (status === undefined || !headers) return new StatusPostError(message, 'network', status);
  const header = (name: string) => {
    const value = headers[name];
    return value === undefined ? undefined : Number(value);
  };
  const retryAfter = header('retry-after');
  const remaining = header('x-ratelimit-remaining');
  const reset = header('x-ratelimit-reset');
  if (status === 403 || status === 429) {
    if (retryAfter !== undefined && Number.isFinite(retryAfter)) return new StatusPostError(message, 'rate-limit', status, Math.max(0, retryAfter * 1000));
    if (remaining === 0 && reset !== undefined && Number.isFinite(reset)) return new StatusPostError(message, 'rate-limit', status, Math.max(0, reset * 1000 - now) + 500);
    if (status === 429) return new StatusPostError(message, 'rate-limit', status, 60_000);
  }
  if (status >= 500) return new StatusPostError(message, 'server', status, retryAfter !== undefined && Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined);
  return new StatusPostError(message, 'client', status);
}
