import { describe, expect, it } from 'vitest';
import { renderSummary } from '../../src/cli/render/summary.js';
import { renderBuildDetails, renderStatusTable } from '../../src/cli/render/status-table.js';
import type { BuildRecord } from '../../src/core/types.js';

const DIGEST_API = `sha256:${'a1'.repeat(32)}`;
const DIGEST_WEB = `sha256:${'b2'.repeat(32)}`;

/** A monorepo build that pushed one image, kept one local, and built a library without an image. */
function succeededMonorepo(): BuildRecord {
  return {
    id: '20261129-080102-ab12cd',
    status: 'succeeded',
    trigger: 'cli',
    repository: {
      fullName: 'acme/shop',
      cloneUrl: 'https://git.example/acme/shop.git',
      ref: 'refs/heads/main',
      branch: 'main',
      commit: 'abc1234def567890abc1234def567890abc12345',
    },
    createdAt: '2026-11-29T08:01:02.000Z',
    startedAt: '2026-11-29T08:01:02.000Z',
    finishedAt: '2026-11-29T08:01:14.300Z',
    worker: 'laptop:4242',
    phases: [
      { name: 'source', status: 'succeeded', startedAt: '2026-11-29T08:01:02.000Z', durationMs: 230, warning: 'remote unreachable: built from the mirror' },
      { name: 'detect', status: 'succeeded', startedAt: '2026-11-29T08:01:02.300Z', durationMs: 12 },
      { name: 'build', project: 'api', status: 'succeeded', startedAt: '2026-11-29T08:01:02.400Z', durationMs: 3100, cached: true },
      { name: 'build', project: 'web', status: 'succeeded', startedAt: '2026-11-29T08:01:02.400Z', durationMs: 4250 },
      { name: 'build', project: 'lib', status: 'succeeded', startedAt: '2026-11-29T08:01:02.400Z', durationMs: 900 },
      { name: 'image', project: 'api', status: 'succeeded', startedAt: '2026-11-29T08:01:07.000Z', durationMs: 2000 },
      { name: 'image', project: 'web', status: 'succeeded', startedAt: '2026-11-29T08:01:09.000Z', durationMs: 2100 },
      { name: 'push', project: 'api', status: 'succeeded', startedAt: '2026-11-29T08:01:12.000Z', durationMs: 1500 },
    ],
    images: [
      { project: 'api', repository: '127.0.0.1:5000/team/shop/api', tags: ['sha-abc1234', 'main'], digest: DIGEST_API, imageId: 'c'.repeat(64), pushed: true },
      { project: 'web', repository: '127.0.0.1:5000/team/shop/web', tags: ['sha-abc1234', 'main'], digest: DIGEST_WEB, imageId: 'd'.repeat(64), pushed: false },
    ],
    projects: [
      { name: 'api', root: 'apps/api', built: true, cached: true, image: '127.0.0.1:5000/team/shop/api:sha-abc1234' },
      { name: 'web', root: 'apps/web', built: true, image: '127.0.0.1:5000/team/shop/web:sha-abc1234' },
      { name: 'lib', root: 'libs/lib', built: true, noImageReason: 'no Dockerfile (looked for libs/lib/Dockerfile, libs/lib/Containerfile)' },
    ],
    warnings: ['remote unreachable: built from the mirror'],
    logPath: '/var/lib/oci-build/logs/20261129-080102-ab12cd.log',
  };
}

