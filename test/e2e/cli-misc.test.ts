// The smaller commands as a user runs them: --version, --help, cache size/clean, doctor.

import { mkdirSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolatedEnv, runCli } from '../helpers/cli.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

let sandbox: TempDir;
let env: Record<string, string>;

beforeAll(async () => {
  sandbox = await tempDir('oci-build-cli-');
  env = isolatedEnv(sandbox.path);
});
afterAll(async () => {
  await sandbox?.cleanup();
});

describe('oci-build', () => {
  it('prints its version and teaches with --help', async () => {
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    // Answered before commander is set up, as commander answers it: -V too, and with other
    // arguments commander itself.
    expect(await runCli(['-V'])).toMatchObject({ code: 0, stdout: version.stdout });
    expect(await runCli(['--version', 'status'])).toMatchObject({ code: 0, stdout: version.stdout });

    const help = await runCli(['build', '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--ref', '--project', '--affected', '--base', '--registry', '--push', '--no-tls-verify', '--build-arg', '--no-image', '--json']) {
      expect(help.stdout).toContain(flag);
    }
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('Exit codes');
  });

  it('an unknown command or flag is a usage error (exit 2)', async () => {
    const unknown = await runCli(['bild']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command/);
    const flag = await runCli(['build', '--frobnicate']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/unknown option/);
  });

  it('with --json, a usage or config error is a JSON error object on stdout (exit 2), the message on stderr', async () => {
    const flag = await runCli(['build', '--json', '--frobnicate'], { env });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/unknown option/);
    const usage = JSON.parse(flag.stdout) as { error: { code: string; message: string } };
    expect(usage.error.code).toBe('E_USAGE');
    expect(usage.error.message).toMatch(/unknown option '--frobnicate'/);

    const config = await runCli(['build', 'fixtures/sample-go-repo', '--json'], { env: { ...env, OCI_BUILD_WORKER_CONCURRENCY: 'many', OCI_BUILD_BUILD_SANDBOX: 'jail' } });
    expect(config.code).toBe(2);
    expect(config.stderr).toMatch(/Invalid configuration \(2 problems\)/);
    const invalid = JSON.parse(config.stdout) as { error: { code: string; details: { issues: Array<{ path: string; source?: string }> } } };
    expect(invalid.error.code).toBe('E_CONFIG');
    expect(invalid.error.details.issues.map((i) => i.path).sort()).toEqual(['build.sandbox', 'worker.concurrency']);
    expect(invalid.error.details.issues.find((i) => i.path === 'build.sandbox')?.source).toBe('OCI_BUILD_BUILD_SANDBOX');

    // Without --json, stdout stays empty: errors are for people, on stderr.
    const plain = await runCli(['build', '--frobnicate'], { env });
    expect(plain.stdout).toBe('');
  });
});

