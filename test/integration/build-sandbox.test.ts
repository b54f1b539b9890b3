// The build-command runner (exec/sandbox.ts) with the real bubblewrap: what a sandboxed command can
// see and write, its environment, cancellation, and the errors when the sandbox or the tool is
// missing. `sh` is only a test program, given as an argument array.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError, CommandFailedError, ToolUnavailableError } from '../../src/core/errors.js';
import { runCommand } from '../../src/exec/run-command.js';
import { createBuildRunner, probeBubblewrap, type BuildRunner } from '../../src/exec/sandbox.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

let root: TempDir;
/** Outside /tmp (which the sandbox replaces), so a write that got through would land on the host. */
let outside: string;
let work: string;
let tree: string;
let cache: string;
let home: string;
let configFile: string;
let hostTmpMarker: string;
let sandboxed: BuildRunner;

const SECRET = 'ghp_sandboxTestSecret0123456789';

beforeAll(async () => {
  root = await tempDir('oci-build-sandbox-');
  outside = await mkdtemp('/var/tmp/oci-build-outside-');
  work = join(root.path, 'work');
  tree = join(work, 'worktrees', 'repo-1');
  cache = join(work, 'cache', 'go-build');
  home = join(root.path, 'home');
  configFile = join(root.path, 'etc', 'oci-build.config.yaml');
  for (const dir of [tree, cache, join(work, 'repos', 'github.com', 'acme', 'api'), join(work, 'worktrees', 'other'), home, join(root.path, 'etc')]) {
    await mkdir(dir, { recursive: true });
  }
  await writeFile(join(work, 'repos', 'github.com', 'acme', 'api', 'HEAD'), 'ref: refs/heads/main\n');
  await writeFile(join(work, 'worktrees', 'other', 'secret.txt'), 'another build\n');
  await writeFile(join(home, '.netrc'), `machine github.com password ${SECRET}\n`);
  await writeFile(configFile, `git:\n  token: ${SECRET}\n`);
  hostTmpMarker = join('/tmp', `oci-build-host-marker-${process.pid}`);
  await writeFile(hostTmpMarker, 'host /tmp\n');
  sandboxed = createBuildRunner({
    mode: 'bubblewrap',
    hide: [work, home, configFile],
    env: { FROM_BUILD_ENV: 'yes' },
    parentEnv: { PATH: process.env.PATH, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', HOME: home, OCI_BUILD_GIT_TOKEN: SECRET, NATS_PASSWORD: SECRET, https_proxy: 'http://proxy.invalid:3128' },
  });
});

afterAll(async () => {
  await root.cleanup();
  await rm(outside, { recursive: true, force: true });
  await rm(hostTmpMarker, { force: true });
});

/** Runs a shell script in the sandbox, in the tree, and returns its stdout. */
async function sh(script: string, options: { env?: Record<string, string> } = {}) {
  const result = await sandboxed('sh', ['-c', script], { cwd: tree, tree, writable: [cache], env: options.env ?? {}, okExitCodes: [0, 1, 2] });
  return result.stdout.trim();
}

describe('the bubblewrap build runner', () => {
  it('runs with bubblewrap here (the probe answers ok with its version)', async () => {
    const probe = await probeBubblewrap();
    expect(probe).toMatchObject({ ok: true });
    expect(probe.version).toMatch(/^\d+\.\d+/);
  });

  it('cannot write outside the tree: not /etc, not a host directory, not the other worktrees', async () => {
    const out = await sh(
      [
        'echo x > /etc/oci-probe && echo etc-written',
        `echo y > ${outside}/probe && echo outside-written`,
        `echo z > ${join(work, 'worktrees', 'other', 'probe')} 2>/dev/null && echo other-written`,
        'echo done',
      ].join('; '),
    );
    expect(out).toBe('done');
    expect(existsSync('/etc/oci-probe')).toBe(false);
    expect(existsSync(join(outside, 'probe'))).toBe(false);
    expect(existsSync(join(work, 'worktrees', 'other', 'probe'))).toBe(false);
  });

  it('can write the tree, its caches and a /tmp of its own, which is gone afterwards', async () => {
    const out = await sh(`echo t > built.txt && echo c > ${cache}/entry && echo p > /tmp/private && echo ok`);
    expect(out).toBe('ok');
    expect(await readFile(join(tree, 'built.txt'), 'utf8')).toBe('t\n');
    expect(await readFile(join(cache, 'entry'), 'utf8')).toBe('c\n');
    expect(existsSync('/tmp/private')).toBe(false);
  });

  it("sees neither the host's /tmp, the mirrors, other worktrees, HOME nor the config file", async () => {
    const out = await sh(
      [
        `test -e ${hostTmpMarker} && echo host-tmp-visible`,
        `ls -A ${join(work, 'repos')} 2>/dev/null`,
        `ls -A ${join(work, 'worktrees')}`,
        `cat ${join(home, '.netrc')} 2>/dev/null`,
        `cat ${configFile} 2>/dev/null`,
        `ls -A ${home}`,
        'echo end',
      ].join('; '),
    );
    // Only the tree itself is left of the worktrees; no mirror, no netrc, no config, no host marker.
    expect(out.split('\n')).toEqual(['repo-1', 'end']);
    expect(out).not.toContain(SECRET);
  });

  it('gets a clean environment: the allow-list, CI=true, HOME=/tmp, then the step env and build.env', async () => {
    const out = await sh('env', { env: { GOCACHE: cache } });
    const env = Object.fromEntries(out.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env).toMatchObject({ CI: 'true', HOME: '/tmp', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', https_proxy: 'http://proxy.invalid:3128', GOCACHE: cache, FROM_BUILD_ENV: 'yes' });
    expect(out).not.toContain(SECRET);
    expect(Object.keys(env).filter((k) => k.startsWith('OCI_BUILD_') || k.startsWith('NATS_'))).toEqual([]);
  });

  it('has its own PID namespace and no capabilities', async () => {
    const out = await sh('echo $$; grep CapEff /proc/self/status; ls /proc | grep -c "^[0-9]"');
    const [pid, caps, processes] = out.split('\n');
    expect(Number(pid)).toBeLessThan(10);
    expect(caps).toMatch(/^CapEff:\s+0+$/);
    expect(Number(processes)).toBeLessThan(10);
  });

  it('kills everything inside the sandbox when the build is cancelled', async () => {
    const marker = `${Math.floor(Math.random() * 1e6) + 1000}.5`;
    const controller = new AbortController();
    const lines: string[] = [];
    const running = sandboxed('sh', ['-c', `sleep ${marker} & sleep ${marker} & echo started; wait`], {
      cwd: tree,
      tree,
      signal: controller.signal,
      killGraceMs: 2_000,
      log: { write: (line) => void lines.push(line) },
    });
    const sleeping = async () => (await runCommand('ps', ['-eo', 'args='])).stdout.split('\n').filter((l) => l.trim() === `sleep ${marker}`).length;
    const deadline = Date.now() + 10_000;
    while ((await sleeping()) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await sleeping()).toBe(2);
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    expect(await sleeping()).toBe(0);
  });

  it('ends what a command leaves running when it exits: the namespace dies with it, and the build is not held open', async () => {
    const marker = `${Math.floor(Math.random() * 1e6) + 1000}.5`;
    const sleeping = async () => (await runCommand('ps', ['-eo', 'args='])).stdout.split('\n').filter((l) => l.trim() === `sleep ${marker}`).length;
    // The background sleep holds the output pipes: the command settles only once it is gone.
    const result = await sandboxed('sh', ['-c', `sleep ${marker} & echo left`], { cwd: tree, tree });
    expect(result.stdout.trim()).toBe('left');
    expect(await sleeping()).toBe(0);
    // Detached from the pipes, it dies all the same.
    await sandboxed('sh', ['-c', `sleep ${marker} >/dev/null 2>&1 </dev/null & echo left`], { cwd: tree, tree });
    expect(await sleeping()).toBe(0);
  });

  it('reports a failing command as the command, with its exit code', async () => {
    const error = await sandboxed('sh', ['-c', 'echo "main.go:1: boom" >&2; exit 3'], { cwd: tree, tree, displayName: 'go build' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandFailedError);
    expect((error as CommandFailedError).exitStatus).toBe(3);
    expect((error as CommandFailedError).command).toBe('sh -c echo "main.go:1: boom" >&2; exit 3');
    expect((error as Error).message).toContain('main.go:1: boom');
  });

  it('starts one process a command: bwrap around it, no probe before it', async () => {
    const started: string[][] = [];
    // bwrap by its full path: a probe of this process (made once per executable name) is not reused.
    const bwrap = execFileSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).trim();
    const counting = createBuildRunner({ mode: 'bubblewrap', bwrap, run: (file, args, options) => (started.push([file, ...args]), runCommand(file, args, options)) });
    await counting('true', [], { cwd: tree, tree });
    await counting('true', [], { cwd: tree, tree });
    expect(started).toHaveLength(2);
    for (const argv of started) expect(argv.slice(0, 1).concat(argv.slice(-2))).toEqual([bwrap, '--', 'true']);
  });

  it('names a missing tool as not installed (exit 3), not as a failed build', async () => {
    const error = await sandboxed('oci-build-no-such-tool', ['--version'], { cwd: tree, tree }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ToolUnavailableError);
    expect((error as Error).message).toContain('oci-build-no-such-tool is not installed');
  });

  it('fails with the fix when bubblewrap is not installed', async () => {
    const runner = createBuildRunner({ mode: 'bubblewrap', bwrap: join(root.path, 'no-such-bwrap') });
    const error = await runner('true', [], { tree }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ToolUnavailableError);
    expect((error as ToolUnavailableError).exitCode).toBe(3);
    expect((error as Error).message).toContain('bubblewrap is not installed');
    expect((error as ToolUnavailableError).hint).toContain('apt-get install -y bubblewrap');
    expect((error as ToolUnavailableError).hint).toContain('build.sandbox: none');
  });

  it('fails with the fix when bubblewrap cannot create its namespaces (told apart from the build failing)', async () => {
    // A stand-in bwrap that answers --version and then fails as bwrap does in a locked-down container.
    const fake = join(root.path, 'locked-bwrap');
    await writeFile(
      fake,
      '#!/bin/sh\nif [ "$1" = --version ]; then echo "bubblewrap 0.8.0"; exit 0; fi\necho "bwrap: Creating new namespace failed: Operation not permitted" >&2\nexit 1\n',
    );
    await chmod(fake, 0o755);
    const runner = createBuildRunner({ mode: 'bubblewrap', bwrap: fake });
    const error = await runner('true', [], { tree }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ToolUnavailableError);
    expect((error as Error).message).toContain('Creating new namespace failed: Operation not permitted');
    expect((error as ToolUnavailableError).hint).toMatch(/namespaces/);
    expect((error as ToolUnavailableError).hint).toContain('build.sandbox: none');
  });
});

describe('the unsandboxed build runner (build.sandbox: none)', () => {
  it('gets the same clean environment, with a HOME of its own that is removed afterwards', async () => {
    const runner = createBuildRunner({ mode: 'none', env: { FROM_BUILD_ENV: 'yes' }, parentEnv: { PATH: process.env.PATH, OCI_BUILD_GIT_TOKEN: SECRET, HOME: home } });
    const result = await runner('sh', ['-c', 'env; echo "home=$HOME"; test -d "$HOME" && echo home-exists'], { cwd: tree, tree });
    expect(result.stdout).not.toContain(SECRET);
    expect(result.stdout).not.toContain('OCI_BUILD_');
    expect(result.stdout).toContain('CI=true');
    expect(result.stdout).toContain('FROM_BUILD_ENV=yes');
    expect(result.stdout).toContain('home-exists');
    const buildHome = /home=(.*)/.exec(result.stdout)![1]!;
    expect(buildHome).not.toBe(home);
    expect(existsSync(buildHome)).toBe(false);
  });
});
