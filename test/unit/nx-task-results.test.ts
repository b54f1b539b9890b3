import { describe, expect, it } from 'vitest';
import { NxOutputSections, isCacheHit, parseNxProfile, stripAnsi } from '../../src/build/nx-task-results.js';
import { affectedStdin, parseNxGraph, parseNxProjectList } from '../../src/detect/nx-graph.js';

// Shaped like what Nx 22.7 writes for NX_PROFILE (Chrome trace events).
const PROFILE = JSON.stringify([
  { name: 'thread_name', ph: 'M', pid: 1, tid: 0, ts: 0, args: { name: 'Group #1' } },
  { name: 'go-app:build', cat: 'go-app,build,', ph: 'X', ts: 1_795_939_793_261_000, dur: 2_176_000, pid: 1, tid: 1, args: { target: { project: 'go-app', target: 'build' }, status: 'success' } },
  { name: 'dotnet-app:build', ph: 'X', ts: 1_795_939_793_261_000, dur: 8000, pid: 1, tid: 0, args: { target: { project: 'dotnet-app', target: 'build' }, status: 'local-cache' } },
  { name: 'java-app:build', ph: 'X', ts: 1_795_939_793_261_000, dur: 14_994_000, pid: 1, tid: 2, args: { target: { project: 'java-app', target: 'build' }, status: 'failure' } },
]);

describe('parseNxProfile', () => {
  it('reads one result per task with its status, start and duration in milliseconds', () => {
    const results = parseNxProfile(PROFILE);
    expect(results).toEqual([
      { taskId: 'go-app:build', project: 'go-app', target: 'build', status: 'success', startMs: 1_795_939_793_261, durationMs: 2176 },
      { taskId: 'dotnet-app:build', project: 'dotnet-app', target: 'build', status: 'local-cache', startMs: 1_795_939_793_261, durationMs: 8 },
      { taskId: 'java-app:build', project: 'java-app', target: 'build', status: 'failure', startMs: 1_795_939_793_261, durationMs: 14_994 },
    ]);
  });

  it('gives no results for a missing, truncated or foreign file', () => {
    expect(parseNxProfile('')).toEqual([]);
    expect(parseNxProfile('[{"name":"a:build","ph":"X"')).toEqual([]);
    expect(parseNxProfile('{"tasks":[]}')).toEqual([]);
    expect(parseNxProfile('[null, 3, {"ph":"X"}]')).toEqual([]);
  });

  it('counts every cache status as a hit, and nothing else', () => {
    expect(['local-cache', 'local-cache-kept-existing', 'remote-cache'].every(isCacheHit)).toBe(true);
    expect(['success', 'failure', 'skipped', 'cache-miss'].some(isCacheHit)).toBe(false);
  });
});

// Nx 22.7 static output of a run where java-app failed (mvn -q), trimmed.
const STATIC_OUTPUT = `
 NX   Running target build for 3 projects:

- go-app
- java-app
- dotnet-app

> nx run dotnet-app:build  [local cache]

> dotnet publish -c Release -o dist --nologo

  dotnet-app -> /w/apps/dotnet-app/dist/

> nx run java-app:build

> mvn -B -o -q package -DskipTests

\u001b[0m\u001b[0m[ERROR] COMPILATION ERROR : 
[ERROR] /w/apps/java-app/src/main/java/Broken.java:[1,15] reached end of file while parsing
[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.10.1:compile (default-compile) on project java-app: Compilation failure
[ERROR] -> [Help 1]
[ERROR] 
[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.
[ERROR] Re-run Maven using the -X switch to enable full debug logging.
[ERROR] For more information about the errors and possible solutions, please read the following articles:
[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/MojoFailureException
Warning: command "mvn -B -o -q package -DskipTests" exited with non-zero status code
> nx run go-app:build  [existing outputs match the cache, left as is]

> go build -trimpath -o dist/ ./...


 NX   Running target build for 3 projects failed

Tasks not run because their dependencies failed or --nx-bail=true:

- api:build

Failed tasks:

- java-app:build

Performance Profile: /tmp/x/profile.json
`;

