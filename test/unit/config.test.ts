import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigError } from '../../src/core/errors.js';
import { DEFAULTS, configLeaves, envName, loadConfig, parseConfig } from '../../src/config/config.js';
import { parseDuration } from '../../src/config/duration.js';
import { schemaSha256 } from '../../src/config/config-validator.js';
import { SCHEMA_SHA256 } from '../../src/config/config-schema-validator.generated.js';
import { CONFIG_SCHEMA } from '../../src/config/config.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

const home = '/home/tester';

function issuesOf(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('fills in the documented defaults', () => {
    const config = parseConfig({ home });
    expect(config.workDir).toBe('/home/tester/.oci-build');
    expect(config.nats).toMatchObject({ url: 'nats://127.0.0.1:4222', stream: 'OCI_BUILD_JOBS', subject: 'builds.webhook', statusBucket: 'oci-build-status' });
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080, apiTokens: [] });
    expect(config.server.webhookSecret).toBeUndefined();
    expect(config.worker.concurrency).toBe(1);
    expect(config.build.timeoutMs).toBe(30 * 60_000);
    expect(config.image).toMatchObject({ push: false, tlsVerify: true });
    expect(config.image.registry).toBeUndefined();
  });

  it('is hostile by default: builds sandboxed, tokens and clone URLs bound to github.com, intake memory capped', () => {
    const config = parseConfig({ home });
    expect(config.build.sandbox).toBe('bubblewrap');
    expect(config.build.env).toEqual({});
    expect(config.git.tokenHosts).toEqual(['github.com']);
    expect(config.server.allowedHosts).toEqual(['github.com']);
    expect(config.server.maxInflightBytes).toBe(64 * 1024 * 1024);
  });

  it('refuses host lists whose entries are not host or host:port, naming each', () => {
    const issues = issuesOf(() =>
      parseConfig({
        env: { OCI_BUILD_GIT_TOKEN_HOSTS: 'github.com,https://evil.example/x', OCI_BUILD_SERVER_ALLOWED_HOSTS: 'user@github.com' },
        fileData: { build: { env: { 'NOT A NAME': 'x' } } },
        home,
      }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual(['build.env.NOT A NAME', 'git.tokenHosts.1', 'server.allowedHosts.0']);
    expect(issues.find((i) => i.path === 'git.tokenHosts.1')).toMatchObject({ source: 'OCI_BUILD_GIT_TOKEN_HOSTS' });
    const ok = parseConfig({ env: { OCI_BUILD_SERVER_ALLOWED_HOSTS: 'git.example.com:8443,[::1]:3000,127.0.0.1' }, home });
    expect(ok.server.allowedHosts).toEqual(['git.example.com:8443', '[::1]:3000', '127.0.0.1']);
  });

  it('the shipped oci-build.config.yaml is valid and changes nothing', async () => {
    const text = readFileSync(`${REPO_ROOT}/oci-build.config.yaml`, 'utf8');
    const fromFile = await loadConfig({ file: { path: 'oci-build.config.yaml', text }, home });
    const { configFile: _ignored, ...rest } = fromFile;
    expect(rest).toEqual(parseConfig({ home }));
  });

  it('applies precedence flags > environment > file > defaults', async () => {
    const file = { path: 'c.yaml', text: 'server:\n  port: 9000\n  host: 0.0.0.0\nworker:\n  concurrency: 3\nbuild:\n  timeout: 10m\n' };
    const env = { OCI_BUILD_SERVER_PORT: '9100', OCI_BUILD_WORKER_CONCURRENCY: '4' };
    const config = await loadConfig({ file, env, flags: { worker: { concurrency: 8 } }, home });
    expect(config.server.host).toBe('0.0.0.0'); // file
    expect(config.server.port).toBe(9100); // env over file
    expect(config.worker.concurrency).toBe(8); // flag over env
    expect(config.build.timeoutMs).toBe(600_000); // file over default
    expect(config.nats.url).toBe('nats://127.0.0.1:4222'); // default
  });

  it('reads lists and booleans from the environment', () => {
    const config = parseConfig({
      env: { OCI_BUILD_SERVER_API_TOKENS: 'aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb,', OCI_BUILD_IMAGE_PUSH: 'true', OCI_BUILD_IMAGE_TLS_VERIFY: '0' },
      home,
    });
    expect(config.server.apiTokens).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
    expect(config.image.push).toBe(true);
    expect(config.image.tlsVerify).toBe(false);
  });

  it('reports every problem at once, with its key path and where it came from', () => {
    const issues = issuesOf(() =>
      parseConfig({
        fileData: { server: { port: 'eighty', colour: 'blue' }, build: { timeout: 'soon' }, image: { storageDriver: 'zfs' } },
        env: { OCI_BUILD_WORKER_CONCURRENCY: 'many', OCI_BUILD_IMAGE_PUSH: 'maybe' },
        home,
      }),
    );
    const paths = issues.map((i) => i.path).sort();
    expect(paths).toEqual(['build.timeout', 'image.push', 'image.storageDriver', 'server.colour', 'server.port', 'worker.concurrency']);
    expect(issues.find((i) => i.path === 'server.colour')?.message).toBe('unknown key');
    expect(issues.find((i) => i.path === 'build.timeout')?.message).toMatch(/duration/);
    expect(issues.find((i) => i.path === 'worker.concurrency')?.source).toBe('OCI_BUILD_WORKER_CONCURRENCY');
    expect(issues.find((i) => i.path === 'image.push')?.source).toBe('OCI_BUILD_IMAGE_PUSH');
  });

  it('rejects unknown top-level keys and non-mapping files', async () => {
    expect(issuesOf(() => parseConfig({ fileData: { wrokDir: '/x' }, home }))[0]).toMatchObject({ path: 'wrokDir', message: 'unknown key' });
    await expect(loadConfig({ file: { path: 'c.yaml', text: '- a\n- b\n' }, home })).rejects.toBeInstanceOf(ConfigError);
    await expect(loadConfig({ file: { path: 'c.yaml', text: 'a: [\n' }, home })).rejects.toThrow(/not valid YAML/);
  });

  it('names every environment variable after its key path', () => {
    const names = Object.fromEntries(configLeaves().map((l) => [l.path, l.env]));
    expect(names['workDir']).toBe('OCI_BUILD_WORK_DIR');
    expect(names['nats.statusBucket']).toBe('OCI_BUILD_NATS_STATUS_BUCKET');
    expect(names['server.webhookSecret']).toBe('OCI_BUILD_SERVER_WEBHOOK_SECRET');
    expect(names['image.tlsVerify']).toBe('OCI_BUILD_IMAGE_TLS_VERIFY');
    expect(names['server.branches.include']).toBe('OCI_BUILD_SERVER_BRANCHES_INCLUDE');
    expect(envName('image.runRoot')).toBe('OCI_BUILD_IMAGE_RUN_ROOT');
  });

  it('merging is a property: a later layer wins for every leaf it sets', () => {
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(
      fc.property(fc.option(port, { nil: undefined }), fc.option(port, { nil: undefined }), fc.option(port, { nil: undefined }), (filePort, envPort, flagPort) => {
        const config = parseConfig({
          fileData: filePort === undefined ? {} : { server: { port: filePort } },
          env: envPort === undefined ? {} : { OCI_BUILD_SERVER_PORT: String(envPort) },
          flags: flagPort === undefined ? {} : { server: { port: flagPort } },
          home,
        });
        expect(config.server.port).toBe(flagPort ?? envPort ?? filePort ?? DEFAULTS.server.port);
      }),
    );
  });
});

