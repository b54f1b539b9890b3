// image/registry-api.ts against the real docker-registry (CNCF distribution): a manifest found by
// digest, written under new tags with no blob uploaded, the digest checked; and the reuse of an
// image in the registry (registry-tag.ts) done without starting skopeo.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PhaseContext } from '../../src/core/ports.js';
import type { CommandRunner } from '../../src/exec/run-command.js';
import { RegistryApi } from '../../src/image/registry-api.js';
import { createImageReuse } from '../../src/image/registry-tag.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const lines: string[] = [];
const ctx: PhaseContext = { signal: new AbortController().signal, log: { write: (line) => lines.push(line) } };

let registry: TestRegistry;
let repository: string;
let digest: string;
let manifestBytes: Buffer;

/** Uploads a blob with the distribution API's two-step upload. */
async function uploadBlob(name: string, data: Buffer): Promise<string> {
  const started = await fetch(`http://${registry.host}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  expect(started.status).toBe(202);
  const location = new URL(started.headers.get('location')!, `http://${registry.host}`);
  location.searchParams.set('digest', sha256(data));
  const done = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  expect(done.status).toBe(201);
  return sha256(data);
}

beforeAll(async () => {
  registry = await startRegistry();
  repository = `${registry.host}/reuse/app`;
  const layer = Buffer.from('a layer of the image\n');
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] }, config: {} }));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await uploadBlob('reuse/app', config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await uploadBlob('reuse/app', layer), size: layer.length }],
  };
  manifestBytes = Buffer.from(JSON.stringify(manifest, null, 3));
  const put = await fetch(`http://${registry.host}/v2/reuse/app/manifests/sha-first`, { method: 'PUT', body: manifestBytes, headers: { 'content-type': manifest.mediaType } });
  expect(put.status).toBe(201);
  digest = sha256(manifestBytes);
});

afterAll(async () => {
  await registry?.stop();
});

describe('RegistryApi (distribution API, in-process)', () => {
  it('finds a manifest by digest, and says no for one the registry does not have', async () => {
    const api = RegistryApi.for(repository, { tlsVerify: false })!;
    expect(await api.hasManifest(digest)).toBe(true);
    expect(await api.hasManifest(`sha256:${'0'.repeat(64)}`)).toBe(false);
    expect(await RegistryApi.for(`${registry.host}/reuse/other`, { tlsVerify: false })!.hasManifest(digest)).toBe(false);
  });

  it('writes the same manifest bytes under a new tag: the registry serves the same digest for it', async () => {
    const api = RegistryApi.for(repository, { tlsVerify: false })!;
    const manifest = await api.manifest(digest);
    expect(manifest?.bytes.equals(manifestBytes)).toBe(true);
    expect(await api.putManifest('v1.0.0', manifest!)).toBe(digest);
    const inspected = execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repository}:v1.0.0`]);
    expect(sha256(inspected)).toBe(digest);
  });

  it('is unsure (undefined), not wrong, where it cannot ask: no registry there, TLS required of a plain-HTTP registry', async () => {
    expect(await RegistryApi.for('127.0.0.1:1/reuse/app', { tlsVerify: false })!.hasManifest(digest)).toBeUndefined();
    expect(await RegistryApi.for(repository, { tlsVerify: true })!.hasManifest(digest)).toBeUndefined();
    expect(RegistryApi.for('no-registry-host', { tlsVerify: false })).toBeUndefined();
  });
});

describe('reuse of an image in the registry', () => {
  it('locates it and gives it its new tags through the API: no skopeo process, same digest', async () => {
    const started: string[] = [];
    const run: CommandRunner = async (file, args) => {
      started.push([file, ...args].join(' '));
      throw new Error(`no process expected, got ${file}`);
    };
    const reuse = createImageReuse({ run, options: { storageDriver: 'vfs', isolation: 'chroot' } });
    const target = { repository, tags: ['main', 'sha-0123456'], push: true, tlsVerify: false };
    const entry = { project: 'app', digest, repository, pushed: true, buildId: '20261202-000000-000001', key: 'k', createdAt: new Date().toISOString() };
    const source = await reuse.locate(entry, target, ctx);
    expect(source).toEqual({ kind: 'registry', digest });
    expect(await reuse.retag(source!, target, ctx)).toEqual({ digest, pushed: true });
    expect(started).toEqual([]);
    for (const tag of target.tags) expect(sha256(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${repository}:${tag}`]))).toBe(digest);
    expect(lines.join('\n')).toContain(`PUT ${repository}:main = ${digest} (reused, no layer uploaded)`);
  });

  it('an image deleted from the registry is a miss, without asking skopeo', async () => {
    const manifest = `http://${registry.host}/v2/reuse/app/manifests/${digest}`;
    expect((await fetch(manifest, { method: 'DELETE' })).status).toBe(202);
    const run: CommandRunner = async (file) => {
      throw new Error(`no process expected, got ${file}`);
    };
    const reuse = createImageReuse({ run, options: { storageDriver: 'vfs', isolation: 'chroot' } });
    const entry = { project: 'app', digest, repository, pushed: true, buildId: '20261202-000000-000001', key: 'k', createdAt: new Date().toISOString() };
    expect(await reuse.locate(entry, { repository, tags: ['x'], push: true, tlsVerify: false }, ctx)).toBeUndefined();
  });
});
