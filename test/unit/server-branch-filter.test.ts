import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileBranchFilter, globToRegExp } from '../../src/server/branch-filter.js';

describe('branch globs', () => {
  it('* stays within a segment, ** crosses segments, ? is one character', () => {
    expect(globToRegExp('release/*').test('release/1.0')).toBe(true);
    expect(globToRegExp('release/*').test('release/1.0/hotfix')).toBe(false);
    expect(globToRegExp('release/**').test('release/1.0/hotfix')).toBe(true);
    expect(globToRegExp('feature-?').test('feature-a')).toBe(true);
    expect(globToRegExp('feature-?').test('feature-ab')).toBe(false);
    expect(globToRegExp('*').test('main')).toBe(true);
    expect(globToRegExp('*').test('a/b')).toBe(false);
    expect(globToRegExp('**').test('a/b/c')).toBe(true);
  });

  it('regex characters in a glob are literal', () => {
    expect(globToRegExp('v1.0').test('v1x0')).toBe(false);
    expect(globToRegExp('a+(b)').test('a+(b)')).toBe(true);
    expect(globToRegExp('[x]').test('x')).toBe(false);
  });

  it('a glob without wildcards matches exactly itself', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }).filter((s) => !/[*?]/.test(s)), fc.string({ maxLength: 30 }), (glob, other) => {
        expect(globToRegExp(glob).test(glob)).toBe(true);
        expect(globToRegExp(glob).test(other)).toBe(other === glob);
      }),
    );
  });

  it('no include list builds every branch not excluded; exclude wins over include', () => {
    const all = compileBranchFilter({ include: [], exclude: [] });
    expect(all('anything/at/all')).toEqual({ build: true });
    const filter = compileBranchFilter({ include: ['main', 'release/**'], exclude: ['release/**/wip'] });
    expect(filter('main').build).toBe(true);
    expect(filter('release/2/rc1').build).toBe(true);
    expect(filter('release/2/wip')).toEqual({ build: false, reason: 'branch release/2/wip matches server.branches.exclude "release/**/wip"' });
    expect(filter('dev')).toEqual({ build: false, reason: 'branch dev matches none of server.branches.include' });
  });
});
