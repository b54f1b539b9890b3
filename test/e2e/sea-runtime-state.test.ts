// Nothing the single executable's startup snapshot computed at build time leaks into a run: the
// snapshot is taken once, on the build machine, and every run must still see its own environment,
// working directory, home, terminal settings, hostname, pid, clock and random bytes. Each check runs the same
// executable twice under different values and expects each run to show its own.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/ports.js';
import { ensureSeaExecutable, runExecutable } from '../helpers/sea-executable.js';

let exe: string;
let dir: TempDir;
let nats: NatsServer;

beforeAll(async () => {
  exe = ensureSeaExecutable();
  dir = await tempDir('oci-build-sea-state-');
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
  await dir?.cleanup();
});

function run(args: string[], options: { cwd: string; env: Record<string, string> }) {
  return runExecutable(exe, args, { cwd: options.cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...options.env }, timeoutMs: 60_000 });
}

type Setting = { key: string; value: unknown; source: string };

describe('dist/oci-build reads its run-time state when it runs, not when it was built', () => {
  it('environment, working directory (its config file) and HOME', async () => {
    const shown = [];
    for (const [name, concurrency, nats] of [['a', 3, 'nats://127.0.0.1:4101'], ['b', 5, 'nats://127.0.0.1:4102']] as const) {
      const cwd = join(dir.path, name);
      mkdirSync(cwd);
      writeFileSync(join(cwd, 'oci-build.config.yaml'), `worker:\n  concurrency: ${concurrency}\n`);
      const result = await run(['config', 'show', '--json'], { cwd, env: { HOME: join(dir.path, `home-${name}`), OCI_BUILD_NATS_URL: nats } });
      expect(result.code).toBe(0);
      const report = JSON.parse(result.stdout) as { configFile: string; settings: Setting[] };
      const value = (key: string) => report.settings.find((s) => s.key === key);
      shown.push({ file: report.configFile, workDir: value('workDir')?.value, concurrency: value('worker.concurrency'), nats: value('nats.url') });
    }
    expect(shown).toEqual([
      { file: join(dir.path, 'a/oci-build.config.yaml'), workDir: join(dir.path, 'home-a/.oci-build'), concurrency: expect.objectContaining({ value: 3 }), nats: expect.objectContaining({ value: 'nats://127.0.0.1:4101', source: 'OCI_BUILD_NATS_URL' }) },
      { file: join(dir.path, 'b/oci-build.config.yaml'), workDir: join(dir.path, 'home-b/.oci-build'), concurrency: expect.objectContaining({ value: 5 }), nats: expect.objectContaining({ value: 'nats://127.0.0.1:4102', source: 'OCI_BUILD_NATS_URL' }) },
    ]);
  });

  it("colour: chalk's detection (FORCE_COLOR, NO_COLOR) happens in the run", async () => {
    const env = { HOME: dir.path, OCI_BUILD_WORK_DIR: join(dir.path, 'work'), OCI_BUILD_NATS_URL: nats.url };
    const coloured = await run(['doctor'], { cwd: dir.path, env: { ...env, FORCE_COLOR: '1' } });
    const plain = await run(['doctor'], { cwd: dir.path, env: { ...env, NO_COLOR: '1' } });
    expect(coloured.stdout).toMatch(/\u001b\[\d+m/);
    expect(plain.stdout).not.toMatch(/\u001b\[/);
    expect(plain.stdout).toMatch(/buildah/);
  });

  it("a daemon's log lines carry its own pid, hostname and clock", async () => {
    for (const host of ['sea-host-a', 'sea-host-b']) {
      const startedAt = Date.now();
      // A UTS namespace of its own: the worker's hostname differs from the build machine's.
      const child = spawn('unshare', ['--uts', 'sh', '-c', `hostname ${host} && exec "$0" worker`, exe], {
        cwd: dir.path,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path, OCI_BUILD_WORK_DIR: join(dir.path, `work-${host}`), OCI_BUILD_NATS_URL: nats.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
      await waitFor(() => out.includes('"oci-build worker started"'), { what: `worker on ${host}`, timeoutMs: 30_000 });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);

      const lines = out.trim().split('\n').map((line) => JSON.parse(line) as { pid: number; time: string; msg: string; name?: string });
      // `exec` keeps the pid: the process unshare started is the worker.
      expect(new Set(lines.map((l) => l.pid))).toEqual(new Set([child.pid]));
      expect(lines.find((l) => l.msg === 'oci-build worker started')?.name).toBe(`${host}:${child.pid}`);
      for (const line of lines) expect(Date.parse(line.time)).toBeGreaterThanOrEqual(startedAt - 1000);
    }
  });

  it('randomness: random bytes are drawn in each run (build ids)', async () => {
    const repo = join(dir.path, 'plain-repo');
    mkdirSync(repo);
    // No project in it: each build fails in detection, quickly, and still has a record (and an id).
    writeFileSync(join(repo, 'README.md'), 'nothing to build\n');
    const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' };
    for (const args of [['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'x']]) execFileSync('git', args, { cwd: repo, env: gitEnv });
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const result = await run(['build', repo, '--no-image', '--json'], { cwd: dir.path, env: { HOME: dir.path, OCI_BUILD_WORK_DIR: join(dir.path, 'work-random') } });
      ids.push((JSON.parse(result.stdout) as { id: string }).id);
    }
    // <stamp>-<6 random hex digits>: the same second may repeat, the random part may not.
    const suffixes = ids.map((id) => id.split('-').pop());
    expect(new Set(suffixes).size).toBe(3);
  });
});