describe('the precompiled validator', () => {
  it('was generated from the schema shipped now (regenerate it after editing the schema)', () => {
    expect(SCHEMA_SHA256).toBe(schemaSha256(CONFIG_SCHEMA));
  });
});

describe('durations', () => {
  it('parses units and combinations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
  });
  it('refuses anything else with a hint', () => {
    expect(() => parseDuration('7 days')).toThrow(/Invalid duration/);
    expect(() => parseDuration('')).toThrow(/Invalid duration/);
  });
});

describe('NATS cluster settings', () => {
  it('defaults to one server, one replica, and an 8 s queueWait', () => {
    const config = parseConfig({ home });
    expect(config.nats).toMatchObject({ servers: ['nats://127.0.0.1:4222'], replicas: 1 });
    expect(config.server.queueWaitMs).toBe(8000);
  });

  it('reads the servers, TLS files, credentials and replicas from the environment, paths made absolute', () => {
    const config = parseConfig({
      home,
      cwd: '/etc/oci-build',
      env: {
        OCI_BUILD_NATS_SERVERS: 'nats://a:4222,nats://b:4222,tls://c:4222',
        OCI_BUILD_NATS_TLS_CA: 'ca.pem',
        OCI_BUILD_NATS_TLS_CERT: '/pki/client.pem',
        OCI_BUILD_NATS_TLS_KEY: '~/client-key.pem',
        OCI_BUILD_NATS_CREDS_FILE: 'nats.creds',
        OCI_BUILD_NATS_REPLICAS: '3',
        OCI_BUILD_SERVER_QUEUE_WAIT: '6s',
      },
    });
    expect(config.nats.servers).toEqual(['nats://a:4222', 'nats://b:4222', 'tls://c:4222']);
    expect(config.nats.url).toBe('nats://a:4222,nats://b:4222,tls://c:4222');
    expect(config.nats.tls).toEqual({ ca: '/etc/oci-build/ca.pem', cert: '/pki/client.pem', key: '/home/tester/client-key.pem' });
    expect(config.nats.credsFile).toBe('/etc/oci-build/nats.creds');
    expect(config.nats.replicas).toBe(3);
    expect(config.server.queueWaitMs).toBe(6000);
  });

  it('nats.url keeps its comma-separated cluster form', () => {
    expect(parseConfig({ home, env: { OCI_BUILD_NATS_URL: 'nats://a:1, nats://b:2' } }).nats.servers).toEqual(['nats://a:1', 'nats://b:2']);
  });

  it('refuses a certificate without its key, two ways to authenticate, and replicas out of range, each by name', () => {
    const issues = issuesOf(() =>
      parseConfig({ home, env: { OCI_BUILD_NATS_TLS_CERT: 'c.pem', OCI_BUILD_NATS_CREDS_FILE: 'x.creds', OCI_BUILD_NATS_TOKEN: 't', OCI_BUILD_NATS_REPLICAS: '7' } }),
    );
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['nats.tls.key', 'nats.token', 'nats.replicas']));
    expect(issues.find((i) => i.path === 'nats.token')!.message).toMatch(/one way to authenticate/);
  });
});
