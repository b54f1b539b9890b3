import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { compileBranchFilter } from '../../src/server/branch-filter.js';
import {
  ZERO_SHA,
  decideWebhook,
  parseWebhookBody,
  type PayloadOptions,
  type WebhookDecision,
} from '../../src/server/github-payload.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/github');
const fixture = (name: string) => JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as Record<string, any>;
const DELIVERY = '72d3162e-cc78-11e3-81ab-4c9367dc0958';
const NOW = new Date('2026-11-29T08:00:00.000Z');
const options: PayloadOptions = {
  image: { registry: '127.0.0.1:5000/team', push: true, tlsVerify: false, buildArgs: {} },
  now: () => NOW,
};
const push = (payload: unknown, delivery = DELIVERY, opts = options) => decideWebhook({ event: 'push', delivery }, payload, opts);
const jobOf = (decision: WebhookDecision) => {
  if (decision.kind !== 'job') throw new Error(`expected a job, got ${JSON.stringify(decision)}`);
  return decision.job;
};

describe('real GitHub payloads', () => {
  it('a branch push becomes the BuildJob specified', () => {
    const job = jobOf(push(fixture('push')));
    expect(job).toEqual({
      id: `gh-${DELIVERY}`,
      trigger: 'webhook',
      deliveryId: DELIVERY,
      source: { kind: 'git', url: 'https://github.com/octo-org/hello-service.git', ref: '4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938' },
      repository: {
        fullName: 'octo-org/hello-service',
        cloneUrl: 'https://github.com/octo-org/hello-service.git',
        ref: 'refs/heads/main',
        branch: 'main',
        commit: '4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938',
        before: '6113728f27ae82c7b1a177c8d03f9e96e0adf246',
      },
      affectedBase: '6113728f27ae82c7b1a177c8d03f9e96e0adf246',
      image: { registry: '127.0.0.1:5000/team', push: true, tlsVerify: false, buildArgs: {} },
      pusher: 'mona',
      headCommitMessage: 'Build a static binary for the scratch image\n\nCGO_ENABLED=0 and -trimpath so the image is reproducible.',
      createdAt: NOW.toISOString(),
    });
  });

  it('a tag push builds the tag, with no affected base (the tag is new)', () => {
    const job = jobOf(push(fixture('push-tag')));
    expect(job.repository).toMatchObject({ ref: 'refs/tags/v1.4.0', tag: 'v1.4.0', commit: '4c5a7d3e9b1f0a2c8e6d4b2a0f9e8d7c6b5a4938', before: ZERO_SHA });
    expect(job.repository?.branch).toBeUndefined();
    expect(job.affectedBase).toBeUndefined();
  });

  it('a tag push is never branch-filtered', () => {
    const filter = compileBranchFilter({ include: ['main'], exclude: ['**'] });
    expect(push(fixture('push-tag'), DELIVERY, { ...options, branchFilter: filter }).kind).toBe('job');
  });

  it('a branch deletion is ignored', () => {
    expect(push(fixture('push-delete'))).toEqual({ kind: 'ignored', reason: 'deleted', detail: 'refs/heads/feature/old-login was deleted' });
  });

  it('ping is ignored with reason "ping"', () => {
    expect(decideWebhook({ event: 'ping', delivery: DELIVERY }, fixture('ping'), options)).toMatchObject({ kind: 'ignored', reason: 'ping' });
  });

  it('other events are ignored', () => {
    expect(decideWebhook({ event: 'issues', delivery: DELIVERY }, { action: 'opened' }, options)).toMatchObject({ kind: 'ignored', reason: 'event' });
  });

  it('a push to another kind of ref is ignored', () => {
    expect(push({ ...fixture('push'), ref: 'refs/notes/commits' })).toMatchObject({ kind: 'ignored', reason: 'ref' });
  });

  it('branch globs: excluded and not-included branches are ignored', () => {
    const filter = compileBranchFilter({ include: ['main', 'release/*'], exclude: ['release/old-*'] });
    const withRef = (ref: string) => push({ ...fixture('push'), ref }, DELIVERY, { ...options, branchFilter: filter });
    expect(withRef('refs/heads/main').kind).toBe('job');
    expect(withRef('refs/heads/release/2.0').kind).toBe('job');
    expect(withRef('refs/heads/release/old-1')).toMatchObject({ kind: 'ignored', reason: 'branch-filtered' });
    expect(withRef('refs/heads/feature/x')).toMatchObject({ kind: 'ignored', reason: 'branch-filtered' });
  });
});

