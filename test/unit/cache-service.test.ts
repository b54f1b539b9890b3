import { existsSync, lstatSync } from 'node:fs';
import { lutimes, mkdir, readFile, readdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { CACHE_KINDS, CacheService } from '../../src/cache/cache-service.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';

const DAY = 24 * 60 * 60 * 1000;
const NOW = new Date('2026-06-01T00:00:00Z');

async function writeAged(path: string, content: string, ageMs: number): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
  const time = new Date(NOW.getTime() - ageMs);
  await utimes(path, time, time);
}

describe('CacheService', () => {
  let tmp: TempDir;
  beforeEach(async () => {
    tmp = await tempDir('oci-build-cache-');
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  test('path() is <root>/<kind>; prepare() creates every directory and is idempotent', async () => {
    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: join(tmp.path, 'no-seed') });
    expect(cache.path('go-mod')).toBe(join(tmp.path, 'cache', 'go-mod'));
    await cache.prepare();
    await cache.prepare();
    for (const kind of CACHE_KINDS) expect(existsSync(cache.path(kind))).toBe(true);
    expect(cache.mavenOffline).toBe(false); // no seed: Maven Central is assumed reachable
  });

  test('the Maven cache is seeded from the seed with links followed, once, and re-seeded after a clean thinned it', async () => {
    const seed = join(tmp.path, 'seed');
    const real = join(tmp.path, 'elsewhere', 'plugin-1.0.jar');
    await mkdir(join(tmp.path, 'elsewhere'), { recursive: true });
    await writeFile(real, 'jar bytes');
    await mkdir(join(seed, 'org', 'example', 'plugin', '1.0'), { recursive: true });
    // Debian's /usr/share/maven-repo is mostly links into /usr/share/java.
    await symlink(real, join(seed, 'org', 'example', 'plugin', '1.0', 'plugin-1.0.jar'));
    await writeFile(join(seed, 'org', 'example', 'plugin', '1.0', 'plugin-1.0.pom'), '<project/>');

    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: seed });
    expect(cache.mavenOffline).toBe(true);
    await cache.prepare(['maven']);
    const jar = join(cache.path('maven'), 'org', 'example', 'plugin', '1.0', 'plugin-1.0.jar');
    expect(await readFile(jar, 'utf8')).toBe('jar bytes');
    expect(lstatSync(jar).isSymbolicLink()).toBe(false);

    // Old entries are cleaned; the next prepare copies back what the offline build needs.
    const old = new Date(Date.now() - 30 * DAY);
    for (const f of await readdir(join(cache.path('maven'), 'org', 'example', 'plugin', '1.0'))) {
      await utimes(join(cache.path('maven'), 'org', 'example', 'plugin', '1.0', f), old, old);
    }
    const cleaned = await cache.clean({ olderThanMs: 7 * DAY });
    expect(cleaned.removedFiles).toBeGreaterThanOrEqual(2);
    expect(existsSync(jar)).toBe(false);
    await cache.prepare(['maven']);
    expect(await readFile(jar, 'utf8')).toBe('jar bytes');
  });

  test('toolEnv wires every cache and makes Maven offline through MAVEN_OPTS when offline', async () => {
    const seed = join(tmp.path, 'seed');
    await mkdir(seed);
    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: seed });
    await cache.prepare();
    const env = cache.toolEnv();
    expect(env).toMatchObject({
      GOMODCACHE: cache.path('go-mod'),
      GOCACHE: cache.path('go-build'),
      NUGET_PACKAGES: cache.path('nuget'),
      npm_config_cache: cache.path('npm'),
      NX_CACHE_DIRECTORY: cache.path('nx'),
      DOTNET_CLI_TELEMETRY_OPTOUT: '1',
      DOTNET_NOLOGO: '1',
      DOTNET_SKIP_FIRST_TIME_EXPERIENCE: '1',
    });
    expect(env.MAVEN_OPTS).toContain(`-Dmaven.repo.local=${cache.path('maven')}`);
    const home = /-Duser\.home=(\S+)/.exec(env.MAVEN_OPTS ?? '')?.[1];
    expect(home).toBeDefined();
    const settings = await readFile(join(home!, '.m2', 'settings.xml'), 'utf8');
    expect(settings).toContain('<offline>true</offline>');
    expect(settings).toContain(`<localRepository>${cache.path('maven')}</localRepository>`);

    const online = new CacheService(join(tmp.path, 'cache2'), { mavenOffline: false, mavenSeed: seed });
    expect(online.toolEnv().MAVEN_OPTS).not.toContain('user.home');
  });

  test('size() counts bytes and files per kind', async () => {
    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: join(tmp.path, 'no-seed') });
    await cache.prepare();
    await writeAged(join(cache.path('go-build'), 'ab', 'x-d'), '12345', 0);
    await writeAged(join(cache.path('go-build'), 'cd', 'y-d'), '123', 0);
    await writeAged(join(cache.path('npm'), '_cacache', 'index'), '1234567890', 0);
    const usage = await cache.size();
    expect(usage.map((u) => u.kind)).toEqual([...CACHE_KINDS]);
    expect(usage.find((u) => u.kind === 'go-build')).toEqual({ kind: 'go-build', bytes: 8, files: 2 });
    expect(usage.find((u) => u.kind === 'npm')).toEqual({ kind: 'npm', bytes: 10, files: 1 });
    expect(usage.find((u) => u.kind === 'nuget')).toEqual({ kind: 'nuget', bytes: 0, files: 0 });
  });

  test('clean() removes only old files and the directories they leave empty, nothing outside the root, no link followed', async () => {
    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: join(tmp.path, 'no-seed') });
    await cache.prepare();
    const outside = join(tmp.path, 'outside');
    await writeAged(join(outside, 'precious.txt'), 'keep me', 90 * DAY);
    await writeAged(join(outside, 'dir', 'also-precious.txt'), 'keep me too', 90 * DAY);

    await writeAged(join(cache.path('go-mod'), 'old', 'deep', 'a.zip'), 'aaaa', 30 * DAY);
    await writeAged(join(cache.path('go-mod'), 'mixed', 'old.txt'), 'bb', 30 * DAY);
    await writeAged(join(cache.path('go-mod'), 'mixed', 'new.txt'), 'new', 1 * DAY);
    await writeAged(join(cache.path('npm'), 'fresh'), 'fresh', 0);
    // Links to things outside the root: a link to a directory, a link to a file.
    await symlink(join(outside, 'dir'), join(cache.path('nuget'), 'link-to-dir'));
    await symlink(join(outside, 'precious.txt'), join(cache.path('nuget'), 'link-to-file'));
    const old = new Date(NOW.getTime() - 30 * DAY);
    await lutimes(join(cache.path('nuget'), 'link-to-file'), old, old);
    // A whole cache directory replaced by a link out of the root is not walked.
    await symlink(outside, join(cache.path('nx'), '..', 'nx-link'));

    const result = await cache.clean({ olderThanMs: 7 * DAY, now: NOW });

    expect(existsSync(join(cache.path('go-mod'), 'old'))).toBe(false); // emptied, removed
    expect(existsSync(join(cache.path('go-mod'), 'mixed', 'old.txt'))).toBe(false);
    expect(await readFile(join(cache.path('go-mod'), 'mixed', 'new.txt'), 'utf8')).toBe('new');
    expect(existsSync(join(cache.path('npm'), 'fresh'))).toBe(true);
    for (const kind of CACHE_KINDS) expect(existsSync(cache.path(kind))).toBe(true); // the roots stay
    // Outside the root: untouched, whether reached through a link or not.
    expect(await readFile(join(outside, 'precious.txt'), 'utf8')).toBe('keep me');
    expect(await readFile(join(outside, 'dir', 'also-precious.txt'), 'utf8')).toBe('keep me too');
    // The old link was removed as a link (its target stays); the fresh link stays.
    expect(existsSync(join(cache.path('nuget'), 'link-to-file'))).toBe(false);
    expect(lstatSync(join(cache.path('nuget'), 'link-to-dir')).isSymbolicLink()).toBe(true);
    const linkSize = join(outside, 'precious.txt').length;
    expect(result).toEqual({ removedFiles: 3, removedBytes: 4 + 2 + linkSize });
  });

  test('clean() with a cache directory that is itself a link out of the root does not touch the target', async () => {
    const root = join(tmp.path, 'cache');
    const outside = join(tmp.path, 'outside-go');
    await writeAged(join(outside, 'old.bin'), 'x', 90 * DAY);
    await mkdir(root, { recursive: true });
    await symlink(outside, join(root, 'go-build'));
    const cache = new CacheService(root, { mavenSeed: join(tmp.path, 'no-seed') });
    const result = await cache.clean({ olderThanMs: 1 * DAY, now: NOW });
    expect(result.removedFiles).toBe(0);
    expect(existsSync(join(outside, 'old.bin'))).toBe(true);
  });

  test('clean() keeps a file read recently although written long ago (atime)', async () => {
    const cache = new CacheService(join(tmp.path, 'cache'), { mavenSeed: join(tmp.path, 'no-seed') });
    await cache.prepare();
    const jar = join(cache.path('maven'), 'plugin.jar');
    await writeFile(jar, 'jar');
    await utimes(jar, new Date(NOW.getTime() - 1 * DAY), new Date(NOW.getTime() - 90 * DAY));
    const result = await cache.clean({ olderThanMs: 7 * DAY, now: NOW });
    expect(result.removedFiles).toBe(0);
    expect(existsSync(jar)).toBe(true);
  });
});
