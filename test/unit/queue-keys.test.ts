// Pure parts of the NATS layer: subject tokens, job keys, job subjects.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BuildJob } from '../../src/core/types.js';
import { jobKey, jobSubject, keyOfSubject, supersedeKeyOf } from '../../src/queue/job-queue.js';
import { logSubject } from '../../src/queue/log-stream.js';
import { subjectToken } from '../../src/queue/nats.js';

const TOKEN = /^[A-Za-z0-9_=-]+$/;

function job(repository: BuildJob['repository']): BuildJob {
  return {
    id: 'j',
    trigger: 'webhook',
    source: { kind: 'git', url: 'http://x/y.git' },
    ...(repository ? { repository } : {}),
    image: { push: false, tlsVerify: true, buildArgs: {} },
    createdAt: '2026-01-01T00:00:00Z',
  };
}

describe('subjectToken', () => {
  it('is one subject token and injective', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (a, b) => {
        expect(subjectToken(a)).toMatch(TOKEN);
        if (a !== b) expect(subjectToken(a)).not.toBe(subjectToken(b));
      }),
    );
  });

  it('leaves GitHub delivery ids as they are', () => {
    expect(subjectToken('72d3162e-cc78-11e3-81ab-4c9367dc0958')).toBe('72d3162e-cc78-11e3-81ab-4c9367dc0958');
    expect(logSubject('a.b')).toBe('oci-build.logs.a=2Eb');
  });
});

describe('jobKey', () => {
  it('is a single KV/subject token, stable, repository case-insensitive, branch case-sensitive', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (repo, branch) => {
        const key = jobKey(repo, branch);
        expect(key).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(jobKey(repo.toUpperCase(), branch)).toBe(jobKey(repo.toLowerCase(), branch));
        expect(key).toBe(jobKey(repo, branch));
      }),
    );
    expect(jobKey('acme/app', 'Main')).not.toBe(jobKey('acme/app', 'main'));
    expect(jobKey('acme/app', 'a/b')).not.toBe(jobKey('acme/app', 'a-b'));
  });

  it('only branch jobs have a supersede key and their own subject', () => {
    const branch = job({ fullName: 'acme/app', branch: 'feature/x', commit: 'a'.repeat(40) });
    const key = jobKey('acme/app', 'feature/x');
    expect(supersedeKeyOf(branch)).toBe(key);
    expect(jobSubject({ subject: 'builds.webhook' }, branch)).toBe(`builds.webhook.${key}`);
    expect(keyOfSubject({ subject: 'builds.webhook' }, `builds.webhook.${key}`)).toBe(key);
    const tag = job({ fullName: 'acme/app', tag: 'v1.0.0', commit: 'a'.repeat(40) });
    expect(supersedeKeyOf(tag)).toBeUndefined();
    expect(jobSubject({ subject: 'builds.webhook' }, tag)).toBe('builds.webhook');
    expect(keyOfSubject({ subject: 'builds.webhook' }, 'builds.webhook')).toBeUndefined();
    expect(supersedeKeyOf(job(undefined))).toBeUndefined();
  });
});