/** A single-project build whose code does not compile. */
function failedBuild(): BuildRecord {
  return {
    id: '20261129-090000-0f0f0f',
    status: 'failed',
    trigger: 'cli',
    repository: { fullName: 'broken-go-repo', branch: 'feature/x', commit: '1111111222222233333334444444555555566666' },
    createdAt: '2026-11-29T09:00:00.000Z',
    startedAt: '2026-11-29T09:00:00.000Z',
    finishedAt: '2026-11-29T09:00:01.500Z',
    phases: [
      { name: 'source', status: 'succeeded', startedAt: '2026-11-29T09:00:00.000Z', durationMs: 20 },
      { name: 'detect', status: 'succeeded', startedAt: '2026-11-29T09:00:00.020Z', durationMs: 3 },
      {
        name: 'build',
        project: 'broken-go-repo',
        status: 'failed',
        startedAt: '2026-11-29T09:00:00.030Z',
        durationMs: 1400,
        error: './main.go:5:2: undefined: fmt.Printn\nexit status 1',
      },
    ],
    images: [],
    projects: [{ name: 'broken-go-repo', language: 'go', root: '.', built: false }],
    logPath: '/var/lib/oci-build/logs/20261129-090000-0f0f0f.log',
    error: { phase: 'build', code: 'E_COMMAND_FAILED', message: './main.go:5:2: undefined: fmt.Printn\nexit status 1' },
  };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/;

const plain = (record: BuildRecord, hint?: string) => renderSummary(record, { color: false, ...(hint ? { hint } : {}) });

/** The lines of a titled section, up to the next blank line. */
function section(text: string, title: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(title);
  expect(start, `section ${title}`).toBeGreaterThanOrEqual(0);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

describe('renderSummary of a successful build', () => {
  const text = plain(succeededMonorepo());

  it('opens with the status, the id and the total duration, then what was built', () => {
    const [first, second] = text.split('\n');
    expect(first).toBe('✔ Build 20261129-080102-ab12cd succeeded in 12s');
    expect(second).toBe('  acme/shop · main · abc1234');
  });

  it('lists each image with its tags, its digest and whether it was pushed', () => {
    const images = section(text, 'Images');
    expect(images).toEqual([
      '  127.0.0.1:5000/team/shop/api  (api)  pushed',
      '    tags    sha-abc1234, main',
      `    digest  ${DIGEST_API}`,
      '  127.0.0.1:5000/team/shop/web  (web)  local only',
      '    tags    sha-abc1234, main',
      `    digest  ${DIGEST_WEB}`,
    ]);
  });

  it('says which projects got no image, and why', () => {
    expect(section(text, 'Projects without an image')).toEqual(['  lib:  no Dockerfile (looked for libs/lib/Dockerfile, libs/lib/Containerfile)']);
  });

  it('gives every phase its duration, per project, with cache hits and warnings', () => {
    const phases = section(text, 'Phases');
    expect(phases).toHaveLength(succeededMonorepo().phases.length);
    expect(phases[0]).toMatch(/^ {2}✔ {2}source +230ms +warning: remote unreachable: built from the mirror$/);
    expect(phases[2]).toMatch(/^ {2}✔ {2}build +api +3\.1s +cached$/);
    expect(phases[3]).toMatch(/^ {2}✔ {2}build +web +4\.3s$/);
    expect(phases[7]).toMatch(/^ {2}✔ {2}push +api +1\.5s$/);
    // The duration column lines up.
    expect(new Set(phases.map((l) => l.search(/\d+(\.\d)?m?s/))).size).toBe(1);
  });

  it('shows the warnings once, and the log path', () => {
    expect(section(text, 'Warnings')).toEqual(['  ⚠ remote unreachable: built from the mirror']);
    expect(text).toContain('Log  /var/lib/oci-build/logs/20261129-080102-ab12cd.log');
    expect(text).not.toMatch(/failed|hint/);
  });

  it('ends with one newline and has no trailing spaces', () => {
    expect(text.endsWith('\n')).toBe(true);
    expect(text.endsWith('\n\n')).toBe(false);
    for (const line of text.split('\n')) expect(line).toBe(line.trimEnd());
  });

  it('says so when an image has no digest', () => {
    const record = succeededMonorepo();
    delete record.images[1]!.digest;
    expect(plain(record)).toContain(`    digest  unknown (image id ${'d'.repeat(12)})`);
  });

  it('leaves out the project names of a single-project build', () => {
    const record = succeededMonorepo();
    record.images = [record.images[0]!];
    record.projects = [record.projects![0]!];
    expect(section(plain(record), 'Images')[0]).toBe('  127.0.0.1:5000/team/shop/api  pushed');
  });
});

describe('renderSummary of a failed build', () => {
  const text = plain(failedBuild());

  it('names the failed phase and the whole message, then a hint pointing at the log', () => {
    const lines = text.split('\n');
    expect(lines[0]).toBe('✖ Build 20261129-090000-0f0f0f failed in 1.5s');
    const at = lines.indexOf('✖ build failed: ./main.go:5:2: undefined: fmt.Printn');
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toBe('  exit status 1');
    expect(lines[at + 2]).toBe('hint: The full output is in /var/lib/oci-build/logs/20261129-090000-0f0f0f.log');
  });

  it('marks the failed phase in the phase list with the first line of its error', () => {
    expect(section(text, 'Phases')[2]).toMatch(/^ {2}✖ {2}build +broken-go-repo +1\.4s +failed: \.\/main\.go:5:2: undefined: fmt\.Printn …$/);
  });

  it('says why a project got no image', () => {
    expect(section(text, 'Projects without an image')).toEqual(['  broken-go-repo:  build failed']);
  });

  it('prefers the caller’s hint, and derives one from the error code otherwise', () => {
    expect(plain(failedBuild(), 'Fix the compile error in main.go')).toContain('hint: Fix the compile error in main.go');
    const missing = failedBuild();
    missing.error = { phase: 'image', code: 'E_DOCKERFILE_MISSING', message: 'No Dockerfile for project x: looked for /src/Dockerfile, /src/Containerfile' };
    const missingText = plain(missing);
    expect(missingText).toContain('✖ image failed: No Dockerfile for project x: looked for /src/Dockerfile, /src/Containerfile');
    expect(missingText).toContain('--no-image');
    const timeout = failedBuild();
    timeout.error = { phase: 'build', code: 'E_TIMEOUT', message: 'The build ran past its timeout of 30m' };
    expect(plain(timeout)).toContain('hint: Raise build.timeout (OCI_BUILD_BUILD_TIMEOUT)');
  });
});

describe('renderSummary colour', () => {
  it('has no escape codes without colour (NO_COLOR), and has them with it', () => {
    for (const record of [succeededMonorepo(), failedBuild()]) {
      expect(renderSummary(record, { color: false })).not.toMatch(ANSI);
      const coloured = renderSummary(record, { color: true });
      expect(coloured).toMatch(ANSI);
      // Colour changes nothing but the escape codes.
      expect(coloured.replace(new RegExp(ANSI.source, 'g'), '')).toBe(renderSummary(record, { color: false }));
    }
  });

  it('never prints escape sequences that came from the record', () => {
    const record = failedBuild();
    record.repository.branch = 'evil\u001b]0;pwned\u0007';
    record.error!.message = 'boom \u001b[2J\u001b[31mred';
    const text = renderSummary(record, { color: false });
    expect(text).not.toContain('\u001b');
    expect(text).not.toContain('\u0007');
    expect(text).toContain('boom red');
  });
});

describe('renderStatusTable', () => {
  const now = new Date('2026-11-29T09:03:30.000Z');
  const running: BuildRecord = {
    ...succeededMonorepo(),
    id: 'r1',
    status: 'running',
    repository: { fullName: 'acme/a-much-longer-repository-name', branch: 'release/2026.11', commit: 'fedcba9876543210fedcba9876543210fedcba98' },
    createdAt: '2026-11-29T09:00:30.000Z',
    startedAt: '2026-11-29T09:01:00.000Z',
    finishedAt: undefined,
  };
  const queued: BuildRecord = {
    id: 'q1',
    status: 'queued',
    trigger: 'webhook',
    repository: { fullName: 'acme/web' },
    createdAt: '2026-11-29T09:03:25.000Z',
    phases: [],
    images: [],
  };
  const records = [queued, running, failedBuild(), succeededMonorepo()];
  const text = renderStatusTable(records, { now, color: false });
  const lines = text.trimEnd().split('\n');

  it('has a header and one row per build, in the order given', () => {
    expect(lines).toHaveLength(records.length + 1);
    expect(lines[0]!.split(/ {2,}/)).toEqual(['ID', 'REPOSITORY', 'BRANCH', 'COMMIT', 'STATUS', 'DURATION', 'AGE']);
    expect(lines.slice(1).map((l) => l.split(' ')[0])).toEqual(['q1', 'r1', '20261129-090000-0f0f0f', '20261129-080102-ab12cd']);
  });

  it('starts every column at the same place on every line, with no trailing spaces', () => {
    const header = lines[0]!;
    const starts = ['ID', 'REPOSITORY', 'BRANCH', 'COMMIT', 'STATUS', 'DURATION', 'AGE'].map((h) => header.indexOf(h));
    for (const line of lines) {
      expect(line).toBe(line.trimEnd());
      for (const start of starts.slice(1)) {
        // A column starts after at least two spaces, with a non-space at its first character.
        expect(line.slice(start - 2, start)).toBe('  ');
        expect(line[start]).not.toBe(' ');
      }
    }
    // The repository column is as wide as its longest value.
    expect(starts[2]! - starts[1]!).toBe('acme/a-much-longer-repository-name'.length + 2);
  });

  it('shows the short commit, the status, the duration and the age of each build', () => {
    const cells = (line: string) => line.split(/ {2,}/);
    expect(cells(lines[1]!)).toEqual(['q1', 'acme/web', '-', '-', 'queued', '-', '5s ago']);
    expect(cells(lines[2]!)).toEqual(['r1', 'acme/a-much-longer-repository-name', 'release/2026.11', 'fedcba9', 'running', '2m30s…', '3m ago']);
    expect(cells(lines[3]!)).toEqual(['20261129-090000-0f0f0f', 'broken-go-repo', 'feature/x', '1111111', 'failed', '1.5s', '3m ago']);
    expect(cells(lines[4]!)).toEqual(['20261129-080102-ab12cd', 'acme/shop', 'main', 'abc1234', 'succeeded', '12s', '1h ago']);
  });

  it('keeps the columns aligned with colour on, and has no escape codes with it off', () => {
    expect(text).not.toMatch(ANSI);
    const coloured = renderStatusTable(records, { now, color: true });
    expect(coloured).toMatch(ANSI);
    expect(coloured.replace(new RegExp(ANSI.source, 'g'), '')).toBe(text);
  });

  it('says so when there is nothing to show', () => {
    expect(renderStatusTable([], { now, color: false })).toBe('No builds found.\n');
  });
});

describe('renderBuildDetails', () => {
  const now = new Date('2026-11-29T09:03:30.000Z');

  it('shows the source, the worker, the status, the phases, the images and the log', () => {
    const text = renderBuildDetails(succeededMonorepo(), { now, color: false });
    const lines = text.split('\n');
    expect(lines).toContain('Repository  acme/shop');
    expect(lines).toContain('Ref         refs/heads/main');
    expect(lines).toContain('Commit      abc1234def567890abc1234def567890abc12345');
    expect(lines).toContain('Worker      laptop:4242');
    expect(lines).toContain('Status      succeeded');
    expect(lines).toContain('Created     2026-11-29T08:01:02.000Z (1h ago)');
    expect(lines).toContain('Log         /var/lib/oci-build/logs/20261129-080102-ab12cd.log');
    const header = lines.findIndex((l) => l.startsWith('PHASE'));
    expect(lines[header]!.split(/ {2,}/)).toEqual(['PHASE', 'PROJECT', 'STATUS', 'DURATION', 'NOTE']);
    expect(lines[header + 1]!.split(/ {2,}/)).toEqual(['source', '-', 'succeeded', '230ms', 'warning: remote unreachable: built from the mirror']);
    expect(lines[header + 3]!.split(/ {2,}/)).toEqual(['build', 'api', 'succeeded', '3.1s', 'cached']);
    expect(text).toContain(`    digest  ${DIGEST_API}`);
    expect(text).toContain('  127.0.0.1:5000/team/shop/web  (web)  local only');
    for (const line of lines) expect(line).toBe(line.trimEnd());
  });

  it('says which build a build waits for, for which project, and since when', () => {
    const waiting: BuildRecord = {
      ...succeededMonorepo(),
      status: 'running',
      waitingFor: { project: 'api', buildId: 'gh-1234', worker: 'worker-b', since: '2026-11-29T09:02:30.000Z' },
    };
    delete waiting.finishedAt;
    const lines = renderBuildDetails(waiting, { now, color: false }).split('\n');
    expect(lines).toContain('Waiting for  build gh-1234 on worker-b to make the image of api (same inputs), since 2026-11-29T09:02:30.000Z (1m ago)');
    expect(renderBuildDetails(succeededMonorepo(), { now, color: false })).not.toContain('Waiting for');
  });

  it('shows a failed phase’s error and the build’s error with its code', () => {
    const text = renderBuildDetails(failedBuild(), { now, color: false });
    const lines = text.split('\n');
    expect(lines.find((l) => l.startsWith('build'))!.split(/ {2,}/)).toEqual([
      'build',
      'broken-go-repo',
      'failed',
      '1.4s',
      './main.go:5:2: undefined: fmt.Printn exit status 1',
    ]);
    expect(lines).toContain('Error (build, E_COMMAND_FAILED): ./main.go:5:2: undefined: fmt.Printn');
    expect(renderBuildDetails(failedBuild(), { now, color: false })).not.toMatch(ANSI);
  });
});
