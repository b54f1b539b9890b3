// oci-build's own version, an input of every result key: the package's package.json, two levels up
// from this module in dist/cache/, dist/bundle/ and src/cache/ alike. Through require, so that the
// single executable (scripts/sea.mjs) has it embedded: there is no package.json beside it.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

let cached: string | undefined;

export function ociBuildVersion(): string {
  cached ??= (require('../../package.json') as { version?: string }).version ?? 'unknown';
  return cached;
}