describe('headers', () => {
  it('a missing or malformed X-GitHub-Delivery is an InputError', () => {
    expect(() => decideWebhook({ event: 'push', delivery: undefined }, fixture('push'), options)).toThrow(/X-GitHub-Delivery header is missing/);
    expect(() => push(fixture('push'), '')).toThrow(InputError);
    expect(() => push(fixture('push'), '../../etc/passwd')).toThrow(/not a UUID/);
    expect(() => push(fixture('push'), `${DELIVERY}.x`)).toThrow(/not a UUID/);
  });

  it('the delivery id is lowercased so redeliveries map to one job', () => {
    expect(jobOf(push(fixture('push'), DELIVERY.toUpperCase())).id).toBe(`gh-${DELIVERY}`);
  });

  it('a missing event is an InputError', () => {
    expect(() => decideWebhook({ event: undefined, delivery: DELIVERY }, fixture('push'), options)).toThrow(/X-GitHub-Event/);
  });
});

describe('body encodings', () => {
  const json = JSON.stringify(fixture('push'));
  it('application/json and application/x-www-form-urlencoded (payload=) give the same payload', () => {
    const form = new URLSearchParams({ payload: json }).toString();
    expect(parseWebhookBody('application/json', Buffer.from(json))).toEqual(fixture('push'));
    expect(parseWebhookBody('application/x-www-form-urlencoded', Buffer.from(form))).toEqual(fixture('push'));
    expect(parseWebhookBody('application/json; charset=utf-8', Buffer.from(json))).toEqual(fixture('push'));
  });

  it('bad bodies are InputErrors with a clear message', () => {
    expect(() => parseWebhookBody('application/json', Buffer.from('{"ref":'))).toThrow(/not valid JSON/);
    expect(() => parseWebhookBody('application/x-www-form-urlencoded', Buffer.from('other=1'))).toThrow(/no "payload" field/);
    expect(() => parseWebhookBody('text/plain', Buffer.from(json))).toThrow(/Unsupported webhook Content-Type/);
    expect(() => parseWebhookBody(undefined, Buffer.from(json))).toThrow(InputError);
  });
});

// ---- properties ----

