// A hostile repository against `oci-build build`, as an attacker would push it: a committed
// symlink leading out of the tree, a build script printing its environment, a build command
// trying to write and read outside its tree. The built CLI, real Git, real Go and npm, the real
// bubblewrap sandbox (the default `build.sandbox`), and `oci-build doctor`'s line about it.

import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { isolatedEnv, runCli, type CliResult } from '../helpers/cli.js';
import { fixtureRepo, git, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.js';

let root: TempDir;
let env: Record<string, string>;
/** A directory of the host outside /tmp (which the sandbox replaces), so a write that got out would land here. */
let outside: string;
let server: GitServer | undefined;
const repos: FixtureRepo[] = [];

async function repo(name: string): Promise<FixtureRepo> {
  const r = await fixtureRepo(name);
  repos.push(r);
  return r;
}

function record(result: CliResult): BuildRecord {
  return JSON.parse(result.stdout) as BuildRecord;
}

function logOf(result: CliResult): string {
  const path = record(result).logPath;
  expect(path, result.stderr).toBeTruthy();
  return readFileSync(path!, 'utf8');
}

function writeConfig(name: string, text: string): string {
  const file = join(root.path, name);
  writeFileSync(file, text);
  return file;
}

beforeAll(async () => {
  root = await tempDir('oci-build-e2e-sandbox-');
  env = isolatedEnv(root.path);
  outside = await mkdtemp('/var/tmp/oci-build-outside-');
});

afterAll(async () => {
  await server?.dispose();
  for (const r of repos) await r.cleanup();
  await root?.cleanup();
  await rm(outside, { recursive: true, force: true });
});

describe('a committed symlink leading out of the tree', () => {
  let go: FixtureRepo;
  let target: string;

  beforeAll(async () => {
    go = await repo('sample-go-repo');
    target = join(outside, 'symlink-target');
    mkdirSync(target);
    // `go build -o dist/` would write the binary through it.
    symlinkSync(target, join(go.dir, 'dist'));
    go.commitAll('dist is a link');
  });

  it('fails the local build before any command, naming the link and its target, with exit 1', async () => {
    const result = await runCli(['build', go.dir, '--json'], { env });
    expect(result.code, result.stderr).toBe(1);
    const rec = record(result);
    expect(rec.status).toBe('failed');
    expect(rec.error).toMatchObject({ phase: 'detect', code: 'E_UNSAFE_SYMLINK' });
    expect(rec.error!.message).toContain(`dist -> ${target}`);
    expect(rec.phases.map((p) => p.name)).toEqual(['source', 'detect']);
    expect(result.stderr).toContain(`dist -> ${target}`);
    expect(logOf(result)).not.toContain('$ go build');
    expect(readdirSync(target)).toEqual([]);
  });

  it('fails the same way from a Git URL (the worktree checkout holds the link too)', async () => {
    server = await startGitServer();
    await server.addRepo('acme/linked', go.dir);
    const result = await runCli(['build', server.url('acme/linked'), '--json'], { env });
    expect(result.code, result.stderr).toBe(1);
    const rec = record(result);
    expect(rec.error).toMatchObject({ phase: 'detect', code: 'E_UNSAFE_SYMLINK' });
    expect(rec.error!.message).toContain(`dist -> ${target}`);
    expect(readdirSync(target)).toEqual([]);
  });
});

describe('a build script printing its environment', () => {
  const TOKEN = 'ghp_e2eSandboxGitT0ken1234567890';
  const OTHER = 'deploy-key-n0t-known-to-oci-build-5f4e3d';
  let result: CliResult;
  let printed: Record<string, string>;

  beforeAll(async () => {
    const dir = join(root.path, 'env-printer');
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'env-printer', version: '1.0.0', private: true, scripts: { build: 'node -e "console.log(JSON.stringify(process.env))"' } }),
    );
    writeFileSync(
      join(dir, 'package-lock.json'),
      JSON.stringify({ name: 'env-printer', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'env-printer', version: '1.0.0' } } }),
    );
    git(dir, ['init', '-q', '-b', 'main']);
    git(dir, ['add', '-A']);
    git(dir, ['commit', '-q', '-m', 'env printer']);
    const config = writeConfig('env.config.yaml', 'build:\n  env:\n    FROM_BUILD_ENV: chosen-by-the-operator\n');
    result = await runCli(['build', dir, '--no-image', '--json', '-c', config], {
      env: { ...env, OCI_BUILD_GIT_TOKEN: TOKEN, OCI_BUILD_SERVER_WEBHOOK_SECRET: 'whsec-e2e-sandbox-0123', DEPLOY_KEY: OTHER, NATS_PASSWORD: OTHER },
    });
    expect(result.code, result.stderr).toBe(0);
    const line = logOf(result)
      .split('\n')
      .map((l) => l.slice(l.indexOf('{')))
      .find((l) => l.startsWith('{"') && l.includes('"PATH"'));
    expect(line, logOf(result)).toBeTruthy();
    printed = JSON.parse(line!) as Record<string, string>;
  });

  it('sees no secret of the worker: neither the values nor any OCI_BUILD_ name', () => {
    const log = logOf(result);
    expect(log).not.toContain(TOKEN);
    expect(log).not.toContain(OTHER);
    expect(Object.keys(printed).filter((k) => k.startsWith('OCI_BUILD_'))).toEqual([]);
    expect(printed.DEPLOY_KEY).toBeUndefined();
    expect(printed.NATS_PASSWORD).toBeUndefined();
  });

  it('gets CI=true, HOME=/tmp, the cache variables and build.env', () => {
    expect(printed).toMatchObject({ CI: 'true', HOME: '/tmp', FROM_BUILD_ENV: 'chosen-by-the-operator' });
    expect(printed.npm_config_cache).toBe(join(env.OCI_BUILD_WORK_DIR!, 'cache', 'npm'));
    // npm run puts the package's node_modules/.bin dirs in front of the PATH it was given.
    expect(printed.PATH!.endsWith(`:${process.env.PATH}`)).toBe(true);
  });
});

