// What monitoring reads from a real `oci-build serve` (a process, against a real nats-server):
// `promtool check metrics` accepts its /metrics, every metric the alert rules name is in it, and
// every path the deployment files probe or scrape answers.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import { CLI, isolatedEnv } from '../helpers/cli.js';
import { kubernetesObjects, readDeployFile, runTool } from '../helpers/deploy-files.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';

const SECRET = 'metrics-webhook-secret';

let nats: NatsServer;
let sandbox: TempDir;
let serve: ChildProcess;
let port: number;
let scrape: string;

async function webhook(event: string, body: string, signed: boolean): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': event,
      'x-github-delivery': randomUUID(),
      ...(signed ? { 'x-hub-signature-256': signWebhookBody(SECRET, body) } : {}),
    },
    body,
  });
  await response.text();
  return response.status;
}

beforeAll(async () => {
  [nats, sandbox] = await Promise.all([startNatsServer(), tempDir('oci-build-metrics-')]);
  port = await freePort();
  // bin/oci-build.js runs the bundle the global setup builds from this checkout's sources, the
  // metrics code under test; from a directory of its own, away from the checkout's config file.
  serve = spawn(process.execPath, [CLI, 'serve'], {
    cwd: sandbox.path,
    env: { ...process.env, ...isolatedEnv(sandbox.path), OCI_BUILD_NATS_URL: nats.url, OCI_BUILD_SERVER_PORT: String(port), OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  serve.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  serve.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' }).catch((err: Error) => {
    throw new Error(`${err.message}:\n${output}`);
  });
  // Some traffic, so labelled series exist: a ping (200), an unsigned push (401).
  expect(await webhook('ping', JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 }), true)).toBe(200);
  expect(await webhook('push', '{}', false)).toBe(401);
  scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
});

afterAll(async () => {
  if (serve && serve.exitCode === null) {
    const exited = new Promise((r) => serve.once('exit', r));
    serve.kill('SIGTERM');
    await exited;
  }
  await Promise.allSettled([nats?.stop(), sandbox?.cleanup()]);
});

/** Metric families of a scrape (`# TYPE name kind`), with the sample names each one gives. */
function families(text: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [name, kind] = [match[1]!, match[2]!];
    found.set(name, kind === 'histogram' || kind === 'summary' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`, name] : [name]);
  }
  return found;
}

describe('/metrics of a real serve', () => {
  it('passes promtool check metrics', async () => {
    expect(scrape).toContain('oci_build_webhooks_total');
    const result = await runTool('promtool', ['check', 'metrics'], { input: scrape });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('promtool would say so of a badly named metric (the check is real)', async () => {
    const result = await runTool('promtool', ['check', 'metrics'], { input: '# HELP x_total a gauge\n# TYPE x_total gauge\nx_total 1\n' });
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/_total/);
  });

  it('has every metric the alert rules name, with the labels they select on', () => {
    const rules = parse(readDeployFile('prometheus/alerts.yml')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const samples = new Set([...families(scrape).values()].flat());
    const named = new Set<string>();
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      for (const name of rule.expr.match(/\b(oci_build_[a-z0-9_]+|up)\b/g) ?? []) named.add(name);
    }
    named.delete('up'); // Prometheus's own, one per scrape target
    expect(named.size).toBeGreaterThanOrEqual(4);
    for (const name of named) expect(samples.has(name), `${name} (alerts.yml) is not in serve's /metrics`).toBe(true);
    // The 5xx rule selects the webhook route by its label.
    expect(scrape).toMatch(/^oci_build_http_request_duration_seconds_count\{[^}]*route="webhook"[^}]*status="401"[^}]*\} 1$/m);
  });
});

describe('the paths the deployment files probe and scrape', () => {
  it('the Kubernetes probes and the Prometheus metrics_path answer 200', async () => {
    const serveDeployment = kubernetesObjects('kubernetes/serve.yaml').find((o) => o.kind === 'Deployment')!;
    const container = serveDeployment.spec.template.spec.containers[0];
    const paths = [container.readinessProbe.httpGet.path as string, serveDeployment.spec.template.metadata.annotations['prometheus.io/path'] as string];
    const prometheus = parse(readDeployFile('prometheus/prometheus.yml')) as { scrape_configs: Array<{ metrics_path: string }> };
    paths.push(prometheus.scrape_configs[0]!.metrics_path);
    expect(paths).toHaveLength(3);
    for (const path of paths) {
      const response = await fetch(`http://127.0.0.1:${port}${path}`);
      expect(response.status, path).toBe(200);
    }
  });

  it("compose's serve healthcheck succeeds against serve, and fails where nothing listens", async () => {
    const compose = parse(readDeployFile('compose.yaml'), { merge: true }) as { services: Record<string, { healthcheck: { test: string[] }; environment: Record<string, string> }> };
    const [kind, file, ...args] = compose.services.serve!.healthcheck.test;
    expect(kind).toBe('CMD');
    const composePort = compose.services.serve!.environment.OCI_BUILD_SERVER_PORT!;
    const at = (p: number) => args.map((arg) => arg.replace(`/dev/tcp/127.0.0.1/${composePort}`, `/dev/tcp/127.0.0.1/${p}`));
    expect(at(port)).not.toEqual(args);
    expect((await runTool(file!, at(port))).code).toBe(0);
    expect((await runTool(file!, at(await freePort()))).code).not.toBe(0);
  });
});
