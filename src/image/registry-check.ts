// `oci-build doctor`: is the registry there? The distribution API's base endpoint answers
// 200 (open) or 401 (auth required) on any registry that is up; anything else means it is not usable.

import { registryHostOf } from './buildah-errors.js';
import { apiHost, send } from './registry-api.js';

export interface RegistryCheck {
  ok: boolean;
  detail?: string;
  fix?: string;
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
      const { status } = await send(url, { method: 'GET', headers: {}, insecure: !tlsVerify, timeoutMs });
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
