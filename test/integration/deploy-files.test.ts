// The deployment files through the tools that read them: `docker-compose config` (Debian's
// docker-compose 1.29), `systemd-analyze verify`, and promtool (`check config`, `check rules`,
// `test rules` on the rules' own unit tests). Each must accept its file without a warning.

import { readFileSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configLeaves } from '../../src/config/config.js';
import { DEPLOY_DIR, ociBuildNames, resolvedCompose, runTool, type ComposeConfig } from '../helpers/deploy-files.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

describe('docker-compose config', () => {
  let compose: { config: ComposeConfig; code: number; stderr: string };
  beforeAll(async () => {
    compose = await resolvedCompose();
  });

  it('accepts deploy/compose.yaml with the example env file, without a warning', () => {
    expect(compose.code, compose.stderr).toBe(0);
    expect(compose.stderr).toBe('');
    expect(Object.keys(compose.config.services).sort()).toEqual(['nats', 'serve', 'worker']);
  });

  it('gives the workers two replicas, and both daemons the env file folded into their environment', () => {
    const { services } = compose.config;
    expect(services.worker!.deploy?.replicas).toBe(2);
    const example = ociBuildNames(readFileSync(join(DEPLOY_DIR, 'oci-build.env.example'), 'utf8'));
    expect(example).toContain('OCI_BUILD_SERVER_WEBHOOK_SECRET');
    for (const name of ['serve', 'worker']) {
      const env = services[name]!.environment!;
      for (const key of example) expect(Object.keys(env), `${name}: ${key}`).toContain(key);
      const known = new Set(configLeaves().map((leaf) => leaf.env));
      for (const key of Object.keys(env)) expect(known.has(key), `${name}: ${key}`).toBe(true);
    }
  });
});

describe('systemd-analyze verify', () => {
  let dir: TempDir;
  beforeAll(async () => {
    dir = await tempDir('oci-build-units-');
  });
  afterAll(async () => {
    await dir?.cleanup();
  });

  it('accepts both units as shipped, with ExecStart pointed at an executable that exists here', async () => {
    // verify checks that ExecStart's binary exists: a stand-in replaces /usr/local/bin/oci-build in
    // copies; the shipped files keep the canonical path.
    const stand = join(dir.path, 'oci-build');
    await writeFile(stand, '#!/bin/sh\n');
    await chmod(stand, 0o755);
    const units = ['oci-build-serve.service', 'oci-build-worker@.service'];
    for (const unit of units) {
      const text = await readFile(join(DEPLOY_DIR, 'systemd', unit), 'utf8');
      expect(text).toContain('ExecStart=/usr/local/bin/oci-build ');
      await writeFile(join(dir.path, unit), text.replaceAll('/usr/local/bin/oci-build', stand));
    }
    // A template is verified through an instance of it.
    const result = await runTool('systemd-analyze', ['verify', join(dir.path, 'oci-build-serve.service'), join(dir.path, 'oci-build-worker@2.service')]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
  });

  it('would report a unit it cannot read (the check is real)', async () => {
    await writeFile(join(dir.path, 'broken.service'), '[Service]\nExecStart=/nonexistent/oci-build serve\nKillMode=sometimes\n');
    const result = await runTool('systemd-analyze', ['verify', join(dir.path, 'broken.service')]);
    expect(result.stderr).toMatch(/KillMode|not executable/);
  });
});

describe('promtool', () => {
  const prometheus = join(DEPLOY_DIR, 'prometheus');

  it('check config: the scrape config and the rule file it loads', async () => {
    const result = await runTool('promtool', ['check', 'config', 'prometheus.yml'], { cwd: prometheus });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('check rules: every alert rule', async () => {
    const result = await runTool('promtool', ['check', 'rules', 'alerts.yml'], { cwd: prometheus });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/SUCCESS: 7 rules found/);
  });

  it('test rules: each alert fires on the series it is for, and not on healthy ones', async () => {
    const result = await runTool('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: prometheus });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const tested = new Set([...(await readFile(join(prometheus, 'alerts.test.yml'), 'utf8')).matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
    const rules = [...(await readFile(join(prometheus, 'alerts.yml'), 'utf8')).matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    expect([...tested].sort()).toEqual(rules.sort());
  });
});
