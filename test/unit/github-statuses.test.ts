// The GitHub side of commit statuses without a network: what an API failure means for the retry
// rules (rate limits by their headers, 5xx, 4xx), the fetch that sends the credential to
// github.apiUrl only, the github.* configuration, the installation id of a webhook, and the token
// kept out of every build's environment.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createBuildCommandRunner } from '../../src/compose.js';
import { parseConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/core/errors.js';
import type { CommandRunner } from '../../src/exec/run-command.js';
import { apiOnlyFetch, postError } from '../../src/notify/github-statuses.js';
import { StatusPostError } from '../../src/notify/status-queue.js';
import { decideWebhook } from '../../src/server/github-payload.js';
import { parseHostList } from '../../src/core/hosts.js';

const NOW = 1_700_000_000_000;

function requestError(status: number, headers: Record<string, string> = {}) {
  return Object.assign(new Error('API rate limit exceeded for installation.'), { status, response: { headers } });
}

describe('postError', () => {
  it('reads a rate limit from its headers, retries 5xx and network failures, never other 4xx', () => {
    const reset = String(NOW / 1000 + 30);
    expect(postError(requestError(403, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset }), NOW)).toMatchObject({ kind: 'rate-limit', status: 403, waitMs: 30_500 });
    expect(postError(requestError(429, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset }), NOW)).toMatchObject({ kind: 'rate-limit', waitMs: 30_500 });
    expect(postError(requestError(403, { 'retry-after': '7' }), NOW)).toMatchObject({ kind: 'rate-limit', waitMs: 7_000 });
    expect(postError(requestError(429), NOW)).toMatchObject({ kind: 'rate-limit', waitMs: 60_000 });
    // 403 with requests left: the token may not write here. Trying again cannot help.
    expect(postError(requestError(403, { 'x-ratelimit-remaining': '4999' }), NOW)).toMatchObject({ kind: 'client', status: 403 });
    expect(postError(requestError(404), NOW)).toMatchObject({ kind: 'client' });
    expect(postError(requestError(422), NOW)).toMatchObject({ kind: 'client' });
    expect(postError(requestError(502), NOW)).toMatchObject({ kind: 'server', status: 502 });
    expect(postError(requestError(503, { 'retry-after': '2' }), NOW)).toMatchObject({ kind: 'server', waitMs: 2_000 });
    // Octokit's RequestError for no answer at all: status 500, no response.
    expect(postError(Object.assign(new Error('connect ECONNREFUSED'), { status: 500 }), NOW)).toMatchObject({ kind: 'network' });
    const refused = new StatusPostError('refused', 'client');
    expect(postError(Object.assign(new Error('wrapped'), { status: 500, cause: refused }), NOW)).toBe(refused);
  });
});

describe('apiOnlyFetch', () => {
  it('refuses any origin but github.apiUrl\'s, however the URL is spelled, before connecting', async () => {
    const fetchApi = apiOnlyFetch('http://127.0.0.1:9/api/v3');
    for (const url of ['http://127.0.0.2:9/x', 'https://127.0.0.1:9/x', 'http://127.0.0.1:10/x', 'http://127.0.0.1:9@evil.example/x', 'http://localhost:9/x']) {
      await expect(fetchApi(url), url).rejects.toMatchObject({ kind: 'client', message: expect.stringContaining('refused to send the GitHub credential') });
    }
    // The API's own origin is reached (nothing listens on port 9: a network error, not a refusal).
    await expect(fetchApi('http://127.0.0.1:9/api/v3/repos/a/b/statuses/c')).rejects.not.toBeInstanceOf(StatusPostError);
  });

  it('never follows a redirect: the credential stays with github.apiUrl', async () => {
    const elsewhere: string[] = [];
    const other = createServer((req, res) => {
      elsewhere.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`);
      res.end('{}');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const api = createServer((_req, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${(other.address() as AddressInfo).port}/steal` });
      res.end();
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
      await expect(apiOnlyFetch(base)(`${base}/repos/a/b/statuses/c`, { method: 'POST', headers: { authorization: 'token ghp_secret' }, body: '{}' })).rejects.toMatchObject({
        kind: 'client',
        status: 307,
        message: expect.stringContaining('not followed'),
      });
      expect(elsewhere).toEqual([]);
    } finally {
      api.close();
      other.close();
    }
  });
});

