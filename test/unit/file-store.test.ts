import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InputError, OciBuildError } from '../../src/core/errors.js';
import type { LogStream } from '../../src/core/ports.js';
import type { BuildRecord, JobStatus } from '../../src/core/types.js';
import { FileBuildStore, newBuildId } from '../../src/store/file-build-store.js';
import { FileBuildLog, FileLogStore } from '../../src/store/file-log-store.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

function record(id: string, overrides: Partial<BuildRecord> & { fullName?: string; branch?: string } = {}): BuildRecord {
  const { fullName = 'acme/api', branch = 'main', ...rest } = overrides;
  return {
    id,
    status: 'succeeded',
    trigger: 'cli',
    repository: { fullName, branch, commit: 'a'.repeat(40) },
    createdAt: '2026-11-29T08:00:00.000Z',
    phases: [],
    images: [],
    ...rest,
  };
}

const TRAVERSAL_IDS = ['../escape', '..', '.', 'a/b', 'a\\b', '/etc/passwd', '.hidden', '', 'x\0y', 'a'.repeat(129), 'id with space'];

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir('oci-build-store-');
});
afterEach(async () => {
  await dir.cleanup();
});

describe('newBuildId', () => {
  it('is the UTC time to the second then 6 random hex digits', () => {
    expect(newBuildId(new Date('2026-11-29T08:01:02.345Z'))).toMatch(/^20261129-080102-[0-9a-f]{6}$/);
  });

  it('sorts by time and does not repeat', () => {
    const earlier = newBuildId(new Date('2026-11-29T08:01:02Z'));
    const later = newBuildId(new Date('2026-11-29T08:01:03Z'));
    expect(earlier < later).toBe(true);
    const now = new Date('2026-11-29T09:00:00Z');
    const ids = new Set(Array.from({ length: 2000 }, () => newBuildId(now)));
    // 2000 draws from 2^24 values: 0.12 colliding pairs are expected (birthday bound), so one or
    // two happen now and then (two in ~0.7 % of runs), four in ~1e-5; more would mean the random
    // part is not random.
    expect(ids.size).toBeGreaterThanOrEqual(1997);
  });

  it('is accepted by the store as a file name', async () => {
    const store = new FileBuildStore(join(dir.path, 'builds'));
    const id = newBuildId(new Date());
    await store.put(record(id));
    expect((await store.get(id))?.id).toBe(id);
  });
});

