// A real OCI registry for a test suite: Debian's docker-registry (CNCF distribution 2.8) on a free
// loopback port, with its own config (the packaged one requires htpasswd auth) and a temp storage
// directory. seedBusybox() pushes a shell base image built from busybox-static, since no public
// registry is reachable from the test machines.

import { spawn, type ChildProcess } from 'node:child_process';
import { access, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { runCommand } from '../../src/exec/run-command.js';
import { createBuildahImageBuilder, type BuildahOptions } from '../../src/image/buildah.js';
import type { LogSink } from '../../src/core/ports.js';
import { tempDir } from './fixtures.js';
import { freePort, waitFor } from './ports.js';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';
export const BUSYBOX_BINARY = '/bin/busybox';

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  /** Stops the process and removes its storage. Idempotent. */
  stop(): Promise<void>;
}

async function answersV2(host: string): Promise<boolean> {
  const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(1000) });
  return response.status === 200;
}

export async function startRegistry(): Promise<TestRegistry> {
  try {
    await access(REGISTRY_BINARY);
  } catch {
    throw new Error(`${REGISTRY_BINARY} is missing: apt-get install -y docker-registry (scripts/test.sh installs it)`);
  }
  const dir = await tempDir('oci-build-registry-');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const configPath = join(dir.path, 'config.yml');
  await writeFile(
    configPath,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir.path, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
      '',
    ].join('\n'),
  );
  const output: string[] = [];
  const child: ChildProcess = spawn(REGISTRY_BINARY, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 50) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const exitedPromise = new Promise<void>((resolveExit) =>
    child.once('exit', () => {
      exited = true;
      resolveExit();
    }),
  );

  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await exitedPromise;
    }
    await dir.cleanup();
  };
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error('exited');
        return answersV2(host);
      },
      { what: `docker-registry on ${host}`, timeoutMs: 20_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw new Error(`docker-registry did not answer GET http://${host}/v2/ (${(err as Error).message}):\n${output.join('')}`);
  }
  if (exited) {
    await stop();
    throw new Error(`docker-registry exited at start:\n${output.join('')}`);
  }
  return { host, stop };
}

const silent: LogSink = { write: () => undefined };

/**
 * Builds `FROM scratch` + busybox-static as /bin/busybox with every applet linked in /bin
 * (so /bin/sh exists and RUN steps work), and pushes it as `<host>/library/busybox:latest`.
 * Returns that reference.
 */
export async function seedBusybox(registryHost: string, buildahOpts: BuildahOptions, options: { log?: LogSink } = {}): Promise<string> {
  try {
    await access(BUSYBOX_BINARY);
  } catch {
    throw new Error(`${BUSYBOX_BINARY} is missing: apt-get install -y busybox-static (scripts/test.sh installs it)`);
  }
  const context = await tempDir('oci-build-busybox-');
  try {
    const bin = join(context.path, 'rootfs', 'bin');
    await mkdir(bin, { recursive: true });
    await mkdir(join(context.path, 'rootfs', 'etc'), { recursive: true });
    await mkdir(join(context.path, 'rootfs', 'tmp'), { recursive: true });
    await copyFile(BUSYBOX_BINARY, join(bin, 'busybox'));
    // Symlinks in the context, copied as they are: no RUN step is needed to install the applets.
    const applets = execFileSync(BUSYBOX_BINARY, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
    for (const applet of applets) await symlink('busybox', join(bin, applet));
    await writeFile(join(context.path, 'rootfs', 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(join(context.path, 'rootfs', 'etc', 'group'), 'root:x:0:\n');
    await writeFile(join(context.path, 'Dockerfile'), 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n');

    const images = createBuildahImageBuilder({ run: runCommand, options: buildahOpts });
    const ctx = { signal: new AbortController().signal, log: options.log ?? silent };
    const repository = `${registryHost}/library/busybox`;
    const built = await images.build(
      {
        project: 'busybox',
        contextDir: context.path,
        dockerfile: join(context.path, 'Dockerfile'),
        repository,
        tags: ['latest'],
        labels: {},
        buildArgs: {},
        timestamp: 1_767_225_600,
      },
      ctx,
    );
    await images.push({ repository, tags: ['latest'], imageId: built.imageId, tlsVerify: false }, ctx);
    return `${repository}:latest`;
  } finally {
    await context.cleanup();
  }
}
