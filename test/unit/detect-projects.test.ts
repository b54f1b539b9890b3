import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { BuildFailedError, InputError } from '../../src/core/errors.js';
import type { DetectOptions, PhaseContext, ProjectDetector } from '../../src/core/ports.js';
import type { Workspace } from '../../src/core/types.js';
import { createProjectDetector } from '../../src/detect/detect-projects.js';
import { firstInstruction } from '../../src/detect/dockerfile.js';
import { FIXTURES_DIR, tempDir, type TempDir } from '../helpers/fixtures.js';

const lines: string[] = [];
const ctx: PhaseContext = { signal: new AbortController().signal, log: { write: (line) => lines.push(line) } };
const detector = createProjectDetector({ overrides: {} });

async function files(dir: string, entries: Record<string, string>): Promise<string> {
  for (const [name, content] of Object.entries(entries)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  return dir;
}

describe('createProjectDetector (single-project repositories)', () => {
  let tmp: TempDir;
  beforeEach(async () => {
    tmp = await tempDir('oci-build-detect-');
    lines.length = 0;
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  test.each([
    ['go.mod', 'go'],
    ['pom.xml', 'java'],
    ['App.csproj', 'dotnet'],
    ['Everything.sln', 'dotnet'],
    ['package.json', 'node'],
  ] as const)('%s marks a %s project', async (marker, language) => {
    const dir = await files(tmp.path, { [marker]: '', Dockerfile: 'FROM scratch\n' });
    const ws = await detector.detect(dir, { name: 'svc' }, ctx);
    expect(ws).toEqual<Workspace>({
      kind: 'single',
      dir,
      name: 'svc',
      projects: [
        {
          name: 'svc',
          root: '.',
          language,
          dockerfile: join(dir, 'Dockerfile'),
          dockerfileCandidates: [join(dir, 'Dockerfile'), join(dir, 'Containerfile')],
        },
      ],
      selected: ['svc'],
    });
  });

  test('go.mod wins over a package.json used for tooling', async () => {
    const dir = await files(tmp.path, { 'go.mod': 'module x\n', 'package.json': '{}' });
    const ws = await detector.detect(dir, { name: 'svc' }, ctx);
    expect(ws.projects[0]!.language).toBe('go');
  });

  test('the fixtures are detected as their language', async () => {
    const cases = { 'sample-go-repo': 'go', 'sample-java-repo': 'java', 'sample-dotnet-repo': 'dotnet', 'broken-go-repo': 'go', 'no-dockerfile-repo': 'go' };
    for (const [fixture, language] of Object.entries(cases)) {
      const ws = await detector.detect(join(FIXTURES_DIR, fixture), { name: fixture }, ctx);
      expect(ws.projects[0]!.language, fixture).toBe(language);
      expect(ws.projects[0]!.dockerfile === undefined, fixture).toBe(fixture === 'no-dockerfile-repo');
    }
  });

  test('a Containerfile is used when there is no Dockerfile; a Dockerfile wins over it', async () => {
    const dir = await files(tmp.path, { 'go.mod': '', Containerfile: '# comment\n\nARG BASE=scratch\nFROM ${BASE}\n' });
    expect((await detector.detect(dir, { name: 'svc' }, ctx)).projects[0]!.dockerfile).toBe(join(dir, 'Containerfile'));
    await files(dir, { Dockerfile: 'FROM scratch\n' });
    expect((await detector.detect(dir, { name: 'svc' }, ctx)).projects[0]!.dockerfile).toBe(join(dir, 'Dockerfile'));
  });

  test('no Dockerfile is not an error here: the candidates are listed for the image phase', async () => {
    const dir = await files(tmp.path, { 'go.mod': '' });
    const ws = await detector.detect(dir, { name: 'svc' }, ctx);
    expect(ws.projects[0]!.dockerfile).toBeUndefined();
    expect(ws.projects[0]!.dockerfileCandidates).toEqual([join(dir, 'Dockerfile'), join(dir, 'Containerfile')]);
  });

  test.each([
    ['RUN echo hi\nFROM scratch\n', /line 1 starts with "RUN"/],
    ['# syntax=docker/dockerfile:1\n\n  copy . /app\n', /line 3 starts with "COPY"/],
    ['# only comments\n\n', /has no instructions/],
    ['', /has no instructions/],
  ])('an invalid Dockerfile is a BuildFailedError naming the file (%j)', async (content, message) => {
    const dir = await files(tmp.path, { 'go.mod': '', Dockerfile: content });
    const err = await detector.detect(dir, { name: 'svc' }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildFailedError);
    expect((err as Error).message).toContain(join(dir, 'Dockerfile'));
    expect((err as Error).message).toMatch(message);
  });

  test('a Dockerfile that is a directory, or a link out of the repository, is a BuildFailedError', async () => {
    const dir = await files(tmp.path, { 'repo/go.mod': '', 'outside/Dockerfile': 'FROM scratch\n' });
    await mkdir(join(dir, 'repo', 'Dockerfile'));
    let err = await detector.detect(join(dir, 'repo'), { name: 'svc' }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildFailedError);
    expect((err as Error).message).toMatch(/directory/);

    await files(dir, { 'repo2/go.mod': '' });
    await symlink(join(dir, 'outside', 'Dockerfile'), join(dir, 'repo2', 'Dockerfile'));
    err = await detector.detect(join(dir, 'repo2'), { name: 'svc' }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildFailedError);
    expect((err as Error).message).toMatch(/outside the repository/);

    // Dangling inside the repository: not an escape, still no Dockerfile to read.
    await files(dir, { 'repo3/go.mod': '' });
    await symlink('missing', join(dir, 'repo3', 'Dockerfile'));
    err = await detector.detect(join(dir, 'repo3'), { name: 'svc' }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildFailedError);
    expect((err as Error).message).toContain(join(dir, 'repo3', 'Dockerfile'));
  });

  test('no marker file is an InputError (exit 2) naming the directory and the markers', async () => {
    const dir = await files(tmp.path, { 'README.md': '# nothing to build', Dockerfile: 'FROM scratch\n' });
    const err = await detector.detect(dir, { name: 'svc' }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).exitCode).toBe(2);
    for (const part of [dir, 'go.mod', 'pom.xml', '*.csproj', '*.sln', 'package.json']) expect((err as Error).message).toContain(part);
  });

  test('a source that is not a directory is an InputError', async () => {
    await expect(detector.detect(join(tmp.path, 'nope'), { name: 'svc' }, ctx)).rejects.toBeInstanceOf(InputError);
  });

  test('--project: a known name selects it, an unknown one is an InputError listing the available names', async () => {
    const dir = await files(tmp.path, { 'go.mod': '' });
    expect((await detector.detect(dir, { name: 'svc', projects: ['svc'] }, ctx)).selected).toEqual(['svc']);
    const err = await detector.detect(dir, { name: 'svc', projects: ['api'] }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain('"api"');
    expect((err as Error).message).toContain('"svc"');
  });

  test('a build command override applies by project name, else by "."', async () => {
    const dir = await files(tmp.path, { 'go.mod': '' });
    const byName = createProjectDetector({ overrides: { svc: { command: ['make', 'dist'] }, '.': { command: ['other'] } } });
    expect((await byName.detect(dir, { name: 'svc' }, ctx)).projects[0]!.buildCommand).toEqual(['make', 'dist']);
    const byDot = createProjectDetector({ overrides: { '.': { command: ['go', 'build', '-o', 'dist/app', '.'] } } });
    expect((await byDot.detect(dir, { name: 'svc' }, ctx)).projects[0]!.buildCommand).toEqual(['go', 'build', '-o', 'dist/app', '.']);
    const other = createProjectDetector({ overrides: { api: { command: ['x'] } } });
    expect((await other.detect(dir, { name: 'svc' }, ctx)).projects[0]!.buildCommand).toBeUndefined();
  });

  test('an nx.json hands detection to the Nx detector when one is given, and only then', async () => {
    const dir = await files(tmp.path, { 'nx.json': '{}', 'package.json': '{}' });
    const calls: Array<{ dir: string; options: DetectOptions }> = [];
    const nx: ProjectDetector = {
      async detect(d, options) {
        calls.push({ dir: d, options });
        return { kind: 'nx', dir: d, name: options.name, projects: [], selected: [] };
      },
    };
    const ws = await createProjectDetector({ overrides: {}, nx }).detect(dir, { name: 'mono' }, ctx);
    expect(ws.kind).toBe('nx');
    expect(calls).toEqual([{ dir, options: { name: 'mono' } }]);
    // Without an Nx detector it is a Node project like any other.
    expect((await detector.detect(dir, { name: 'mono' }, ctx)).projects[0]!.language).toBe('node');
  });
});

describe('firstInstruction', () => {
  test('skips comments, parser directives, blank lines and a BOM; upper-cases the keyword', () => {
    expect(firstInstruction('\uFEFF# syntax=docker/dockerfile:1\n# escape=`\n\n\tfrom scratch')).toEqual({ keyword: 'FROM', line: 4 });
    expect(firstInstruction('\r\n\r\nARG X=1\r\nFROM scratch')).toEqual({ keyword: 'ARG', line: 3 });
    expect(firstInstruction('#only\n')).toBeUndefined();
  });
});
