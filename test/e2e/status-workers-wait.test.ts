// `oci-build status --workers` against a NATS cluster that has no quorum yet: the command says it is
// waiting for JetStream (on stderr) instead of hanging silently, and answers once the cluster does.

import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/cli.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsCluster, type NatsCluster } from '../helpers/nats-cluster.mjs';

let cluster: NatsCluster | undefined;
let sandbox: TempDir | undefined;

afterAll(async () => {
  await cluster?.stop();
  await sandbox?.cleanup();
});

describe('status --workers while JetStream settles', () => {
  it('says it waits, then lists the workers (none) once a second node gives the cluster its quorum', async () => {
    cluster = await startNatsCluster({ running: 1 });
    sandbox = await tempDir('oci-build-status-wait-');
    const [first, second] = cluster.nodes as [NatsCluster['nodes'][0], NatsCluster['nodes'][0]];
    const child = spawn(process.execPath, [CLI, 'status', '--workers'], {
      cwd: sandbox.path,
      env: { ...process.env, CI: 'true', NO_COLOR: '1', OCI_BUILD_WORK_DIR: sandbox.path, OCI_BUILD_NATS_URL: first.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let secondStarted: Promise<void> | undefined;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('JetStream is not answering yet')) secondStarted ??= second.start();
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    await secondStarted;
    expect(stderr).toContain('JetStream is not answering yet; setting up its streams again');
    expect(code, stderr).toBe(0);
    expect(stdout).toBe(`No live workers on ${first.url}\n`);
  }, 120_000);
});
