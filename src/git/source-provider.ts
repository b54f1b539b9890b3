// The SourceProvider port: a local directory is built in place, a Git URL through the mirror.

import type { HttpClient } from 'isomorphic-git';
import type { Config } from '../config/config.js';
import { systemClock, type Clock, type SourceProvider } from '../core/ports.js';
import { requestAdvertisement, type EarlyAdvertisement } from './advertisement.js';
import type { MirrorGitService } from './git-service.js';
import { parseRemoteUrl } from './url.js';

export interface SourceProviderDeps {
  workDir: string;
  git: Config['git'];
  clock?: Clock;
  /** isomorphic-git's HTTP client; the Node one by default. */
  http?: HttpClient;
  /** For tests: randomness of the retry jitter. */
  random?: () => number;
}

export function createSourceProvider(deps: SourceProviderDeps): SourceProvider {
  const clock = deps.clock ?? systemClock;
  // isomorphic-git and its HTTP client are loaded on first use (~100 ms of module loading that
  // commands without a build, like `status` or `--version`, should not pay).
  let http: Promise<HttpClient> | undefined;
  const httpClient = () => (http ??= deps.http ? Promise.resolve(deps.http) : import('isomorphic-git/http/node').then((m) => m.default));
  const early = new Map<string, EarlyAdvertisement>();
  let service: Promise<MirrorGitService> | undefined;
  const gitService = () =>
    (service ??= Promise.all([import('./git-service.js'), httpClient()]).then(
      ([{ MirrorGitService }, client]) =>
        new MirrorGitService({
          workDir: deps.workDir,
          git: deps.git,
          clock,
          http: client,
          early,
          ...(deps.random ? { random: deps.random } : {}),
        }),
    ));
  return {
    warm(source) {
      // Only the HTTP client is loaded for it, not isomorphic-git: the request runs while the
      // rest loads. A URL the sync would refuse is not asked for.
      if (source.kind !== 'git') return;
      let cloneUrl: string;
      try {
        cloneUrl = parseRemoteUrl(source.url).cloneUrl;
      } catch {
        return;
      }
      if (early.has(cloneUrl)) return;
      early.set(cloneUrl, { startedAt: clock.now().getTime(), response: httpClient().then((client) => requestAdvertisement(client, cloneUrl)) });
    },
    async checkout(source, job, ctx) {
      if (source.kind === 'local') {
        const { checkoutLocal } = await import('./local-source.js');
        return checkoutLocal(source.path, job, ctx);
      }
      const { checkoutRemote } = await import('./git-source.js');
      return checkoutRemote(source, job, ctx, { workDir: deps.workDir, service: await gitService() });
    },
  };
}
