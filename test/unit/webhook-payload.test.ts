import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../src/core/errors.js';
import { parseHostList } from '../../src/core/hosts.js';
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
  allowedHosts: parseHostList(['github.com', 'git.example.com']),
  now: () => NOW,
};
const push = (payload: unknown, delivery = DELIVERY, opts = options) => decideWebhook({ event: 'push', delivery }, payload, opts);
const jobOf = (decision: WebhookDecision) => {
  if (decision.kind !== 'job') throw new Error(`expected a job, got ${JSON.stringify(decision)}`);
  return decision.job;
};

// ---- near-valid pushes, for the property over random payloads ----

const hexSha = fc.stringMatching(/^[0-9a-fA-F]{40}$/).filter((sha) => !/^0+$/.test(sha));
const ownerOrName = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_-]{0,19}$/);
const refPart = fc.stringMatching(/^[a-z0-9_][a-z0-9_-]{0,11}$/);
const notAString = fc.jsonValue().filter((value) => typeof value !== 'string');
const notAnObject = fc.jsonValue().filter((value) => typeof value !== 'object' || value === null || Array.isArray(value));

/** A push that builds: the fields decideWebhook reads, as GitHub sends them. */
const buildingPush = fc
  .record({
    host: fc.constantFrom('github.com', 'git.example.com'),
    owner: ownerOrName,
    name: ownerOrName,
    ref: fc.oneof(
      fc.tuple(refPart, fc.option(refPart, { nil: undefined })).map(([a, b]) => `refs/heads/${b === undefined ? a : `${a}/${b}`}`),
      fc.tuple(fc.nat(20), fc.nat(20)).map(([major, minor]) => `refs/tags/v${major}.${minor}`),
    ),
    before: fc.oneof(hexSha, fc.constant(ZERO_SHA)),
    after: hexSha,
    dotGit: fc.boolean(),
    pusher: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    message: fc.option(fc.string({ maxLength: 60 }), { nil: undefined }),
  })
  .map(({ host, owner, name, ref, before, after, dotGit, pusher, message }) => {
    const fullName = `${owner}/${name}`;
    return {
      ref,
      before,
      after,
      deleted: false,
      repository: { full_name: fullName, clone_url: `https://${host}/${fullName}${dotGit ? '.git' : ''}`, html_url: `https://${host}/${fullName}`, name },
      ...(pusher !== undefined ? { pusher: { name: pusher } } : {}),
      ...(message !== undefined ? { head_commit: { id: after, message } } : {}),
    } as Record<string, any>;
  });

interface Mutation {
  what: string;
  /** Changes the push in place; returns whether it must still build. */
  apply: (payload: Record<string, any>) => boolean;
}

const REQUIRED = ['ref', 'before', 'after', 'repository', 'repository.full_name', 'repository.clone_url', 'repository.html_url'] as const;
const OPTIONAL = ['pusher', 'pusher.name', 'head_commit', 'head_commit.message', 'deleted', 'repository.name'] as const;

function parentOf(payload: Record<string, any>, path: string): [Record<string, any> | undefined, string] {
  const keys = path.split('.');
  let parent: any = payload;
  for (const key of keys.slice(0, -1)) parent = typeof parent === 'object' && parent !== null ? parent[key] : undefined;
  return [typeof parent === 'object' && parent !== null ? parent : undefined, keys.at(-1)!];
}
const remove = (path: string) => (payload: Record<string, any>) => {
  const [parent, key] = parentOf(payload, path);
  if (parent) delete parent[key];
};
const set = (path: string, value: unknown) => (payload: Record<string, any>) => {
  const [parent, key] = parentOf(payload, path);
  if (parent) parent[key] = value;
};
const mutation = (what: string, change: (payload: Record<string, any>) => void, builds: boolean | ((payload: Record<string, any>) => boolean)): Mutation => ({
  what,
  apply: (payload) => {
    change(payload);
    return typeof builds === 'function' ? builds(payload) : builds;
  },
});

