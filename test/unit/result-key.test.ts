import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { canonicalJson, resultKey, resultKeySummary, type ResultKeyInputs } from '../../src/core/result-key.js';

const text = fc.string({ minLength: 1, maxLength: 12 });
const record = fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 4 });
const oid = fc.stringMatching(/^[0-9a-f]{40}$/);

const inputs: fc.Arbitrary<ResultKeyInputs> = fc.record({
  ociBuildVersion: text,
  project: fc.record({ name: text, root: text, language: fc.constantFrom('go', 'java', 'dotnet', 'node'), buildCommand: fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }) }),
  trees: fc.dictionary(text, oid, { minKeys: 1, maxKeys: 4 }),
  dockerfile: text,
  context: text,
  buildArgs: record,
  env: record,
  toolchains: record,
  baseImages: fc.dictionary(text, fc.stringMatching(/^sha256:[0-9a-f]{64}$/), { maxKeys: 3 }),
  labels: record,
  repository: text,
});

/** One input changed: a field replaced, or one entry of a record field added, changed or removed. */
function mutate(value: ResultKeyInputs, field: keyof ResultKeyInputs, salt: string): ResultKeyInputs {
  const copy = structuredClone(value) as unknown as Record<string, unknown>;
  const current = copy[field];
  if (typeof current === 'string') copy[field] = `${current}${salt}`;
  else {
    const obj = current as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length > 0 && salt.length % 2 === 0) obj[keys[0]!] = `${String(JSON.stringify(obj[keys[0]!]))}${salt}`;
    else obj[`added-${salt}`] = salt;
  }
  return copy as unknown as ResultKeyInputs;
}

describe('resultKey', () => {
  it('changing any single input changes the key', () => {
    const fields = ['ociBuildVersion', 'project', 'trees', 'dockerfile', 'context', 'buildArgs', 'env', 'toolchains', 'baseImages', 'labels', 'repository'] as const;
    fc.assert(
      fc.property(inputs, fc.constantFrom(...fields), fc.string({ minLength: 1, maxLength: 4 }), (value, field, salt) => {
        expect(resultKey(mutate(value, field, salt))).not.toBe(resultKey(value));
      }),
      { numRuns: 500 },
    );
  });

  it('does not depend on the order of keys, and is 64 hex digits (a KV key and a file name)', () => {
    fc.assert(
      fc.property(inputs, (value) => {
        const reversed = Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse()) : v]));
        expect(resultKey(reversed as unknown as ResultKeyInputs)).toBe(resultKey(value));
        expect(resultKey(value)).toMatch(/^[0-9a-f]{64}$/);
      }),
    );
  });

  it('a value moved from one field to another changes the key (fields do not run together)', () => {
    const base = { ociBuildVersion: '1', project: {}, trees: {}, dockerfile: 'ab', context: '', buildArgs: {}, env: {}, toolchains: {}, baseImages: {}, labels: {}, repository: 'r' };
    expect(resultKey({ ...base, dockerfile: 'a', context: 'b' })).not.toBe(resultKey({ ...base, dockerfile: 'ab', context: '' }));
    expect(canonicalJson({ b: 1, a: [1, { d: 2, c: undefined }] })).toBe('{"a":[1,{"d":2}],"b":1}');
  });

  it('the summary carries no build-arg or environment value', () => {
    fc.assert(
      fc.property(inputs, fc.string({ minLength: 8, maxLength: 20 }).filter((s) => /^[A-Za-z0-9]+$/.test(s)).map((s) => `s3cr3t-${s}`), (value, secret) => {
        // The marker keeps a secret from being a word the other inputs may hold (fast-check once drew "toString", a tree's name).
        const summary = JSON.stringify(resultKeySummary({ ...value, buildArgs: { TOKEN: secret }, env: { HTTP_PROXY: `http://u:${secret}@proxy` } }));
        expect(summary).not.toContain(secret);
      }),
    );
  });
});
