import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PATH_COMPONENT_PATTERN,
  TAG_PATTERN,
  imageLabels,
  imageRepository,
  imageTags,
  repositoryNameFrom,
  sanitizePathComponent,
  sanitizeTag,
} from '../../src/core/naming.js';

const hex40 = fc.stringMatching(/^[0-9a-f]{40}$/);

describe('sanitizeTag', () => {
  it('keeps valid branch names as they are', () => {
    expect(sanitizeTag('main')).toBe('main');
    expect(sanitizeTag('release-1.2_x')).toBe('release-1.2_x');
  });

  it('replaces runs of other characters with one dash and drops leading dots and dashes', () => {
    expect(sanitizeTag('feature/login page')).toBe('feature-login-page');
    expect(sanitizeTag('feature//ü-x')).toBe('feature--x');
    expect(sanitizeTag('.hidden')).toBe('hidden');
    expect(sanitizeTag('--x')).toBe('x');
    expect(sanitizeTag('///')).toBeUndefined();
    expect(sanitizeTag('a'.repeat(300))).toHaveLength(128);
  });

  it('always gives a tag matching the OCI grammar, or nothing', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (branch) => {
        const tag = sanitizeTag(branch);
        if (tag !== undefined) expect(tag).toMatch(TAG_PATTERN);
      }),
      { numRuns: 2000 },
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (branch) => {
        const tag = sanitizeTag(branch);
        if (tag !== undefined) expect(sanitizeTag(tag)).toBe(tag);
      }),
    );
  });

  it('tells apart two branches that differ only in replaced characters by their sha tag', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,10}$/), hex40, hex40, (stem, c1, c2) => {
        fc.pre(c1.slice(0, 7) !== c2.slice(0, 7));
        const a = imageTags({ commit: c1, branch: `${stem}/x` });
        const b = imageTags({ commit: c2, branch: `${stem}_x`.replace('_', ':') });
        // same branch tag after sanitising…
        expect(a[1]).toBe(b[1]);
        // …but the sha tags differ, so the images are told apart.
        expect(a[0]).not.toBe(b[0]);
        for (const tag of [...a, ...b]) expect(tag).toMatch(TAG_PATTERN);
      }),
    );
  });
});

describe('imageTags', () => {
  const commit = '0123456789abcdef0123456789abcdef01234567';
  it('gives the sha tag and the branch', () => {
    expect(imageTags({ commit, branch: 'main' })).toEqual(['sha-0123456', 'main']);
  });
  it('marks a dirty worktree on the sha tag', () => {
    expect(imageTags({ commit, branch: 'main', dirty: true })).toEqual(['sha-0123456-dirty', 'main']);
  });
  it('uses the tag name for a tag build', () => {
    expect(imageTags({ commit, tag: 'v1.2.3' })).toEqual(['sha-0123456', 'v1.2.3']);
  });
});

describe('image repository names', () => {
  it('derives the name from a URL or a path', () => {
    expect(repositoryNameFrom('https://github.com/acme/My-Service.git')).toBe('My-Service');
    expect(repositoryNameFrom('/home/me/src/app/')).toBe('app');
  });
  it('lowercases and prefixes with the registry; monorepos get NAME/PROJECT', () => {
    expect(imageRepository({ name: 'My-Service' })).toBe('my-service');
    expect(imageRepository({ registry: '127.0.0.1:5000/team/', name: 'mono', project: 'Go-App' })).toBe('127.0.0.1:5000/team/mono/go-app');
  });
  it('always gives a valid path component', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (name) => {
        expect(sanitizePathComponent(name)).toMatch(PATH_COMPONENT_PATTERN);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('imageLabels', () => {
  it('carries revision, source and the commit time as created, and no ref name (it would change the digest per ref)', () => {
    const labels = imageLabels(
      { fullName: 'acme/app', commit: 'a'.repeat(40), branch: 'main', cloneUrl: 'https://example.test/acme/app.git' },
      1767225600,
    );
    expect(labels).toEqual({
      'org.opencontainers.image.revision': 'a'.repeat(40),
      'org.opencontainers.image.created': '2026-01-01T00:00:00.000Z',
      'org.opencontainers.image.source': 'https://example.test/acme/app.git',
    });
  });
});