const mutations: fc.Arbitrary<Mutation> = fc.oneof(
  // Valid pushes that build.
  {
    weight: 5,
    arbitrary: fc.oneof(
      fc.constant(mutation('unchanged', () => undefined, true)),
      fc.tuple(fc.stringMatching(/^x_[a-z_]{1,10}$/), fc.jsonValue()).map(([key, value]) => mutation(`extra field ${key}`, set(key, value), true)),
      fc.constantFrom(...OPTIONAL).map((path) => mutation(`optional ${path} removed`, remove(path), true)),
      fc.tuple(fc.constantFrom(...OPTIONAL), fc.jsonValue()).map(([path, value]) =>
        // `deleted: true` is a branch deletion, which builds nothing; any other value is no deletion.
        mutation(`optional ${path} = ${JSON.stringify(value)?.slice(0, 40)}`, set(path, value), path !== 'deleted' || value !== true),
      ),
      fc.constantFrom('after', 'before').map((path) =>
        mutation(`${path} in upper case`, (p) => set(path, String(p[path]).toUpperCase())(p), true),
      ),
    ),
  },
  // Pushes that must never build.
  {
    weight: 5,
    arbitrary: fc.oneof(
      fc.constantFrom(...REQUIRED).map((path) => mutation(`required ${path} removed`, remove(path), false)),
      fc.tuple(fc.constantFrom(...REQUIRED), notAString, notAnObject).map(([path, value, nonObject]) =>
        mutation(`required ${path} retyped`, set(path, path === 'repository' ? nonObject : value), false),
      ),
      fc.tuple(fc.constantFrom('after', 'before'), fc.constantFrom('short', 'long', 'not hex')).map(([path, how]) =>
        mutation(`${path} ${how}`, (p) => {
          const sha = String(p[path]);
          set(path, how === 'short' ? sha.slice(1) : how === 'long' ? `${sha}0` : `g${sha.slice(1)}`)(p);
        }, false),
      ),
      fc.constant(mutation('after all zeros (a deletion)', set('after', ZERO_SHA), false)),
      fc.constant(mutation('deleted: true', set('deleted', true), false)),
      fc.constantFrom('..', ' x', '~1', '^', ':', '?', '*', '[', '\\', '.lock', '/', '//x', '@{x', '.').map((bad) =>
        mutation(`ref with ${JSON.stringify(bad)}`, (p) => set('ref', `${p.ref}${bad}`)(p), false),
      ),
      fc.constantFrom('refs/pull/1/head', 'main', 'refs/remotes/origin/main', '').map((ref) => mutation(`ref ${ref || 'empty'}`, set('ref', ref), false)),
      fc.constantFrom('no-slash', 'a/b/c', 'a/..', 'a/.', 'a b/c', 'a/c;d', '/c').map((name) => mutation(`full_name ${name}`, set('repository.full_name', name), false)),
      fc.constantFrom(
        (u: string) => u.replace(/^https:\/\/[^/]+/, 'https://evil.example.com'),
        (u: string) => u.replace('https://', 'https://user:pw@'),
        (u: string) => `${u}?x=1`,
        (u: string) => u.replace('https://', 'ssh://'),
        (u: string) => u.replace(/\/[^/]+?(\.git)?$/, '/other$1'),
        () => 'not a url',
      ).map((change) => mutation(`clone_url changed`, (p) => set('repository.clone_url', change(p.repository.clone_url))(p), false)),
      fc.constantFrom(
        (u: string) => u.replace(/^https:\/\/[^/]+/, 'https://evil.example.com'),
        (u: string) => `${u}/tree/main`,
        (u: string) => u.replace(/\/[^/]+$/, '/other'),
      ).map((change) => mutation(`html_url changed`, (p) => set('repository.html_url', change(p.repository.html_url))(p), false)),
    ),
  },
);