const hex40 = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 40, maxLength: 40 }).filter((s) => s !== ZERO_SHA);
const nameChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-');
const namePart = fc.string({ unit: nameChar, minLength: 1, maxLength: 30 }).filter((s) => !s.includes('..') && s !== '.');
const branchName = fc
  .array(fc.string({ unit: fc.constantFrom(...'abcxyz019_-'), minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join('/'))
  .filter((b) => !b.startsWith('-'));

const validPush = fc.record({
  owner: namePart,
  name: namePart,
  branch: branchName,
  after: hex40,
  before: fc.oneof(hex40, fc.constant(ZERO_SHA)),
  scheme: fc.constantFrom('https', 'http'),
  message: fc.string({ maxLength: 5000 }),
});

function payloadOf(p: { owner: string; name: string; branch: string; after: string; before: string; scheme: string; message: string }) {
  const fullName = `${p.owner}/${p.name}`;
  return {
    ref: `refs/heads/${p.branch}`,
    before: p.before,
    after: p.after,
    deleted: false,
    repository: { full_name: fullName, clone_url: `${p.scheme}://git.example.com/${fullName}.git` },
    pusher: { name: 'mona' },
    head_commit: { id: p.after, message: p.message },
  };
}

describe('payload parsing properties', () => {
  it('every valid push becomes a job carrying exactly its fields', () => {
    fc.assert(
      fc.property(validPush, (p) => {
        const job = jobOf(push(payloadOf(p)));
        expect(job.repository).toEqual({
          fullName: `${p.owner}/${p.name}`,
          cloneUrl: `${p.scheme}://git.example.com/${p.owner}/${p.name}.git`,
          ref: `refs/heads/${p.branch}`,
          branch: p.branch,
          commit: p.after,
          before: p.before,
        });
        expect(job.source).toEqual({ kind: 'git', url: job.repository?.cloneUrl, ref: p.after });
        expect(job.affectedBase).toBe(p.before === ZERO_SHA ? undefined : p.before);
        expect(job.headCommitMessage?.length ?? 0).toBeLessThanOrEqual(4096);
      }),
    );
  });

  const invalidations: Array<[string, fc.Arbitrary<(payload: Record<string, any>) => void>]> = [
    ['after', fc.oneof(fc.string({ maxLength: 45 }), fc.integer(), fc.constant(null)).filter((v) => typeof v !== 'string' || !/^[0-9a-fA-F]{40}$/.test(v)).map((v) => (pl) => void (pl.after = v))],
    ['before', fc.oneof(fc.string({ maxLength: 45 }), fc.constant(undefined)).filter((v) => typeof v !== 'string' || !/^[0-9a-fA-F]{40}$/.test(v)).map((v) => (pl) => void (pl.before = v))],
    [
      'full_name',
      fc
        .oneof(
          fc.string({ maxLength: 40 }),
          namePart.map((n) => `${n}/../${n}`),
          namePart.map((n) => `${n}/x..y`),
          namePart.map((n) => `${n} /${n}`),
          namePart.map((n) => `${n}/${n}/${n}`),
          fc.constant(42),
        )
        .filter((v) => typeof v !== 'string' || !/^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/.test(v) || v.includes('..'))
        .map((v) => (pl) => void (pl.repository.full_name = v)),
    ],
    [
      'clone_url',
      fc
        .oneof(fc.constantFrom('file:///etc/passwd', 'ssh://git@github.com/a/b.git', 'git@github.com:a/b.git', 'https://user:pw@github.com/a/b.git', '', 'ext::sh -c x'), fc.string({ maxLength: 20 }).filter((s) => !/^https?:\/\//.test(s)))
        .map((v) => (pl) => void (pl.repository.clone_url = v)),
    ],
    [
      'ref',
      fc
        .constantFrom('refs/heads/a..b', 'refs/heads/-x', 'refs/heads/a b', 'refs/heads/x.lock', 'refs/heads/.hidden', 'refs/heads/a~1', 'refs/heads/a:b', 'refs/heads/', 'refs/tags/x\u0000y', 'refs/heads/@{u}')
        .map((v) => (pl) => void (pl.ref = v)),
    ],
    ['repository', fc.constantFrom(null, 'x', [], undefined).map((v) => (pl) => void (pl.repository = v))],
  ];

  for (const [fieldName, invalidate] of invalidations) {
    it(`an invalid ${fieldName} is an InputError, never a job`, () => {
      fc.assert(
        fc.property(validPush, invalidate, (p, mutate) => {
          const payload = payloadOf(p) as Record<string, any>;
          mutate(payload);
          let decision: WebhookDecision | undefined;
          try {
            decision = push(payload);
          } catch (err) {
            expect(err).toBeInstanceOf(InputError);
            expect((err as Error).message.length).toBeGreaterThan(10);
            return;
          }
          // An all-zero `after` is a deletion (ignored), never a job.
          expect(decision.kind).not.toBe('job');
        }),
      );
    });
  }

  it('random JSON never throws anything but InputError and never builds without the required fields', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          const decision = push(value);
          expect(decision.kind).not.toBe('job');
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
        }
      }),
    );
  });
});
