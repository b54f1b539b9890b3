// What of the cache service a sandboxed build command sees: the cache directories its environment
// points at, writable; the .NET CLI home, writable (first-run sentinels, NuGet's user config); the
// Maven home (settings.xml) read-only, since a build that rewrote it would redirect every later
// Maven build of the worker. Everything else of the work directory stays hidden.

import type { CacheKind } from '../cache/cache-service.js';

export interface CacheMountSource {
  path(kind: CacheKind): string;
  dotnetHome?(): string;
  mavenHome?(): string;
}

export function cacheMounts(cache: CacheMountSource, kinds: readonly CacheKind[]): { writable: string[]; readable: string[] } {
  return {
    writable: [...kinds.map((kind) => cache.path(kind)), ...(cache.dotnetHome ? [cache.dotnetHome()] : [])],
    readable: cache.mavenHome ? [cache.mavenHome()] : [],
  };
}