/** A valid push with one mutation, and whether it must build. */
const nearValidPush = fc.tuple(buildingPush, mutations).map(([payload, m]) => {
  const builds = m.apply(payload);
  return { payload: payload as unknown, builds, what: m.what };
});

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
        defaultBranch: 'main',
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
    repository: { full_name: fullName, clone_url: `${p.scheme}://git.example.com/${fullName}.git`, html_url: `https://git.example.com/${fullName}` },
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
    // Mostly near-valid pushes (a valid push with one field removed, retyped or made invalid, or
    // left alone), some arbitrary JSON: each knows by construction whether it must build.
    const cases = fc.oneof({ weight: 9, arbitrary: nearValidPush }, { weight: 1, arbitrary: fc.jsonValue().map((value) => ({ payload: value as unknown, builds: false, what: 'random JSON' })) });
    fc.assert(
      fc.property(cases, ({ payload, builds, what }) => {
        let decision: WebhookDecision | undefined;
        try {
          decision = push(payload);
        } catch (err) {
          expect(err, what).toBeInstanceOf(InputError);
        }
        if (!builds) {
          expect(decision?.kind, what).not.toBe('job');
          return;
        }
        expect(decision?.kind, what).toBe('job');
        // It builds what the payload names.
        const sent = payload as Record<string, any>;
        expect(jobOf(decision!).repository).toMatchObject({ fullName: sent.repository.full_name, cloneUrl: sent.repository.clone_url, ref: sent.ref, commit: sent.after.toLowerCase() });
      }),
      { numRuns: 500 },
    );
    // A meaningful share of the draws are valid pushes that build, as decideWebhook itself says.
    const drawn = fc.sample(cases, { numRuns: 1_000, seed: 14 });
    const built = drawn.filter(({ payload }) => {
      try {
        return push(payload).kind === 'job';
      } catch {
        return false;
      }
    });
    expect(built.length).toBeGreaterThan(drawn.length * 0.3);
    expect(built.length).toBeLessThan(drawn.length * 0.7);
  });
});

// ---- what serve may make a worker fetch (issue 15, finding 3) ----