describe('FileBuildStore', () => {
  it('writes one JSON file per record and reads it back', async () => {
    const store = new FileBuildStore(join(dir.path, 'builds'));
    const rec = record('b1', { phases: [{ name: 'source', status: 'succeeded', startedAt: '2026-11-29T08:00:00.000Z', durationMs: 12 }] });
    await store.put(rec);
    expect(await readdir(join(dir.path, 'builds'))).toEqual(['b1.json']);
    expect(JSON.parse(await readFile(join(dir.path, 'builds', 'b1.json'), 'utf8'))).toEqual(rec);
    expect(await store.get('b1')).toEqual(rec);
  });

  it('fsyncs the final record (file and directory), and not the states before it', async () => {
    // Every FileHandle shares one prototype: spying on its sync() counts the store's fsyncs.
    const probe = await open(join(dir.path, 'probe'), 'w');
    const sync = vi.spyOn(Object.getPrototypeOf(probe) as { sync: () => Promise<void> }, 'sync');
    await probe.close();
    try {
      const store = new FileBuildStore(join(dir.path, 'builds'));
      const id = '20261129-080000-000001';
      for (const status of ['queued', 'running'] as JobStatus[]) await store.put(record(id, { status }));
      expect(sync).not.toHaveBeenCalled();
      expect((await store.get(id))?.status).toBe('running');
      for (const [n, status] of (['succeeded', 'failed', 'cancelled', 'skipped'] as JobStatus[]).entries()) {
        await store.put(record(id, { status }));
        expect(sync).toHaveBeenCalledTimes(2 * (n + 1));
      }
    } finally {
      sync.mockRestore();
    }
  });

  it('replaces a record on a second put', async () => {
    const store = new FileBuildStore(dir.path);
    await store.put(record('b1', { status: 'running' }));
    await store.put(record('b1', { status: 'failed' }));
    expect((await store.get('b1'))?.status).toBe('failed');
    expect(await readdir(dir.path)).toEqual(['b1.json']);
  });

  it('answers undefined for an unknown id and an empty list for a missing directory', async () => {
    const store = new FileBuildStore(join(dir.path, 'never-created'));
    expect(await store.get('nope')).toBeUndefined();
    expect(await store.list()).toEqual([]);
  });

  it.each(TRAVERSAL_IDS)('rejects the id %j in put, get and the log store', async (id) => {
    const store = new FileBuildStore(join(dir.path, 'builds'));
    const logs = new FileLogStore(join(dir.path, 'logs'));
    await expect(store.put(record(id))).rejects.toBeInstanceOf(InputError);
    await expect(store.get(id)).rejects.toBeInstanceOf(InputError);
    await expect(logs.open(id)).rejects.toBeInstanceOf(InputError);
    // Nothing was created anywhere: not in the store, not beside it.
    expect(await readdir(dir.path)).toEqual([]);
  });

  it('never shows a partial record to a concurrent reader', async () => {
    const store = new FileBuildStore(dir.path);
    const file = join(dir.path, 'busy.json');
    // Large records (~400 KB) make a non-atomic write span many write() calls.
    const version = (n: number) =>
      record('busy', { worker: `v${n}`, warnings: Array.from({ length: 4000 }, (_, i) => `v${n} warning ${i} ${'x'.repeat(80)}`) });
    await store.put(version(0));

    // The reader is another process, so its reads really run in parallel with the writes.
    const reader = spawn(
      process.execPath,
      [
        '-e',
        `
        const fs = require('node:fs');
        const file = process.argv[1];
        let reads = 0, bad = 0, inconsistent = 0;
        const seen = new Set();
        const deadline = Date.now() + 60000;
        while (!fs.existsSync(file + '.stop') && Date.now() < deadline) {
          let text;
          try { text = fs.readFileSync(file, 'utf8'); } catch { bad++; continue; }
          try {
            const r = JSON.parse(text);
            reads++;
            seen.add(r.worker);
            if (!r.warnings.every((w) => w.startsWith(r.worker + ' '))) inconsistent++;
          } catch { bad++; }
        }
        process.stdout.write(JSON.stringify({ reads, bad, inconsistent, versions: seen.size }));
        `,
        file,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    reader.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => reader.on('close', resolve));

    for (let n = 1; n <= 150; n++) await store.put(version(n));
    await writeFile(`${file}.stop`, '');
    expect(await exited).toBe(0);

    const result = JSON.parse(out) as { reads: number; bad: number; inconsistent: number; versions: number };
    expect(result.bad).toBe(0);
    expect(result.inconsistent).toBe(0);
    expect(result.reads).toBeGreaterThan(0);
    // The reader saw the record change while it read, so the writes did overlap its reads.
    expect(result.versions).toBeGreaterThan(1);
    expect((await store.get('busy'))?.worker).toBe('v150');
    // No temporary file is left behind.
    expect((await readdir(dir.path)).filter((n) => n !== 'busy.json.stop')).toEqual(['busy.json']);
  });

  it('keeps every record when many are written at once', async () => {
    const store = new FileBuildStore(dir.path);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(record(`c${i}`))));
    expect((await store.list()).map((r) => r.id).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`).sort());
  });

  describe('list', () => {
    const fixtures: Array<[string, string, string, string, JobStatus]> = [
      // id, createdAt, repository, branch, status
      ['b-oldest', '2026-11-29T07:00:00.000Z', 'acme/api', 'main', 'succeeded'],
      ['b-newest', '2026-11-29T09:30:00.000Z', 'acme/api', 'feature/x', 'failed'],
      ['b-middle', '2026-11-29T08:15:00.000Z', 'acme/web', 'main', 'running'],
      ['b-second', '2026-11-29T09:00:00.000Z', 'acme/web', 'main', 'succeeded'],
      ['b-third', '2026-11-29T08:30:00.000Z', 'Acme/API', 'main', 'failed'],
    ];
    let store: FileBuildStore;
    beforeEach(async () => {
      store = new FileBuildStore(dir.path);
      for (const [id, createdAt, fullName, branch, status] of fixtures) await store.put(record(id, { createdAt, fullName, branch, status }));
    });

    it('returns the newest first by createdAt, whatever the ids and the write order', async () => {
      expect((await store.list()).map((r) => r.id)).toEqual(['b-newest', 'b-second', 'b-third', 'b-middle', 'b-oldest']);
    });

    it('filters by repository (case-insensitively, as GitHub does), branch and status', async () => {
      expect((await store.list({ repo: 'acme/api' })).map((r) => r.id)).toEqual(['b-newest', 'b-third', 'b-oldest']);
      expect((await store.list({ branch: 'main' })).map((r) => r.id)).toEqual(['b-second', 'b-third', 'b-middle', 'b-oldest']);
      expect((await store.list({ status: 'failed' })).map((r) => r.id)).toEqual(['b-newest', 'b-third']);
      expect((await store.list({ repo: 'acme/web', status: 'succeeded' })).map((r) => r.id)).toEqual(['b-second']);
      expect(await store.list({ repo: 'acme/none' })).toEqual([]);
    });

    it('applies the limit after filtering', async () => {
      expect((await store.list({ limit: 2 })).map((r) => r.id)).toEqual(['b-newest', 'b-second']);
      expect((await store.list({ branch: 'main', limit: 1 })).map((r) => r.id)).toEqual(['b-second']);
    });

    it('refuses a limit that is not a positive whole number', async () => {
      for (const limit of [0, -1, 1.5, Number.NaN]) await expect(store.list({ limit })).rejects.toBeInstanceOf(InputError);
    });

    it('skips temporary files, damaged records and foreign files', async () => {
      await writeFile(join(dir.path, '.b-x.123.abcd.tmp'), '{"id":"b-x"');
      await writeFile(join(dir.path, 'damaged.json'), '{"id": "damaged", "createdAt": ');
      await writeFile(join(dir.path, 'notes.txt'), 'hello');
      await writeFile(join(dir.path, 'array.json'), '[1, 2]');
      await writeFile(join(dir.path, 'partial.json'), '{"id": "partial", "createdAt": "2026-11-29T10:00:00.000Z"}');
      await mkdir(join(dir.path, 'sub.json'));
      expect(await store.list()).toHaveLength(fixtures.length);
      // Asked for by id, a damaged record is an error that says which file, not silence.
      await expect(store.get('damaged')).rejects.toThrow(/damaged\.json is not valid JSON/);
    });
  });
});

describe('FileLogStore', () => {
  it('writes raw lines to <dir>/<id>.log, readable after close', async () => {
    const logs = new FileLogStore(join(dir.path, 'logs'));
    const log = await logs.open('b1');
    expect(log.location).toBe(join(dir.path, 'logs', 'b1.log'));
    log.write('==> build', 'system');
    log.write('go: downloading nothing', 'stderr');
    log.write('ok  \tcompiled', 'stdout');
    log.write('');
    await log.close();
    expect(await readFile(log.location, 'utf8')).toBe('==> build\ngo: downloading nothing\nok  \tcompiled\n\n');
  });

  it('flushes many lines written without waiting, and drops lines after close', async () => {
    const logs = new FileLogStore(dir.path);
    const log = await logs.open('big');
    const lines = Array.from({ length: 20000 }, (_, i) => `line ${i} ${'y'.repeat(100)}`);
    for (const line of lines) log.write(line);
    await log.close();
    log.write('after close');
    await log.close();
    const text = await readFile(join(dir.path, 'big.log'), 'utf8');
    expect(text.split('\n')).toEqual([...lines, '']);
  });

  it('appends when the same build id is opened again (a retried job)', async () => {
    const logs = new FileLogStore(dir.path);
    const first = await logs.open('retry');
    first.write('attempt 1');
    await first.close();
    const second = await logs.open('retry');
    second.write('attempt 2');
    await second.close();
    expect(await readFile(join(dir.path, 'retry.log'), 'utf8')).toBe('attempt 1\nattempt 2\n');
  });

  it('copies every line to the tee with its stream', async () => {
    const seen: Array<[string, LogStream | undefined]> = [];
    const logs = new FileLogStore(dir.path, { tee: { write: (line, stream) => seen.push([line, stream]) } });
    const log = await logs.open('t1');
    log.write('compiling', 'stdout');
    log.write('warning: x', 'stderr');
    await log.close();
    expect(seen).toEqual([
      ['compiling', 'stdout'],
      ['warning: x', 'stderr'],
    ]);
    expect(await readFile(join(dir.path, 't1.log'), 'utf8')).toBe('compiling\nwarning: x\n');
  });

  it('a write that fails (a full disk) is remembered, drops the lines after it, and never fails the build', async () => {
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    const log = new FileBuildLog('/dev/full', await open('/dev/full', 'a'));
    log.write('first');
    log.write('second');
    await expect(log.close()).resolves.toBeUndefined();
    expect((log.error as NodeJS.ErrnoException | undefined)?.code).toBe('ENOSPC');
    log.write('after');
    expect(log.error?.message).toMatch(/ENOSPC/);
  });

  it('fails to open with a typed error naming the path when the directory cannot be made', async () => {
    const blocker = join(dir.path, 'not-a-dir');
    await writeFile(blocker, '');
    const logs = new FileLogStore(join(blocker, 'logs'));
    const error = await logs.open('b1').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(OciBuildError);
    expect((error as OciBuildError).message).toContain(join(blocker, 'logs', 'b1.log'));
  });
});
