import { isAbsolute, relative } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { checkRefName, mirrorLockPath, mirrorPath, parseRemoteUrl, redactUrl, worktreeName } from '../../src/git/url.js';

describe('parseRemoteUrl', () => {
  it('splits a URL into a credential-free clone URL, owner, name and credentials', () => {
    expect(parseRemoteUrl('https://user:p%40ss@GitHub.com/Acme/Widget.git')).toEqual({
      cloneUrl: 'https://github.com/Acme/Widget.git',
      host: 'github.com',
      owner: ['Acme'],
      name: 'Widget',
      fullName: 'Acme/Widget',
      credentials: { username: 'user', password: 'p@ss' },
    });
    expect(parseRemoteUrl('http://127.0.0.1:8080/group/sub/repo')).toMatchObject({ host: '127.0.0.1:8080', owner: ['group', 'sub'], name: 'repo', fullName: 'group/sub/repo' });
    expect(parseRemoteUrl('https://token@example.com/o/r.git').credentials).toEqual({ username: 'token', password: '' });
    expect(parseRemoteUrl('https://example.com/o/r.git?x=1#y').cloneUrl).toBe('https://example.com/o/r.git');
    expect(mirrorPath('/w', parseRemoteUrl('http://127.0.0.1:8080/o/r.git'))).toBe('/w/repos/127.0.0.1_8080/o/r');
  });

  it('keeps mirror locks apart from mirrors: a repository named x.lock cannot collide with x', () => {
    const x = parseRemoteUrl('https://h/o/x.git');
    const xLock = parseRemoteUrl('https://h/o/x.lock.git');
    expect(mirrorLockPath('/w', x)).toMatch(/^\/w\/locks\/[0-9a-f]{32}\.lock$/);
    expect(mirrorLockPath('/w', x)).not.toBe(mirrorPath('/w', xLock));
    expect(mirrorLockPath('/w', x)).not.toBe(mirrorLockPath('/w', xLock));
    expect(mirrorLockPath('/w', x)).toBe(mirrorLockPath('/w', parseRemoteUrl('https://user:pw@h/o/x')));
  });

  it.each([
    'https://example.com/../etc/x.git',
    'https://example.com/o/../../x.git',
    'https://example.com/o/%2e%2e/x.git',
    'https://example.com/o/%2E%2E%2Fx.git',
    'https://example.com/o/..%2f..%2fx',
    'https://example.com/o/x%00y.git',
    'https://example.com//x.git',
    'https://example.com/o//x.git',
    'https://example.com/o/./x.git',
    'https://example.com/o\\..\\x.git',
    'https://example.com/o/x\ny.git',
    'https://example.com/o/.git',
    'https://example.com/',
    'https://exa_mple.com/o/x.git',
    'https://example.com:99999/o/x.git',
    'https://example.com/o/-x.git',
    'ssh://git@example.com/o/x.git',
    'git@example.com:o/x.git',
    'file:///etc/passwd',
    '/etc/passwd',
    '',
  ])('refuses %j', (url) => {
    expect(() => parseRemoteUrl(url)).toThrow(InputError);
  });

  it('never echoes credentials in its errors', () => {
    try {
      parseRemoteUrl('https://me:hunter2-secret@example.com/o/../x.git');
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
    expect(redactUrl('fatal: https://a:b@h/x and http://tok@h/y')).toBe('fatal: https://h/x and http://h/y');
  });

  it('property: an accepted URL always maps to a directory inside <workDir>/repos', () => {
    const segment = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9._~%\\/-]{0,12}$/),
      fc.constantFrom('..', '.', '%2e%2e', '..%2f', '', '.git', 'a..b', '...'),
    );
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.boolean(), (segments, withGit) => {
        const url = `https://example.com/${segments.join('/')}${withGit ? '.git' : ''}`;
        let location;
        try {
          location = parseRemoteUrl(url);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          return;
        }
        const path = mirrorPath('/work', location);
        const rel = relative('/work/repos/example.com', path);
        expect(rel.startsWith('..') || isAbsolute(rel) || rel === '').toBe(false);
        expect(path.split('/').every((s) => s !== '..' && s !== '.')).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

describe('checkRefName', () => {
  it.each(['main', 'feature/x', 'refs/heads/main', 'refs/tags/v1.2.0', 'v1.0', 'abc1234', 'release-2026_01'])('accepts %j', (ref) => {
    expect(() => checkRefName(ref)).not.toThrow();
  });
  it.each(['', '../x', 'refs/heads/../../config', 'a..b', '-x', '/abs', 'x/', 'x.lock', 'a b', 'a\u0001', 'a~1', 'a^', 'a:b', 'x@{1}', 'refs/heads/.hidden', 'a\\b'])('refuses %j', (ref) => {
    expect(() => checkRefName(ref)).toThrow(InputError);
  });
});

describe('worktreeName', () => {
  it('keeps a build id as one safe directory name', () => {
    expect(worktreeName('01JABC-def_1.2')).toBe('01JABC-def_1.2');
    expect(worktreeName('../../etc')).toBe('etc');
    expect(worktreeName('a/b\\c')).toBe('a-b-c');
    expect(() => worktreeName('../..')).toThrow(InputError);
  });
});
