// What a build says on its commit (src/notify/status-mapping.ts): for any record, one `oci-build`
// context and one per image project, descriptions GitHub accepts (≤ 140 characters, one line),
// states by the rule (success, failure naming the phase, error for infrastructure and cancels,
// success for skipped), and the link to the build's page.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUILD_CONTEXT, MAX_DESCRIPTION, buildPageUrl, description, queuedStatuses, recordStatuses, statusTarget } from '../../src/notify/status-mapping.js';
import type { BuildRecord, JobStatus, PhaseMetric, PhaseName } from '../../src/core/types.js';

const SHA = 'ab'.repeat(20);
const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;

const nameArb = fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/);
const textArb = fc.string({ maxLength: 400, unit: 'grapheme' });
const phaseArb = fc.constantFrom<PhaseName>('source', 'detect', 'build', 'image', 'push');

const recordArb: fc.Arbitrary<BuildRecord> = fc
  .record({
    id: fc.stringMatching(/^gh-[0-9a-f-]{8,36}$/),
    status: fc.constantFrom<JobStatus>('succeeded', 'failed', 'cancelled', 'skipped'),
    projects: fc.uniqueArray(nameArb, { minLength: 0, maxLength: 4 }),
    noImage: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    failedAt: fc.option(fc.record({ phase: phaseArb, projectIndex: fc.nat(3), message: textArb }), { nil: undefined }),
    code: fc.constantFrom('E_COMMAND_FAILED', 'E_DOCKERFILE_MISSING', 'E_TIMEOUT', 'E_SERVICE_UNAVAILABLE', 'E_TOOL_UNAVAILABLE', 'E_NOT_ACCEPTED', 'E_CANCELLED'),
    queuePhase: fc.boolean(),
    cancelledBy: fc.option(fc.stringMatching(/^[a-z:#0-9-]{1,30}$/), { nil: undefined }),
  })
  .map(({ id, status, projects, noImage, failedAt, code, queuePhase, cancelledBy }) => {
    const failedProject = failedAt && projects.length > 0 ? projects[failedAt.projectIndex % projects.length] : undefined;
    const phases: PhaseMetric[] =
      status === 'failed' && failedAt
        ? [{ name: failedAt.phase, status: 'failed', ...(failedProject ? { project: failedProject } : {}), startedAt: '2026-12-01T10:00:00Z', durationMs: 5, error: failedAt.message }]
        : [];
    const withImage = projects.filter((p, i) => !noImage[i] && (status === 'succeeded' || (status === 'failed' && p !== failedProject && i % 2 === 0)));
    return {
      id,
      status,
      trigger: 'webhook',
      repository: { fullName: 'acme/app', commit: SHA },
      createdAt: '2026-12-01T10:00:00Z',
      startedAt: '2026-12-01T10:00:01Z',
      finishedAt: '2026-12-01T10:01:05Z',
      phases,
      projects: projects.map((name, i) => ({ name, root: name, built: withImage.includes(name), ...(noImage[i] ? { noImageReason: 'no Dockerfile' } : {}) })),
      images: withImage.map((project) => ({ project, repository: `acme/app/${project}`, tags: ['sha-ababab'], digest: DIGEST, pushed: true })),
      ...(status === 'failed' ? { error: { phase: queuePhase ? 'queue' : failedAt?.phase ?? 'build', code, message: failedAt?.message ?? 'it broke' } } : {}),
      ...(status === 'cancelled' && cancelledBy ? { cancelledBy } : {}),
      ...(status === 'skipped' ? { skipReason: 'branch excluded by .oci-build.yaml' } : {}),
    } as BuildRecord;
  });

describe('recordStatuses', () => {
  it('for any final record: one oci-build context, one per image project, valid descriptions and the page link', () => {
    fc.assert(
      fc.property(recordArb, fc.option(fc.constantFrom('https://ci.example.com', 'https://ci.example.com/'), { nil: undefined }), (record, publicUrl) => {
        const statuses = recordStatuses(record, publicUrl);
        const contexts = statuses.map((s) => s.context);
        expect(contexts[0]).toBe(BUILD_CONTEXT);
        expect(new Set(contexts).size).toBe(contexts.length);
        const imageProjects = record.projects!.filter((p) => !p.noImageReason).map((p) => `oci-build/${p.name}`);
        expect(contexts.slice(1).sort()).toEqual(imageProjects.sort());
        for (const status of statuses) {
          expect(Array.from(status.description).length).toBeLessThanOrEqual(MAX_DESCRIPTION);
          expect(status.description).not.toMatch(/[\n\r\t]/);
          if (publicUrl) expect(status.targetUrl).toBe(`https://ci.example.com/#/builds/${encodeURIComponent(record.id)}`);
          else expect(status).not.toHaveProperty('targetUrl');
        }
        const whole = statuses[0]!;
        const status: string = record.status;
        if (status === 'succeeded') expect(statuses.every((s) => s.state === 'success')).toBe(true);
        if (status === 'skipped') expect(whole).toMatchObject({ state: 'success', description: 'skipped: branch excluded by .oci-build.yaml' });
        if (status === 'cancelled') {
          expect(whole.state).toBe('error');
          expect(whole.description).toMatch(record.cancelledBy ? `cancelled by ${record.cancelledBy}` : /^cancelled/);
        }
        if (status === 'failed') {
          const infrastructure = record.error!.phase === 'queue' || ['E_SERVICE_UNAVAILABLE', 'E_TOOL_UNAVAILABLE', 'E_NOT_ACCEPTED'].includes(record.error!.code);
          expect(whole.state).toBe(infrastructure ? 'error' : 'failure');
          const failed = record.phases.find((p) => p.status === 'failed');
          if (!infrastructure && failed) expect(whole.description.startsWith(`${failed.name}${failed.project ? ` of ${failed.project}` : ''} failed: `)).toBe(true);
          // A project that built its image says so, even when another failed.
          for (const image of record.images) expect(statuses.find((s) => s.context === `oci-build/${image.project}`)).toMatchObject({ state: 'success', description: 'sha256:0123456789ab' });
        }
      }),
      { numRuns: 400 },
    );
  });

  it('names the digest and the duration of a one-image success, and the failed phase of a failure', () => {
    const base = { id: 'gh-1', trigger: 'webhook', repository: { fullName: 'acme/app', commit: SHA }, createdAt: '2026-12-01T10:00:00Z', startedAt: '2026-12-01T10:00:00Z', finishedAt: '2026-12-01T10:01:05Z' } as const;
    const ok = { ...base, status: 'succeeded', phases: [], projects: [{ name: 'app', root: '.', built: true }], images: [{ project: 'app', repository: 'r/app', tags: ['sha-1'], digest: DIGEST, pushed: true }] } as BuildRecord;
    expect(recordStatuses(ok, 'https://ci')).toEqual([
      { context: 'oci-build', state: 'success', description: 'built sha256:0123456789ab in 1m 5s', targetUrl: 'https://ci/#/builds/gh-1' },
      { context: 'oci-build/app', state: 'success', description: 'sha256:0123456789ab', targetUrl: 'https://ci/#/builds/gh-1' },
    ]);
    const failed = {
      ...base,
      status: 'failed',
      phases: [{ name: 'build', project: 'app', status: 'failed', startedAt: base.startedAt, durationMs: 3, error: 'Project app failed to build: exit 1\nundefined: greeting' }],
      projects: [{ name: 'app', root: '.', built: false }],
      images: [],
      error: { phase: 'build', code: 'E_COMMAND_FAILED', message: 'Project app failed to build' },
    } as BuildRecord;
    expect(recordStatuses(failed).map((s) => [s.context, s.state, s.description])).toEqual([
      ['oci-build', 'failure', 'build of app failed: Project app failed to build: exit 1 undefined: greeting'],
      ['oci-build/app', 'failure', 'build failed: Project app failed to build: exit 1 undefined: greeting'],
    ]);
  });

  it('pending while queued or running; no status at all for a build not triggered by a webhook', () => {
    expect(queuedStatuses({ id: 'gh-x' })).toEqual([{ context: 'oci-build', state: 'pending', description: 'queued' }]);
    const running = { id: 'gh-x', status: 'running', trigger: 'webhook', repository: { fullName: 'acme/app', commit: SHA }, createdAt: '', phases: [], images: [] } as BuildRecord;
    expect(recordStatuses(running)).toEqual([{ context: 'oci-build', state: 'pending', description: 'building' }]);
    expect(statusTarget(running)).toEqual({ owner: 'acme', repo: 'app', sha: SHA });
    expect(statusTarget({ ...running, trigger: 'cli' })).toBeUndefined();
    expect(statusTarget({ ...running, repository: { fullName: 'not a repo', commit: SHA } })).toBeUndefined();
    expect(statusTarget({ ...running, repository: { fullName: 'acme/app', commit: 'HEAD' } })).toBeUndefined();
    expect(buildPageUrl(undefined, 'x')).toBeUndefined();
  });

  it('description() keeps any text to one line of at most 140 characters, never splitting a character', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const out = description(text);
        expect(Array.from(out).length).toBeLessThanOrEqual(MAX_DESCRIPTION);
        expect(out).not.toMatch(/\s\s|[\n\r\t]/);
        // No lone surrogate: a cut never splits a character.
        expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(out)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
