// The inputs of a result key as the adapters gather them (cache/result-inputs.ts) from real Git
// checkouts: the same commit in two work directories gives one key; a change under a project, or
// under what it depends on in Nx's graph, changes its key; a change elsewhere does not.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBuildResults } from '../../src/cache/result-inputs.js';
import { imageLabels } from '../../src/core/naming.js';
import type { BuildResults, ResultIndex, SourceCheckout } from '../../src/core/ports.js';
import type { BuildJob, Project, Workspace } from '../../src/core/types.js';
import { runCommand } from '../../src/exec/run-command.js';
import { checkoutLocal } from '../../src/git/local-source.js';
import { fixtureRepo, git, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';

const ctx = { signal: new AbortController().signal, log: { write() {} } };
const noIndex: ResultIndex = { get: async () => undefined, put: async () => undefined };
const job: BuildJob = { id: 'b1', trigger: 'cli', source: { kind: 'local', path: '.' }, image: { push: false, tlsVerify: true, buildArgs: {} }, createdAt: '2026-01-01T00:00:00.000Z' };

let results: BuildResults;
let sandbox: TempDir;
const repos: FixtureRepo[] = [];

beforeAll(async () => {
  sandbox = await tempDir('oci-build-result-inputs-');
  results = createBuildResults({
    run: runCommand,
    index: noIndex,
    images: { locate: async () => undefined, retag: async () => ({ pushed: false }) },
    version: '0.0.0-test',
    build: { env: {}, sandbox: 'bubblewrap' },
    parentEnv: { PATH: process.env.PATH, HOME: '/home/someone' },
  });
});

afterAll(async () => {
  for (const r of repos) await r.cleanup();
  await sandbox?.cleanup();
});

async function keyOf(checkout: SourceCheckout, workspace: Workspace, project: Project, buildArgs: Record<string, string> = {}): Promise<string> {
  const keyed = await results.keyOf(
    { workspace, project, checkout, repository: checkout.repository, labels: imageLabels(checkout.repository, checkout.commitTime), imageRepository: workspace.name, buildArgs, tlsVerify: true },
    ctx,
  );
  if ('reason' in keyed) throw new Error(keyed.reason);
  return keyed.key;
}

function single(dir: string): { workspace: Workspace; project: Project } {
  const project: Project = { name: 'app', root: '.', language: 'go', dockerfile: join(dir, 'Dockerfile'), dockerfileCandidates: [join(dir, 'Dockerfile')] };
  return { workspace: { kind: 'single', dir, name: 'app', projects: [project], selected: ['app'] }, project };
}

describe('result key inputs', () => {
  it('the same commit cloned into different work directories gives one key; a changed build arg or a new tree another', async () => {
    const origin = await fixtureRepo('sample-go-repo');
    repos.push(origin);
    const keys = new Set<string>();
    await fc.assert(
      fc.asyncProperty(fc.stringMatching(/^[a-z][a-z0-9-]{0,11}$/), async (name) => {
        const dir = join(sandbox.path, `${name}-${keys.size}-${Math.random().toString(36).slice(2, 6)}`, 'deep', 'sample-go-repo');
        mkdirSync(join(dir, '..'), { recursive: true });
        execFileSync('git', ['clone', '-q', origin.dir, dir]);
        const checkout = await checkoutLocal(dir, job, ctx);
        const { workspace, project } = single(dir);
        keys.add(await keyOf(checkout, workspace, project));
      }),
      { numRuns: 4 },
    );
    expect(keys.size).toBe(1);

    const checkout = await checkoutLocal(origin.dir, job, ctx);
    const { workspace, project } = single(origin.dir);
    const key = await keyOf(checkout, workspace, project);
    expect(key).toBe([...keys][0]);
    expect(await keyOf(checkout, workspace, project, { VERSION: '2' })).not.toBe(key);
    writeFileSync(join(origin.dir, 'main.go'), 'package main\n\nfunc main() {}\n');
    origin.commitAll('another tree');
    const changed = await checkoutLocal(origin.dir, job, ctx);
    expect(await keyOf(changed, workspace, project)).not.toBe(key);
  });

  it('Nx: a change in a library changes the key of the app depending on it, not of the app that does not', async () => {
    const dir = join(sandbox.path, 'nx-ws');
    for (const p of ['apps/a', 'apps/b', 'libs/shared']) {
      mkdirSync(join(dir, p), { recursive: true });
      writeFileSync(join(dir, p, 'main.go'), `package main // ${p}\n`);
      writeFileSync(join(dir, p, 'Dockerfile'), 'FROM scratch\n');
    }
    writeFileSync(join(dir, 'nx.json'), '{}\n');
    git(dir, ['init', '-q', '-b', 'main']);
    const commit = () => {
      git(dir, ['add', '-A']);
      git(dir, ['commit', '-q', '-m', 'c']);
    };
    commit();
    const project = (name: string, root: string, dependsOn?: string[]): Project => ({ name, root, language: 'go', dockerfile: join(dir, root, 'Dockerfile'), dockerfileCandidates: [], ...(dependsOn ? { dependsOn } : {}) });
    const projects = [project('a', 'apps/a', ['shared']), project('b', 'apps/b'), project('shared', 'libs/shared')];
    const workspace: Workspace = { kind: 'nx', dir, name: 'ws', projects, selected: ['a', 'b'] };
    const keys = async () => {
      const checkout = await checkoutLocal(dir, job, ctx);
      return { a: await keyOf(checkout, workspace, projects[0]!), b: await keyOf(checkout, workspace, projects[1]!) };
    };
    const before = await keys();
    writeFileSync(join(dir, 'libs/shared/main.go'), 'package main // changed\n');
    commit();
    const afterLib = await keys();
    expect(afterLib.a).not.toBe(before.a);
    expect(afterLib.b).toBe(before.b);
    writeFileSync(join(dir, 'nx.json'), '{"namedInputs":{}}\n');
    commit();
    const afterRoot = await keys();
    expect(afterRoot.a).not.toBe(afterLib.a);
    expect(afterRoot.b).not.toBe(afterLib.b);
  });
});
