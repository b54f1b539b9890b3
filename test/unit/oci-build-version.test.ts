import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ociBuildVersion } from '../../src/cache/oci-build-version.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

describe('ociBuildVersion', () => {
  it("is the package's version (what the single executable embeds)", () => {
    const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(ociBuildVersion()).toBe(version);
  });
});