describe('a build command reaching outside its tree', () => {
  let go: FixtureRepo;
  let home: string;
  let hostTmpMarker: string;

  beforeAll(async () => {
    go = await repo('sample-go-repo');
    home = join(root.path, 'home');
    mkdirSync(home);
    writeFileSync(join(home, '.git-credentials'), 'https://ci:hunter2-e2e@github.com\n');
    // A mirror of another repository in the same work directory.
    mkdirSync(join(env.OCI_BUILD_WORK_DIR!, 'repos', 'github.com', 'acme', 'other'), { recursive: true });
    writeFileSync(join(env.OCI_BUILD_WORK_DIR!, 'repos', 'github.com', 'acme', 'other', 'HEAD'), 'ref: refs/heads/main\n');
    hostTmpMarker = join('/tmp', `oci-build-e2e-host-marker-${process.pid}`);
    writeFileSync(hostTmpMarker, 'host\n');
  });

  afterAll(async () => {
    await rm(hostTmpMarker, { force: true });
  });

  it('cannot write /etc or a host directory: the command fails and nothing is written', async () => {
    const config = writeConfig(
      'write.config.yaml',
      [
        'build:',
        '  env:',
        `    OUTSIDE: ${outside}`,
        '  projects:',
        '    sample-go-repo:',
        '      command: ["sh", "-c", "echo x > /etc/oci-probe; echo y > \\"$OUTSIDE/probe\\""]',
        '',
      ].join('\n'),
    );
    const result = await runCli(['build', go.dir, '--no-image', '--json', '-c', config], { env: { ...env, HOME: home } });
    expect(result.code, result.stderr).toBe(1);
    expect(record(result).error).toMatchObject({ phase: 'build' });
    expect(logOf(result)).toMatch(/Read-only file system/);
    expect(existsSync('/etc/oci-probe')).toBe(false);
    expect(existsSync(join(outside, 'probe'))).toBe(false);
  });

  it('cannot see the mirrors, HOME, the config file or the host /tmp; can write the tree, its caches and a private /tmp', async () => {
    const work = env.OCI_BUILD_WORK_DIR!;
    const configPath = join(root.path, 'probe.config.yaml');
    const script = [
      `echo "repos=[$(ls -A ${join(work, 'repos')} 2>&1 | tr '\\n' ' ')]"`,
      `echo "home=[$(ls -A ${home} 2>&1)]"`,
      `echo "config=[$(cat ${configPath} 2>&1 | head -c 200)]"`,
      `test -e ${hostTmpMarker} && echo host-tmp=visible || echo host-tmp=hidden`,
      'echo tree > written-by-build.txt && echo tree=ok',
      'echo cache > "$GOCACHE/written-by-build" && echo cache=ok',
      'echo tmp > /tmp/written-by-build && echo tmp=ok',
    ].join('; ');
    writeFileSync(
      configPath,
      ['# a config file may hold tokens', 'git:', '  token: config-file-t0ken-e2e-0987', 'build:', '  projects:', '    sample-go-repo:', `      command: ${JSON.stringify(['sh', '-c', script])}`, ''].join('\n'),
    );
    const result = await runCli(['build', go.dir, '--no-image', '--json', '-c', configPath], { env: { ...env, HOME: home } });
    expect(result.code, result.stderr).toBe(0);
    const log = logOf(result);
    expect(log).toMatch(/repos=\[ls: cannot access '[^']*': No such file or directory ?\]/);
    expect(log).toContain('home=[]');
    expect(log).toMatch(/config=\[cat: [^\]]*: Permission denied\]/);
    expect(log).not.toContain('config-file-t0ken-e2e-0987');
    expect(log).toContain('host-tmp=hidden');
    for (const ok of ['tree=ok', 'cache=ok', 'tmp=ok']) expect(log).toContain(ok);
    expect(readFileSync(join(go.dir, 'written-by-build.txt'), 'utf8')).toBe('tree\n');
    expect(readFileSync(join(work, 'cache', 'go-build', 'written-by-build'), 'utf8')).toBe('cache\n');
    expect(existsSync('/tmp/written-by-build')).toBe(false);
  });

  it('with build.sandbox: none the same command writes outside (the choice doctor warns about)', async () => {
    const probe = join(outside, 'unsandboxed-probe');
    const config = writeConfig(
      'none.config.yaml',
      ['build:', '  sandbox: none', '  projects:', '    sample-go-repo:', `      command: ["sh", "-c", "echo y > ${probe}"]`, ''].join('\n'),
    );
    const result = await runCli(['build', go.dir, '--no-image', '--json', '-c', config], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(probe, 'utf8')).toBe('y\n');
  });
});

