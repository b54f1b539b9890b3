// SIGINT and SIGTERM on the short-lived commands, as a user (Ctrl-C) or a CI runner (SIGTERM)
// sends them: `build` cancels the build and records it cancelled; `status --follow` stops
// following. One handler for both (exec/shutdown-signals.ts).

import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { fixtureRepo, REPO_ROOT, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/ports.js';

let sandbox: TempDir;
let env: Record<string, string>;
let repo: FixtureRepo;

beforeAll(async () => {
  sandbox = await tempDir('oci-build-signals-');
  env = isolatedEnv(sandbox.path);
  repo = await fixtureRepo('sample-go-repo');
});

afterAll(async () => {
  await repo?.cleanup();
  await sandbox?.cleanup();
});

/** Starts the CLI; `result` settles when it exits. */
function startCli(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: { ...process.env, CI: 'true', NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk) => (stderr += String(chunk)));
  const result = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit({ code, signal, stdout, stderr }));
  });
  return { child, result, output: () => stdout + stderr };
}

describe('oci-build build on a signal', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s cancels the running build: the command is ended, the record says cancelled, exit 1', async (signal) => {
    const marker = join(sandbox.path, `started-${signal}`);
    const config = join(sandbox.path, `slow-${signal}.yaml`);
    await writeFile(config, ['build:', '  sandbox: none', '  projects:', "    '.':", `      command: ["sh", "-c", "touch ${marker}; sleep 120"]`, ''].join('\n'));
    const build = startCli(['build', repo.dir, '--no-image', '--json', '-c', config]);
    await waitFor(async () => (await readFile(marker).then(() => true, () => false)), { what: 'the build command to start', timeoutMs: 60_000 });
    const sent = Date.now();
    build.child.kill(signal);
    const result = await build.result;
    // Ended by our handler (an exit code), not by the signal's default action, and well before the sleep ends.
    expect(result.signal, result.stderr).toBeNull();
    expect(result.code).toBe(1);
    expect(Date.now() - sent).toBeLessThan(20_000);
    const record = JSON.parse(result.stdout) as BuildRecord;
    expect(record.status).toBe('cancelled');
    expect(record.error).toMatchObject({ code: 'E_CANCELLED' });
    expect(record.error?.message).toContain(`Interrupted (${signal})`);
  });
});

describe('oci-build status --follow on a signal', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s stops following a local build that is still running, exit 0', async (signal) => {
    const id = `20260101-000000-${signal === 'SIGINT' ? 'a1a1a1' : 'b2b2b2'}`;
    const builds = join(env.OCI_BUILD_WORK_DIR!, 'builds');
    const logPath = join(env.OCI_BUILD_WORK_DIR!, 'logs', `${id}.log`);
    await mkdir(builds, { recursive: true });
    await mkdir(join(env.OCI_BUILD_WORK_DIR!, 'logs'), { recursive: true });
    await writeFile(logPath, 'line one\n');
    const record: BuildRecord = {
      id,
      status: 'running',
      trigger: 'cli',
      repository: { fullName: 'sample-go-repo', commit: 'a'.repeat(40) },
      createdAt: '2026-01-01T00:00:00.000Z',
      phases: [],
      images: [],
      logPath,
    };
    await writeFile(join(builds, `${id}.json`), JSON.stringify(record));
    const follow = startCli(['status', id, '--follow']);
    await waitFor(() => follow.output().includes('line one'), { what: 'the log to be printed', timeoutMs: 30_000 });
    follow.child.kill(signal);
    const result = await follow.result;
    expect(result.signal, result.stderr).toBeNull();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(id);
    expect(await readdir(builds)).toContain(`${id}.json`);
  });
});
