// A Debian 12 base image for tests that build on `debian:bookworm-slim`, where no public registry
// is reachable: mmdebstrap makes the root file system from the Debian archive this machine's apt
// is configured with (the minbase variant, like the slim images), and the tarball is kept between
// runs under ~/.cache/oci-build-test/, one per week, sources file and package list (making it
// takes from half a minute to a few). importBaseImage() turns it into an image in a test registry.
//
// `include` preinstalls packages: an image build on this base that apt-get installs them again
// then finds them there (apt still resolves every name) instead of unpacking a few hundred
// packages into vfs storage in every test run.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const TEST_CACHE_DIR = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'oci-build-test');

const SOURCES_FILES = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
const PATH_IN_IMAGE = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function aptSources(): string {
  const found = SOURCES_FILES.find((file) => existsSync(file) && /\bbookworm\b/.test(readFileSync(file, 'utf8')));
  if (!found) throw new Error(`no Debian bookworm archive configured for apt (looked in ${SOURCES_FILES.join(', ')})`);
  return found;
}

/** `2026-W49`: the tarball is made again once a week, for the archive's updates. */
function isoWeek(date = new Date()): string {
  const day = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  day.setUTCDate(day.getUTCDate() + 4 - (day.getUTCDay() || 7));
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  return `${day.getUTCFullYear()}-W${String(Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7)).padStart(2, '0')}`;
}

/** The path of a bookworm minbase root file system tarball, made now unless this week's is cached. */
export function debianBaseTarball(options: { include?: readonly string[] } = {}): string {
  const sources = aptSources();
  const include = [...(options.include ?? [])].sort();
  const key = createHash('sha256').update(readFileSync(sources)).update(include.join(',')).digest('hex').slice(0, 12);
  const name = `debian-bookworm-minbase-${isoWeek()}-${key}.tar`;
  const tarball = join(TEST_CACHE_DIR, name);
  if (existsSync(tarball)) return tarball;
  mkdirSync(TEST_CACHE_DIR, { recursive: true });
  const partial = `${tarball}.${process.pid}.partial`;
  try {
    const packages = include.length > 0 ? [`--include=${include.join(',')}`] : [];
    execFileSync('mmdebstrap', ['--quiet', '--variant=minbase', ...packages, '--format=tar', '--skip=output/dev', 'bookworm', partial, sources], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 900_000,
    });
    renameSync(partial, tarball);
  } finally {
    rmSync(partial, { force: true });
  }
  // Older weeks' tarballs are of no more use.
  for (const old of readdirSync(TEST_CACHE_DIR)) {
    if (old.startsWith('debian-bookworm-minbase-') && !old.includes(`-${isoWeek()}-`) && !old.endsWith('.partial')) rmSync(join(TEST_CACHE_DIR, old), { force: true });
  }
  return tarball;
}

/**
 * Imports the tarball as `<registryHost>/debian:bookworm-slim` (plain HTTP) and returns that
 * reference. `storage` is buildah's global storage flags (--root, --runroot, --storage-driver).
 */
export function importBaseImage(tarball: string, registryHost: string, storage: string[]): string {
  const reference = `${registryHost}/debian:bookworm-slim`;
  const buildah = (args: string[]) => execFileSync('buildah', [...storage, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const container = buildah(['from', 'scratch']);
  try {
    buildah(['add', container, tarball, '/']);
    buildah(['config', '--env', `PATH=${PATH_IN_IMAGE}`, '--cmd', 'bash', container]);
    buildah(['commit', '--quiet', container, reference]);
  } finally {
    buildah(['rm', container]);
  }
  buildah(['push', '--quiet', '--tls-verify=false', reference]);
  return reference;
}

/** The packages a Containerfile's `apt-get install` lines name (options and $(…) left out). */
export function aptPackagesOf(containerfile: string): string[] {
  const packages = new Set<string>();
  const joined = containerfile.replace(/\\\n/g, ' ');
  for (const match of joined.matchAll(/apt-get install ([^;&|]*)/g)) {
    const words = (match[1] ?? '').replace(/\$\([^)]*\)/g, ' ').split(/\s+/);
    for (const word of words) if (/^[a-z0-9][a-z0-9+.-]+$/.test(word)) packages.add(word);
  }
  return [...packages].sort();
}