describe('NxOutputSections', () => {
  const sections = new NxOutputSections();
  for (const line of STATIC_OUTPUT.split('\n')) sections.feed(line);

  it('splits the output per task, with the header status', () => {
    expect([...sections.sections.keys()]).toEqual(['dotnet-app:build', 'java-app:build', 'go-app:build']);
    expect(sections.sections.get('dotnet-app:build')!.label).toBe('local cache');
    expect(sections.sections.get('go-app:build')!.label).toBe('existing outputs match the cache, left as is');
    expect(sections.sections.get('java-app:build')!.label).toBeUndefined();
  });

  it('reads the failed and not-run tasks of the summary', () => {
    expect(sections.failedTasks).toEqual(['java-app:build']);
    expect(sections.notRunTasks).toEqual(['api:build']);
  });

  it("gives a failed task's own lines, without colour codes or boilerplate, and nothing of the summary", () => {
    const lines = sections.errorLines('java-app:build');
    expect(lines[0]).toBe('> mvn -B -o -q package -DskipTests');
    expect(lines).toContain('[ERROR] /w/apps/java-app/src/main/java/Broken.java:[1,15] reached end of file while parsing');
    expect(lines.join('\n')).not.toMatch(/\u001b|Re-run Maven|Help 1\] http|exited with non-zero|Failed tasks|go build/);
    expect(sections.errorLines('java-app:build', 2)).toHaveLength(2);
    expect(sections.errorLines('no-such:build')).toEqual([]);
  });

  it('keeps only the last lines of a long task', () => {
    const s = new NxOutputSections(5);
    s.feed('> nx run a:build');
    for (let i = 0; i < 100; i++) s.feed(`line ${i}`);
    expect(s.errorLines('a:build')).toEqual(['line 95', 'line 96', 'line 97', 'line 98', 'line 99']);
    expect(s.tail).toHaveLength(5);
  });

  it('strips ANSI sequences', () => {
    expect(stripAnsi('\u001b[1m\u001b[31merror\u001b[39m\u001b[22m')).toBe('error');
  });
});

describe('parseNxGraph', () => {
  const graph = {
    graph: {
      nodes: {
        'go-app': { name: 'go-app', type: 'app', data: { root: 'apps/go-app', targets: { build: {}, test: {} } } },
        shared: { name: 'shared', type: 'lib', data: { root: 'libs/shared/', targets: { vet: {} } } },
        root: { name: 'root', type: 'app', data: { root: '.', targets: {} } },
      },
      dependencies: {
        'go-app': [
          { source: 'go-app', target: 'shared', type: 'implicit' },
          { source: 'go-app', target: 'npm:left-pad', type: 'static' },
        ],
        shared: [],
      },
    },
  };

  it('lists the projects (sorted) with root and targets, and the dependencies between them', () => {
    const parsed = parseNxGraph(JSON.stringify(graph));
    expect(parsed.projects).toEqual([
      { name: 'go-app', root: 'apps/go-app', type: 'app', targets: ['build', 'test'] },
      { name: 'root', root: '.', type: 'app', targets: [] },
      { name: 'shared', root: 'libs/shared', type: 'lib', targets: ['vet'] },
    ]);
    expect(parsed.dependencies).toEqual({ 'go-app': ['shared'], shared: [] });
  });

  it('rejects output that is not a graph', () => {
    expect(() => parseNxGraph('{"nodes":{}}')).toThrow(/graph\.nodes/);
    expect(() => parseNxGraph('not json')).toThrow();
  });
});

describe('parseNxProjectList / affectedStdin', () => {
  it('reads the JSON list even with text around it', () => {
    expect(parseNxProjectList('["shared","go-app"]\n')).toEqual(['shared', 'go-app']);
    expect(parseNxProjectList(' NX   some warning\n[]\n')).toEqual([]);
    expect(() => parseNxProjectList('nothing')).toThrow(/no JSON list/);
    expect(() => parseNxProjectList('[1,2]')).toThrow(/not a list of project names/);
  });

  it('gives one file per line, leaving out names with a newline', () => {
    expect(affectedStdin(['a b/c,d.go', 'x\ny', '', 'libs/z.go'])).toBe('a b/c,d.go\nlibs/z.go\n');
  });
});
