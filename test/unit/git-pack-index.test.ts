// Our native pack indexer against `git index-pack`: the .idx files must be byte-identical.

import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexAndStorePack } from '../../src/git/pack-indexer.js';
import { PackFormatError } from '../../src/git/pack-objects.js';
import { PackReader } from '../../src/git/pack-reader.js';
import { classifyRemoteError } from '../../src/git/remote-errors.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { workRepo } from '../helpers/git-http-server.js';

describe('indexAndStorePack', () => {
  let tmp: TempDir;
  let repoDir: string;

  beforeAll(async () => {
    tmp = await tempDir();
    const repo = await workRepo(tmp);
    repoDir = repo.dir;
    // Similar versions of one big file: pack-objects stores most of them as deltas.
    const lines = Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`);
    for (let c = 0; c < 12; c++) {
      lines[c * 7] = `changed in commit ${c}`;
      repo.commit({ 'big.txt': lines.join('\n'), [`dir/f${c}.txt`]: `file ${c}\n`, 'bin.dat': Buffer.alloc(3000, c).toString('latin1') }, `c${c}`);
    }
    repo.git(['tag', '-a', 'v1', '-m', 'tag']);
  });
  afterAll(() => tmp.cleanup());

  async function check(packArgs: string[], retainBytes?: number) {
    const objects = execFileSync('git', ['-C', repoDir, 'rev-list', '--objects', '--all']);
    const pack = execFileSync('git', ['-C', repoDir, 'pack-objects', '--stdout', '-q', ...packArgs], { input: objects, maxBuffer: 1 << 28 });
    const gitdir = join(tmp.path, `gitdir-${packArgs.join('')}-${retainBytes ?? 'all'}`);
    await mkdir(gitdir, { recursive: true });
    const result = await indexAndStorePack(pack, gitdir, undefined, retainBytes);
    expect(result?.objects).toBe(objects.toString().trim().split('\n').length);
    const packDir = join(gitdir, 'objects', 'pack');
    const names = (await readdir(packDir)).sort();
    expect(names).toHaveLength(2);
    const theirs = join(tmp.path, 'theirs.pack');
    await writeFile(theirs, pack);
    execFileSync('git', ['index-pack', '-o', join(tmp.path, 'theirs.idx'), theirs]);
    expect((await readFile(join(packDir, names.find((n) => n.endsWith('.idx'))!))).equals(await readFile(join(tmp.path, 'theirs.idx')))).toBe(true);
    // and native git can read every object through it
    execFileSync('git', ['init', '-q', '--bare', gitdir]);
    execFileSync('git', ['--git-dir', gitdir, 'cat-file', '--batch-all-objects', '--batch-check']);
    // every object reads back, through our reader, as native git reads it
    const oids = objects.toString().trim().split('\n').map((line) => line.slice(0, 40));
    const reader = PackReader.open(gitdir);
    try {
      for (const oid of oids) {
        const ours = reader.read(oid);
        const type = execFileSync('git', ['--git-dir', gitdir, 'cat-file', '-t', oid], { encoding: 'utf8' }).trim();
        const content = execFileSync('git', ['--git-dir', gitdir, 'cat-file', type, oid]);
        expect(ours?.type, oid).toBe(type);
        expect(ours?.data.equals(content), oid).toBe(true);
      }
      expect(reader.read('0'.repeat(40))).toBeUndefined();
    } finally {
      reader.close();
    }
    const deltas = execFileSync('git', ['verify-pack', '-v', join(packDir, names.find((n) => n.endsWith('.pack'))!)], { encoding: 'utf8' });
    return deltas;
  }

  it('writes the same .idx as git index-pack, offset deltas included', async () => {
    const verbose = await check([]);
    expect(verbose).toMatch(/chain length = [1-9]/); // the pack really had deltas
  });

  it('resolves ref deltas too', async () => {
    await check(['--no-delta-base-offset']);
  });

  it('gives the same index when nothing may stay in memory (objects inflated again on demand)', async () => {
    await check([], 0);
    await check(['--no-delta-base-offset'], 0);
  });

  it('refuses a truncated pack with an error retried as a network failure', async () => {
    const objects = execFileSync('git', ['-C', repoDir, 'rev-list', '--objects', '--all']);
    const pack = execFileSync('git', ['-C', repoDir, 'pack-objects', '--stdout', '-q'], { input: objects, maxBuffer: 1 << 28 });
    const error = await indexAndStorePack(pack.subarray(0, pack.length - 100), join(tmp.path, 'truncated')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PackFormatError);
    expect(classifyRemoteError(error, (s) => s).kind).toBe('transient');
  });
});
