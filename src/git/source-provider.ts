// The SourceProvider port: a local directory is built in place, a Git URL through the mirror.

import type { HttpClient } from 'isomorphic-git';
import type { Config } from '../config/config.js';
import { systemClock, type Clock, type SourceProvider } from '../core/ports.js';
import type { MirrorGitService } from './git-service.js';

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
  // isomorphic-git and its HTTP client are loaded on first use (~100 ms of module loading that
  // commands without a build, like `status` or `--version`, should not pay).
  let service: Promise<MirrorGitService> | undefined;
  const gitService = () =>
    (service ??= Promise.all([
      import('./git-service.js'),
      deps.http ? Promise.resolve(deps.http) : import('isomorphic-git/http/node').then((m) => m.default),
    ]).then(
      ([{ MirrorGitService }, http]) =>
        new MirrorGitService({
          workDir: deps.workDir,
          git: deps.git,
          clock: deps.clock ?? systemClock,
          http,
          ...(deps.random ? { random: deps.random } : {}),
        }),
    ));
  return {
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