describe('github.* configuration', () => {
  const parse = (github: Record<string, unknown>, env: Record<string, string> = {}) => parseConfig({ fileData: { github }, env });

  it('has its environment variables and defaults', () => {
    const config = parseConfig({ env: { OCI_BUILD_GITHUB_TOKEN: 'ghp_secret_token', OCI_BUILD_GITHUB_API_URL: 'https://ghe.example/api/v3/', OCI_BUILD_SERVER_PUBLIC_URL: 'https://ci.example/', OCI_BUILD_SERVER_BADGE_AUTH: 'true' } });
    expect(config.github).toEqual({ token: 'ghp_secret_token', apiUrl: 'https://ghe.example/api/v3' });
    expect(config.server).toMatchObject({ publicUrl: 'https://ci.example', badgeAuth: true });
    expect(parseConfig({ env: { OCI_BUILD_GITHUB_APP_ID: '42', OCI_BUILD_GITHUB_PRIVATE_KEY_FILE: 'key.pem' }, cwd: '/etc/oci' }).github).toEqual({ appId: 42, privateKeyFile: '/etc/oci/key.pem', apiUrl: 'https://api.github.com' });
    expect(parseConfig({}).github).toEqual({ apiUrl: 'https://api.github.com' });
    expect(parseConfig({}).server.badgeAuth).toBe(false);
  });

  it('refuses a token with an App, an App without its key, and an API over plain HTTP off loopback, all at once', () => {
    let error: ConfigError | undefined;
    try {
      parse({ token: 'ghp_x', appId: 1, apiUrl: 'http://ghe.example/api/v3' });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'github.appId: set either github.token or github.appId (with github.privateKeyFile), not both',
      "github.privateKeyFile: is required with github.appId: the GitHub App's private key (PEM file)",
      'github.apiUrl: must be https:// (plain http only to a loopback address): the GitHub token is sent there',
    ]);
    expect(() => parse({ token: 'ghp_x', apiUrl: 'http://127.0.0.1:8080' })).not.toThrow();
  });
});

describe('installation.id of a webhook', () => {
  const payload = (installation: unknown) => ({
    ref: 'refs/heads/main',
    before: '0'.repeat(40),
    after: 'a'.repeat(40),
    repository: { full_name: 'acme/app', clone_url: 'https://github.com/acme/app.git', html_url: 'https://github.com/acme/app' },
    ...(installation === undefined ? {} : { installation }),
  });
  const decide = (installation: unknown) =>
    decideWebhook({ event: 'push', delivery: '0b2c1a60-7f2b-11ee-8c90-0242ac120002' }, payload(installation), { image: { push: false, tlsVerify: true, buildArgs: {} }, allowedHosts: parseHostList(['github.com']) });

  it('is carried on the job when a GitHub App sent the push, and must be a positive integer', () => {
    const decided = decide({ id: 4242, node_id: 'x' });
    expect(decided.kind === 'job' && decided.job.installationId).toBe(4242);
    const plain = decide(undefined);
    expect(plain.kind === 'job' && 'installationId' in plain.job).toBe(false);
    for (const bad of [{ id: '1' }, { id: -1 }, { id: 1.5 }, 'x']) expect(() => decide(bad)).toThrow(/installation\.id is not a positive integer/);
  });
});

describe('github.token and a build', () => {
  it('never reaches a build command\'s environment, from the config or the worker\'s environment', async () => {
    const token = 'ghp_statusTokenThatMustStayHome0123';
    const config = parseConfig({ fileData: { build: { sandbox: 'none' } }, env: { OCI_BUILD_GITHUB_TOKEN: token } });
    expect(config.github.token).toBe(token);
    const seen: Array<Record<string, string | undefined>> = [];
    const run: CommandRunner = async (file, args, options) => {
      seen.push({ ...(options?.env ?? {}) });
      return { exitCode: 0, stdout: '', stderr: '', durationMs: 0, command: [file, ...args].join(' ') } as Awaited<ReturnType<CommandRunner>>;
    };
    const runner = createBuildCommandRunner(config, run, { PATH: '/usr/bin', OCI_BUILD_GITHUB_TOKEN: token, GITHUB_TOKEN: token, GH_TOKEN: token, HOME: '/root' });
    await runner('go', ['build'], { cwd: '/tmp', tree: '/tmp', log: { write() {} }, signal: new AbortController().signal } as Parameters<typeof runner>[2]);
    expect(seen).toHaveLength(1);
    expect(JSON.stringify(seen[0])).not.toContain(token);
    expect(seen[0]!.PATH).toBe('/usr/bin');
  });
});