describe('clone_url attacks: refused with the reason, never a job', () => {
  const withUrls = (clone: string, html: string | null = 'https://github.com/octo-org/hello-service') => {
    const payload = fixture('push');
    payload.repository.clone_url = clone;
    if (html === null) delete payload.repository.html_url;
    else payload.repository.html_url = html;
    return payload;
  };
  const refusal = (payload: unknown, opts = options): InputError => {
    try {
      push(payload, DELIVERY, opts);
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).hint).toMatch(/server\.allowedHosts/);
      expect((err as InputError).hint).toMatch(/OCI_BUILD_SERVER_ALLOWED_HOSTS/);
      return err as InputError;
    }
    throw new Error('expected an InputError');
  };

  it('another host than html_url (both allowed)', () => {
    const err = refusal(withUrls('https://git.example.com/octo-org/hello-service.git'));
    expect(err.message).toMatch(/clone_url host git\.example\.com differs from repository\.html_url's host github\.com/);
  });

  it('a host not in server.allowedHosts, even when html_url agrees', () => {
    const err = refusal(withUrls('https://evil.example/octo-org/hello-service.git', 'https://evil.example/octo-org/hello-service'));
    expect(err.message).toMatch(/names host evil\.example, which is not in server\.allowedHosts \(github\.com, git\.example\.com\)/);
  });

  it('the link-local metadata address 169.254.169.254, however it is written', () => {
    for (const host of ['169.254.169.254', '0xA9FEA9FE', '2852039166', '169.254.43518']) {
      const err = refusal(withUrls(`http://${host}/octo-org/hello-service.git`, `http://${host}/octo-org/hello-service`));
      expect(err.message).toMatch(/names host 169\.254\.169\.254, which is not in server\.allowedHosts/);
    }
  });

  it('127.0.0.1 (serve, NATS, anything local) unless listed with its port; a decimal IP is the same host', () => {
    const local = withUrls('http://127.0.0.1:4222/octo-org/hello-service.git', 'http://127.0.0.1:4222/octo-org/hello-service');
    expect(refusal(local).message).toMatch(/names host 127\.0\.0\.1:4222, which is not in server\.allowedHosts/);
    const decimal = withUrls('http://2130706433:4222/octo-org/hello-service.git', 'http://2130706433:4222/octo-org/hello-service');
    expect(refusal(decimal).message).toMatch(/names host 127\.0\.0\.1:4222/);
    // Listed without the port: only the scheme's default port.
    expect(refusal(local, { ...options, allowedHosts: parseHostList(['127.0.0.1']) }).message).toMatch(/not in server\.allowedHosts \(127\.0\.0\.1\)/);
    // Listed with it: allowed, in every spelling WHATWG URL reads as that address.
    const listed = { ...options, allowedHosts: parseHostList(['127.0.0.1:4222']) };
    expect(jobOf(push(local, DELIVERY, listed)).source).toMatchObject({ url: 'http://127.0.0.1:4222/octo-org/hello-service.git' });
    expect(push(decimal, DELIVERY, listed).kind).toBe('job');
  });

  it('http://github.com@evil.example/… (userinfo: the host is evil.example)', () => {
    const err = refusal(withUrls('http://github.com@evil.example/octo-org/hello-service.git'));
    expect(err.message).toMatch(/repository\.clone_url must not carry credentials/);
  });

  it('a path that is not repository.full_name', () => {
    const err = refusal(withUrls('https://github.com/octo-org/other-service.git'));
    expect(err.message).toMatch(/clone_url path "\/octo-org\/other-service\.git" does not match repository\.full_name octo-org\/hello-service/);
    expect(refusal(withUrls('https://github.com/octo-org/hello-service.git/extra')).message).toMatch(/does not match repository\.full_name/);
    expect(refusal(withUrls('https://github.com/octo-org/hello-service.git', 'https://github.com/evil/hello-service')).message).toMatch(
      /html_url path "\/evil\/hello-service" does not match/,
    );
  });

  it('html_url missing, not http(s), or a query on clone_url', () => {
    expect(refusal(withUrls('https://github.com/octo-org/hello-service.git', null)).message).toMatch(/has no repository\.html_url/);
    expect(refusal(withUrls('https://github.com/octo-org/hello-service.git', 'file:///octo-org/hello-service')).message).toMatch(/html_url must be http\(s\)/);
    expect(refusal(withUrls('https://github.com/octo-org/hello-service.git?service=x')).message).toMatch(/query or fragment/);
  });

  it('a trailing dot is another host; case and dot segments are what the client reads', () => {
    expect(refusal(withUrls('https://github.com./octo-org/hello-service.git', 'https://github.com./octo-org/hello-service')).message).toMatch(/names host github\.com\./);
    expect(push(withUrls('HTTPS://GitHub.COM:443/Octo-Org/Hello-Service.GIT', 'https://github.com/octo-org/HELLO-service')).kind).toBe('job');
    expect(push(withUrls('https://github.com/x/../octo-org/hello-service.git')).kind).toBe('job');
  });

  it('no allowed host at all refuses every push', () => {
    expect(refusal(fixture('push'), { ...options, allowedHosts: [] }).message).toMatch(/not in server\.allowedHosts \(none\)/);
  });
});