describe('oci-build config show', () => {
  it('names each value\'s source (flag, environment variable, file, default) and shows secrets only as set', async () => {
    const file = join(sandbox.path, 'show.yaml');
    writeFileSync(file, 'worker:\n  concurrency: 3\ngit:\n  token: ghp_config_show_secret_1234\nbuild:\n  env: { GOFLAGS: -mod=vendor }\n');
    const run = await runCli(['config', 'show', '-c', file, '--work-dir', join(sandbox.path, 'w'), '--json'], {
      env: { ...env, OCI_BUILD_SERVER_PORT: '9090', OCI_BUILD_NATS_URL: 'nats://bot:nats-pass-1234@127.0.0.1:4222' },
    });
    expect(run.code, run.stderr).toBe(0);
    const { configFile, settings } = JSON.parse(run.stdout) as { configFile: string; settings: Array<{ key: string; env?: string; value: unknown; source: string }> };
    const byKey = new Map(settings.map((s) => [s.key, s]));
    expect(configFile).toBe(file);
    expect(byKey.get('workDir')).toMatchObject({ value: join(sandbox.path, 'w'), source: 'flags' });
    expect(byKey.get('server.port')).toMatchObject({ value: 9090, source: 'OCI_BUILD_SERVER_PORT', env: 'OCI_BUILD_SERVER_PORT' });
    expect(byKey.get('worker.concurrency')).toMatchObject({ value: 3, source: `file ${file}` });
    expect(byKey.get('build.timeout')).toMatchObject({ value: '30m', source: 'default' });
    expect(byKey.get('build.env')).toMatchObject({ value: { GOFLAGS: '-mod=vendor' }, source: `file ${file}` });
    expect(byKey.get('git.token')).toMatchObject({ value: '***', source: `file ${file}` });
    expect(byKey.get('nats.url')?.value).toBe('nats://bot:***@127.0.0.1:4222');
    expect(run.stdout).not.toContain('ghp_config_show_secret_1234');
    expect(run.stdout).not.toContain('nats-pass-1234');
    // Every key of the schema is there.
    for (const key of ['server.allowedHosts', 'git.tokenHosts', 'build.sandbox', 'image.authFile']) expect(byKey.has(key), key).toBe(true);

    const text = await runCli(['config', 'show', '-c', file], { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^worker\.concurrency +3 +file /m);
    expect(text.stdout).toMatch(/^image\.registry +\(not set\) +default$/m);
    expect(text.stdout).not.toContain('ghp_config_show_secret_1234');
  });
});

describe('oci-build cache', () => {
  it('reports the size of each cache and cleans only old entries inside the cache', async () => {
    const cache = join(env.OCI_BUILD_WORK_DIR!, 'cache');
    const oldFile = join(cache, 'go-build', 'aa', 'old-entry');
    const newFile = join(cache, 'npm', 'new-entry');
    const outside = join(sandbox.path, 'outside.txt');
    mkdirSync(join(cache, 'go-build', 'aa'), { recursive: true });
    mkdirSync(join(cache, 'npm'), { recursive: true });
    writeFileSync(oldFile, 'x'.repeat(4096));
    writeFileSync(newFile, 'y'.repeat(1024));
    writeFileSync(outside, 'keep me');
    const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
    for (const file of [oldFile, outside]) utimesSync(file, tenDaysAgo, tenDaysAgo);

    const size = await runCli(['cache', 'size', '--json'], { env });
    expect(size.code, size.stderr).toBe(0);
    const report = JSON.parse(size.stdout) as { caches: Array<{ kind: string; bytes: number }>; totalBytes: number };
    expect(report.caches.find((c) => c.kind === 'go-build')?.bytes).toBe(4096);
    expect(report.caches.find((c) => c.kind === 'npm')?.bytes).toBe(1024);
    expect(report.totalBytes).toBeGreaterThanOrEqual(5120);

    const table = await runCli(['cache', 'size'], { env });
    expect(table.stdout).toMatch(/go-build\s+4(\.0)? KiB/);

    const clean = await runCli(['cache', 'clean', '--older-than', '7d', '--json'], { env });
    expect(clean.code, clean.stderr).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ removedFiles: 1, removedBytes: 4096 });
    expect(existsSync(oldFile)).toBe(false);
    expect(existsSync(newFile)).toBe(true);
    expect(existsSync(outside)).toBe(true);

    const bad = await runCli(['cache', 'clean', '--older-than', 'a week'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Invalid duration/);
  });
});

describe('oci-build doctor', () => {
  it('checks buildah, the toolchains, the work directory and NATS, one line each with a fix', async () => {
    const result = await runCli(['doctor', '--json'], { env: { ...env, OCI_BUILD_NATS_URL: 'nats://127.0.0.1:1' } });
    expect(result.code, result.stderr).toBe(0);
    const checks = (JSON.parse(result.stdout) as { checks: Array<{ name: string; ok: boolean; required: boolean; fix?: string }> }).checks;
    const byName = Object.fromEntries(checks.map((c) => [c.name.split(' ')[0], c]));
    for (const name of ['buildah', 'git', 'go', 'mvn', 'dotnet', 'workDir']) expect(byName[name]?.ok, name).toBe(true);
    // NATS is optional for local builds: reported with its fix, not a failure.
    expect(byName['nats']).toMatchObject({ ok: false, required: false });
    expect(byName['nats']?.fix).toMatch(/nats-server -js/);

    const plain = await runCli(['doctor'], { env: { ...env, OCI_BUILD_NATS_URL: 'nats://127.0.0.1:1' } });
    expect(plain.stdout.split('\n').filter((l) => /^(ok|warn|FAIL)/.test(l)).length).toBe(checks.length);
    expect(plain.stdout).toContain('fix: Start NATS');
  });

  it('a registry that does not answer fails the check with exit 3', async () => {
    const result = await runCli(['doctor', '--json'], { env: { ...env, OCI_BUILD_IMAGE_REGISTRY: '127.0.0.1:1/team' } });
    expect(result.code).toBe(3);
    const checks = (JSON.parse(result.stdout) as { checks: Array<{ name: string; ok: boolean; fix?: string }> }).checks;
    const registry = checks.find((c) => c.name.startsWith('registry'));
    expect(registry).toMatchObject({ ok: false });
    expect(registry?.fix).toBeTruthy();
  });
});