describe('oci-build doctor: the sandbox line', () => {
  type Check = { name: string; ok: boolean; required: boolean; detail?: string; fix?: string };
  const sandboxCheck = (result: CliResult) => (JSON.parse(result.stdout) as { checks: Check[] }).checks.find((c) => c.name === 'sandbox');
  const doctorEnv = () => ({ ...env, OCI_BUILD_NATS_URL: 'nats://127.0.0.1:1' });

  it('is ok with bubblewrap and its version', async () => {
    const result = await runCli(['doctor', '--json'], { env: doctorEnv() });
    expect(result.code, result.stderr).toBe(0);
    expect(sandboxCheck(result)).toMatchObject({ ok: true, required: true });
    expect(sandboxCheck(result)!.detail).toMatch(/^bubblewrap \d+\.\d+/);
  });

  it('warns (without failing) when build.sandbox is none', async () => {
    const json = await runCli(['doctor', '--json'], { env: { ...doctorEnv(), OCI_BUILD_BUILD_SANDBOX: 'none' } });
    expect(json.code, json.stderr).toBe(0);
    expect(sandboxCheck(json)).toMatchObject({ ok: false, required: false });
    const plain = await runCli(['doctor'], { env: { ...doctorEnv(), OCI_BUILD_BUILD_SANDBOX: 'none' } });
    expect(plain.stdout).toContain("warn sandbox: build.sandbox is none: build commands run unsandboxed: a repository's build can read and write everything the worker can");
  });

  it('fails with the fix (exit 3) when bubblewrap is selected but cannot run', async () => {
    // A bwrap first on PATH that fails as bubblewrap does where namespaces are not allowed.
    const bin = join(root.path, 'locked-bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'bwrap'), '#!/bin/sh\n[ "$1" = --version ] && { echo "bubblewrap 0.8.0"; exit 0; }\necho "bwrap: No permissions to create new namespace" >&2\nexit 1\n');
    chmodSync(join(bin, 'bwrap'), 0o755);
    const result = await runCli(['doctor', '--json'], { env: { ...doctorEnv(), PATH: `${bin}:${process.env.PATH}` } });
    expect(result.code).toBe(3);
    const check = sandboxCheck(result)!;
    expect(check).toMatchObject({ ok: false, required: true });
    expect(check.detail).toContain('No permissions to create new namespace');
    expect(check.fix).toContain('build.sandbox: none');

    const go = await repo('sample-go-repo');
    const build = await runCli(['build', go.dir, '--no-image', '--json'], { env: { ...env, PATH: `${bin}:${process.env.PATH}` } });
    expect(build.code).toBe(3);
    expect(record(build).error).toMatchObject({ code: 'E_TOOL_UNAVAILABLE' });
    expect(record(build).error!.message).toContain('No permissions to create new namespace');
  });
});
