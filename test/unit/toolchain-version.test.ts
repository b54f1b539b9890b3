// build/toolchain-version.ts: Go's and Node's versions are kept on disk under the identity of the
// executable PATH finds; a new binary, another GOTOOLCHAIN, or a tool whose answer depends on more
// than its own file (Maven) is asked again. The runner counts the processes a real run would start.

import { chmod, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { executableIdentity, ToolchainVersions } from '../../src/build/toolchain-version.js';
import type { CommandRunner } from '../../src/exec/run-command.js';

let dir: string;
let bin: string;
let cacheFile: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oci-build-toolchains-'));
  bin = join(dir, 'bin');
  cacheFile = join(dir, 'work', 'cache', 'toolchain-versions.json');
  await mkdir(bin);
  for (const tool of ['go', 'node', 'mvn']) {
    await writeFile(join(bin, tool), '#!/bin/sh\nexit 0\n');
    await chmod(join(bin, tool), 0o755);
  }
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Answers `<tool> <n>` for the n-th process it is asked to start. */
function counting(): { run: CommandRunner; asked: string[] } {
  const asked: string[] = [];
  const run: CommandRunner = async (file) => {
    asked.push(file);
    return { exitCode: 0, stdout: `${file} version ${asked.length}\n`, stderr: '', durationMs: 1 };
  };
  return { run, asked };
}

describe('ToolchainVersions across runs', () => {
  it('asks go and node once; a later run (another process) reads them from the cache file', async () => {
    const env = { PATH: bin };
    const first = counting();
    expect(await new ToolchainVersions(first.run, { cacheFile, env }).of(['go', 'node'])).toEqual({ go: 'go version 1', node: 'node version 2' });
    const second = counting();
    expect(await new ToolchainVersions(second.run, { cacheFile, env }).of(['go', 'node'])).toEqual({ go: 'go version 1', node: 'node version 2' });
    expect(second.asked).toEqual([]);
  });

  it('asks again for a replaced binary, another GOTOOLCHAIN, and always for Maven', async () => {
    const env = { PATH: bin };
    await new ToolchainVersions(counting().run, { cacheFile, env }).of(['go', 'mvn']);

    const mvn = counting();
    await new ToolchainVersions(mvn.run, { cacheFile, env }).of(['go', 'mvn']);
    expect(mvn.asked).toEqual(['mvn']);

    const toolchain = counting();
    await new ToolchainVersions(toolchain.run, { cacheFile, env: { ...env, GOTOOLCHAIN: 'go1.22.0' } }).of(['go']);
    expect(toolchain.asked).toEqual(['go']);

    await utimes(join(bin, 'go'), new Date('2030-01-01'), new Date('2030-01-01'));
    const upgraded = counting();
    expect(await new ToolchainVersions(upgraded.run, { cacheFile, env }).of(['go'])).toEqual({ go: 'go version 1' });
    expect(upgraded.asked).toEqual(['go']);
  });

  it('without a cache file, asks once per process as before', async () => {
    const once = counting();
    const versions = new ToolchainVersions(once.run, { env: { PATH: bin } });
    await versions.of(['go']);
    await versions.of(['go']);
    expect(once.asked).toEqual(['go']);
    expect(counting().asked).toEqual([]);
  });

  it('names an executable by what PATH finds: another directory first is another identity; no executable, none', async () => {
    const other = join(dir, 'other');
    await mkdir(other);
    await writeFile(join(other, 'go'), '#!/bin/sh\n');
    await chmod(join(other, 'go'), 0o755);
    const here = executableIdentity('go', { PATH: bin });
    expect(here).toMatch(/^[0-9a-f]{64}$/);
    expect(executableIdentity('go', { PATH: `${other}:${bin}` })).not.toBe(here);
    expect(executableIdentity('go', { PATH: `relative:${bin}` })).toBe(here);
    await chmod(join(bin, 'go'), 0o644);
    expect(executableIdentity('go', { PATH: bin })).toBeUndefined();
  });
});