describe('clone_url property: accepted exactly when the host and path rules hold', () => {
  // Each spelling with the host WHATWG URL reads from it, written down here rather than parsed,
  // so the expectation does not come from the code under test.
  const HOSTS: Array<[written: string, host: string]> = [
    ['github.com', 'github.com'],
    ['GitHub.COM', 'github.com'],
    ['github.com.', 'github.com.'],
    ['git.example.com', 'git.example.com'],
    ['evil.example', 'evil.example'],
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['localhost', 'localhost'],
    ['[::1]', '[::1]'],
    ['[0:0:0:0:0:0:0:1]', '[::1]'],
    ['[::ffff:127.0.0.1]', '[::ffff:7f00:1]'],
    ['169.254.169.254', '169.254.169.254'],
    ['0xa9fea9fe', '169.254.169.254'],
    ['10.0.0.1', '10.0.0.1'],
  ];
  const ENTRIES: Array<[entry: string, host: string, port: number | undefined]> = [
    ['github.com', 'github.com', undefined],
    ['git.example.com:8443', 'git.example.com', 8443],
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['[::1]:9418', '[::1]', 9418],
    ['169.254.169.254', '169.254.169.254', undefined],
    ['localhost:80', 'localhost', 80],
  ];
  const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443 };
  const urlPart = fc.record({
    scheme: fc.constantFrom('http', 'https'),
    hostIndex: fc.nat(HOSTS.length - 1),
    port: fc.constantFrom(undefined, 80, 443, 8080, 8443, 9418),
  });
  const arb = fc.record({
    owner: namePart,
    name: namePart,
    clone: urlPart,
    html: fc.oneof({ arbitrary: urlPart, weight: 1 }, { arbitrary: fc.constant('same' as const), weight: 3 }),
    userinfo: fc.constantFrom('', '', '', '', 'github.com@', 'u:p@'),
    path: fc.constantFrom('exact', 'exact.git', 'exact.git', 'upper.git', 'other', 'extra'),
    htmlPath: fc.constantFrom('exact', 'exact', 'exact', 'upper', 'other'),
    allowed: fc.subarray(ENTRIES.map((_, i) => i)),
    // Also list the clone URL's own host (as the table reads it), so that accepted cases are common.
    listClone: fc.constantFrom('no', 'host', 'host:port', 'host:effective'),
  });

  const canonicalPort = (scheme: string, port: number | undefined) => (port === undefined || port === DEFAULT_PORT[scheme] ? undefined : port);

  it('matches an independently computed reference', () => {
    fc.assert(
      fc.property(arb, (p) => {
        const fullName = `${p.owner}/${p.name}`;
        const pathOf = (kind: string) =>
          kind === 'exact' ? `/${fullName}` : kind === 'exact.git' ? `/${fullName}.git` : kind === 'upper.git' ? `/${fullName.toUpperCase()}.git` : kind === 'upper' ? `/${fullName.toUpperCase()}` : kind === 'extra' ? `/${fullName}/x` : `/other-${p.owner}/${p.name}`;
        const html = p.html === 'same' ? p.clone : p.html;
        const written = (u: typeof p.clone, userinfo: string, path: string) => `${u.scheme}://${userinfo}${HOSTS[u.hostIndex]![0]}${u.port === undefined ? '' : `:${u.port}`}${path}`;
        const payload = {
          ref: 'refs/heads/main',
          before: 'a'.repeat(40),
          after: 'b'.repeat(40),
          repository: { full_name: fullName, clone_url: written(p.clone, p.userinfo, pathOf(p.path)), html_url: written(html, '', pathOf(p.htmlPath)) },
        };
        const cloneHost = HOSTS[p.clone.hostIndex]![1];
        const clonePort = canonicalPort(p.clone.scheme, p.clone.port);
        const effective = p.clone.port ?? DEFAULT_PORT[p.clone.scheme]!;
        const allowedEntries = p.allowed.map((i) => ENTRIES[i]!);
        if (p.listClone === 'host') allowedEntries.push([cloneHost, cloneHost, undefined]);
        if (p.listClone === 'host:port' && p.clone.port !== undefined) allowedEntries.push([`${cloneHost}:${p.clone.port}`, cloneHost, p.clone.port]);
        if (p.listClone === 'host:effective') allowedEntries.push([`${cloneHost}:${effective}`, cloneHost, effective]);
        const hostOk = allowedEntries.some(([, host, port]) => host === cloneHost && (port === undefined ? clonePort === undefined : port === effective));
        const sameHost = HOSTS[html.hostIndex]![1] === cloneHost && canonicalPort(html.scheme, html.port) === clonePort;
        const pathOk = ['exact', 'exact.git', 'upper.git'].includes(p.path) && ['exact', 'upper'].includes(p.htmlPath);
        const expected = p.userinfo === '' && hostOk && sameHost && pathOk;

        let accepted: boolean;
        try {
          accepted = push(payload, DELIVERY, { ...options, allowedHosts: parseHostList(allowedEntries.map(([entry]) => entry)) }).kind === 'job';
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          accepted = false;
        }
        expect(accepted, `${payload.repository.clone_url} / ${payload.repository.html_url} with [${allowedEntries.map(([e]) => e).join(', ')}]`).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });
});

// ---- replays (issue 15, finding 4) ----

describe('push claim key', () => {
  const keyOf = (patch: (payload: Record<string, any>) => void = () => undefined) => {
    const payload = fixture('push');
    patch(payload);
    const decision = push(payload);
    if (decision.kind !== 'job') throw new Error('expected a job');
    return decision.pushKey;
  };

  it('is the same for the same repository (any case), ref, before and after, whatever the delivery', () => {
    const key = keyOf();
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    const other = push(fixture('push'), '11111111-2222-4333-8444-555555555555');
    expect(other.kind === 'job' && other.pushKey).toBe(key);
    expect(
      keyOf((p) => {
        p.repository.full_name = 'Octo-Org/Hello-Service';
        p.after = p.after.toUpperCase();
      }),
    ).toBe(key);
  });

  it('differs when the repository, ref, before or after differ', () => {
    const key = keyOf();
    const keys = [
      keyOf((p) => {
        p.repository.full_name = 'octo-org/hello-servic';
        p.repository.clone_url = 'https://github.com/octo-org/hello-servic.git';
        p.repository.html_url = 'https://github.com/octo-org/hello-servic';
      }),
      keyOf((p) => (p.ref = 'refs/heads/mai')),
      keyOf((p) => (p.ref = 'refs/tags/main')),
      keyOf((p) => (p.before = 'f'.repeat(40))),
      keyOf((p) => (p.after = 'f'.repeat(40))),
    ];
    for (const k of keys) expect(k).not.toBe(key);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

// ---- invalid UTF-8 (issue 15, item 9) ----

describe('invalid UTF-8 in the body is a 400, never replaced', () => {
  const jsonWith = (bytes: number[]) => Buffer.concat([Buffer.from('{"ref":"refs/heads/'), Buffer.from(bytes), Buffer.from('"}')]);

  it('a JSON body with invalid bytes in a field', () => {
    for (const bytes of [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]) {
      expect(() => parseWebhookBody('application/json', jsonWith(bytes))).toThrow(/The webhook body is not valid UTF-8/);
    }
    expect(parseWebhookBody('application/json', jsonWith([0xc3, 0xa9]))).toEqual({ ref: 'refs/heads/é' });
  });

  it('a form body: raw invalid bytes, or invalid bytes once the payload is percent-decoded', () => {
    expect(() => parseWebhookBody('application/x-www-form-urlencoded', Buffer.from([...Buffer.from('payload=%7B%7D&x='), 0xff]))).toThrow(/not valid UTF-8/);
    expect(() => parseWebhookBody('application/x-www-form-urlencoded', Buffer.from('payload=%7B%22ref%22%3A%22%FF%22%7D'))).toThrow(/"payload" field \(percent-decoded\) is not valid UTF-8/);
    expect(parseWebhookBody('application/x-www-form-urlencoded', Buffer.from('payload=%7B%22ref%22%3A%22%C3%A9+x%22%7D'))).toEqual({ ref: 'é x' });
  });

  it('property: a JSON string field is accepted exactly when its bytes are valid UTF-8', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (raw) => {
        // Quotes, backslashes and control characters would make invalid JSON for another reason.
        const bytes = [...raw].map((b) => (b < 0x20 || b === 0x22 || b === 0x5c ? 0x61 : b));
        const valid = Buffer.from(Buffer.from(bytes).toString('utf8'), 'utf8').equals(Buffer.from(bytes));
        let accepted = true;
        try {
          parseWebhookBody('application/json', jsonWith(bytes));
        } catch (err) {
          expect((err as Error).message).toMatch(/not valid UTF-8/);
          accepted = false;
        }
        expect(accepted).toBe(valid);
      }),
      { numRuns: 1000 },
    );
  });

  it('property: a form body reads like URLSearchParams for every valid payload', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }), (value, extra) => {
        const form = new URLSearchParams({ ...extra, payload: JSON.stringify(value) });
        form.append('payload', 'second is ignored');
        expect(parseWebhookBody('application/x-www-form-urlencoded', Buffer.from(form.toString()))).toEqual(JSON.parse(new URLSearchParams(form.toString()).get('payload')!));
      }),
    );
  });
});
