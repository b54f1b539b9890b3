// oci-build's own version, an input of every result key: read from the package's package.json,
// found upwards from this module (dist/cache/, dist/bundle/ or src/cache/ alike).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function ociBuildVersion(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'oci-build' && pkg.version) return (cached = pkg.version);
    } catch {
      // not here: one level up
    }
    dir = dirname(dir);
  }
  return (cached = 'unknown');
}
