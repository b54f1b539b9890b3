// `oci-build doctor`: is the registry there? The distribution API's base endpoint answers
// 200 (open) or 401 (auth required) on any registry that is up; anything else means it is not usable.

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { registryHostOf } from './buildah-errors.js';

export interface RegistryCheck {
  ok: boolean;
  detail?: string;
  fix?: string;
}

/** Docker Hub's API does not live at its name. */
function apiHost(host: string): string {
  return host === 'docker.io' ? 'registry-1.docker.io' : host;
}

function getStatus(url: string, insecure: boolean, timeoutMs: number): Promise<number> {
  return new Promise((resolveStatus, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { method: 'GET', timeout: timeoutMs, ...(insecure ? { rejectUnauthorized: false } : {}) }, (res: IncomingMessage) => {
      res.resume();
      resolveStatus(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * `registry` is `image.registry`: a host, optionally followed by a path prefix
 * (`127.0.0.1:5000/team`). With tlsVerify off, HTTPS without verification is tried first and then
 * plain HTTP, the order buildah itself uses for an insecure registry.
 */
export async function checkRegistry(registry: string, tlsVerify: boolean, options: { timeoutMs?: number } = {}): Promise<RegistryCheck> {
  const first = registry.replace(/^[a-z]+:\/\//, '').split('/')[0] ?? '';
  const host = apiHost(registry.includes('/') ? registryHostOf(registry) : first);
  const timeoutMs = options.timeoutMs ?? 5000;
  const attempts = tlsVerify ? [`https://${host}/v2/`] : [`https://${host}/v2/`, `http://${host}/v2/`];
  const failures: string[] = [];
  for (const url of attempts) {
    try {
      const status = await getStatus(url, !tlsVerify, timeoutMs);
      if (status === 200 || status === 401) {
        return { ok: true, detail: `${url} answered ${status}${status === 401 ? ' (credentials needed: image.authFile or `buildah login`)' : ''}` };
      }
      failures.push(`${url} answered ${status}`);
    } catch (err) {
      failures.push(`${url}: ${(err as Error).message}`);
    }
  }
  const plainHttp = tlsVerify && failures.some((f) => /wrong version number|EPROTO|packet length too long/i.test(f));
  return {
    ok: false,
    detail: failures.join('; '),
    fix: plainHttp
      ? `The registry ${host} seems to speak plain HTTP: set image.tlsVerify: false (or --no-tls-verify).`
      : `Start the registry ${host} or fix image.registry; it must answer GET /v2/ with 200 or 401.`,
  };
}
