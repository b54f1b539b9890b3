// Remote URLs: split into what may be shown (a URL without credentials), what may be sent (the
// credentials, only through onAuth) and where the mirror lives. Every name that becomes a path is
// checked on the raw text, before the WHATWG parser silently resolves `..` and `%2e%2e`.

import { createHash } from 'node:crypto';
import { join, relative } from 'node:path';
import { InputError } from '../core/errors.js';

export interface RemoteCredentials {
  username: string;
  password: string;
}

export interface RemoteLocation {
  /** The URL without credentials, query or fragment: safe to log, store and show. */
  cloneUrl: string;
  /** `host` or `host:port`, lowercased. */
  host: string;
  /** Path segments before the name (`owner`, or `group/subgroup`); may be empty. */
  owner: string[];
  /** The repository's name, without `.git`. */
  name: string;
  /** `owner/name` (or `name` alone when the URL has a single path segment). */
  fullName: string;
  /** Credentials given in the URL, if any. */
  credentials?: RemoteCredentials;
}

/** A path segment we are willing to turn into a directory name. */
const SAFE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._~-]*$|^\.[A-Za-z0-9_][A-Za-z0-9._~-]*$/;
const SAFE_HOST = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function hostile(url: string, why: string): InputError {
  return new InputError(`Refusing the Git URL ${redactUrl(url)}: ${why}`, {
    hint: 'Give an http(s) URL of the form https://host/owner/name(.git) with plain names (letters, digits, ".", "_", "-").',
  });
}

/** Removes `user:password@` from anything that looks like a URL (for messages built from foreign text). */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1');
}

/**
 * Parses and checks an http(s) Git URL. Throws InputError for anything that could name a path
 * outside the mirror directory or that isomorphic-git cannot speak to.
 */
export function parseRemoteUrl(url: string): RemoteLocation {
  if (CONTROL.test(url)) throw hostile(url, 'it contains control characters');
  const match = /^(https?):\/\/([^/?#]*)([^?#]*)(?:[?#].*)?$/i.exec(url.trim());
  if (!match) {
    throw new InputError(`Not an http(s) Git URL: ${redactUrl(url)}`, {
      hint: 'oci-build fetches over smart HTTP only: use the https:// clone URL of the repository (SSH and git:// are not supported).',
    });
  }
  const scheme = match[1]!.toLowerCase();
  const authority = match[2]!;
  const rawPath = match[3]!;

  const at = authority.lastIndexOf('@');
  const userInfo = at >= 0 ? authority.slice(0, at) : undefined;
  const host = (at >= 0 ? authority.slice(at + 1) : authority).toLowerCase();
  if (!SAFE_HOST.test(host)) throw hostile(url, `the host "${host}" is not a plain host name`);
  const port = /:(\d+)$/.exec(host)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw hostile(url, 'the port is out of range');

  let credentials: RemoteCredentials | undefined;
  if (userInfo !== undefined && userInfo.length > 0) {
    const colon = userInfo.indexOf(':');
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw hostile(url, 'the credentials are not valid percent-encoding');
      }
    };
    credentials = {
      username: decode(colon >= 0 ? userInfo.slice(0, colon) : userInfo),
      password: decode(colon >= 0 ? userInfo.slice(colon + 1) : ''),
    };
  }

  if (rawPath.includes('\\')) throw hostile(url, 'the path contains a backslash');
  const trimmed = rawPath.replace(/^\//, '').replace(/\/$/, '');
  if (trimmed.length === 0) throw hostile(url, 'it names no repository');
  const segments = trimmed.split('/');
  for (const raw of segments) {
    if (raw.length === 0) throw hostile(url, 'the path has an empty segment');
    // Percent-encoding is refused outright: `%2e%2e`, `%2f` and friends only exist to smuggle.
    if (raw.includes('%')) throw hostile(url, `the path segment "${raw}" is percent-encoded`);
    if (raw === '.' || raw === '..') throw hostile(url, 'the path contains "." or ".." segments');
    if (!SAFE_SEGMENT.test(raw)) throw hostile(url, `the path segment "${raw}" has characters other than letters, digits, ".", "_", "~" and "-"`);
  }
  const last = segments[segments.length - 1]!;
  const name = last.replace(/\.git$/i, '');
  if (name.length === 0 || name === '.' || name === '..' || !SAFE_SEGMENT.test(name)) throw hostile(url, `"${last}" is not a repository name`);
  const owner = segments.slice(0, -1);
  const cloneUrl = `${scheme}://${host}/${segments.join('/')}`;
  return {
    cloneUrl,
    host,
    owner,
    name,
    fullName: [...owner, name].join('/'),
    ...(credentials ? { credentials } : {}),
  };
}

/**
 * In a mirror's git directory: what the last completed fetch saw (written atomically by every
 * fetch, read by every build). Here rather than in mirror.ts so that `cache clean` can find it
 * without loading isomorphic-git.
 */
export const MIRROR_STATE_FILE = 'oci-build-mirror.json';

/** `<workDir>/repos/<host>/<owner…>/<name>`: the bare mirror of a remote. */
export function mirrorPath(workDir: string, location: RemoteLocation): string {
  // The host's port separator becomes `_` so the directory name is portable.
  return join(workDir, 'repos', location.host.replace(':', '_'), ...location.owner, location.name);
}

/**
 * `<workDir>/locks/<hash>.lock`: the lock of a mirror. Not next to the mirror, where a
 * repository named `x.lock` would have its mirror at the lock path of repository `x`.
 */
export function mirrorLockPath(workDir: string, location: RemoteLocation): string {
  return mirrorLockPathOf(workDir, mirrorPath(workDir, location));
}

/** The lock of the mirror at `gitdir` (a path `mirrorPath` gave): for code that finds mirrors on disk. */
export function mirrorLockPathOf(workDir: string, gitdir: string): string {
  const key = createHash('sha256').update(relative(workDir, gitdir)).digest('hex').slice(0, 32);
  return join(workDir, 'locks', `${key}.lock`);
}

/** Makes a build id usable as one directory name; refuses what cannot be. */
export function worktreeName(buildId: string): string {
  const cleaned = buildId.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[.-]+/, '').slice(0, 120);
  if (cleaned.length === 0) throw new InputError(`The build id ${JSON.stringify(buildId)} cannot name a worktree directory`);
  return cleaned;
}

/**
 * A branch, tag or ref name as `git check-ref-format` allows it: no control characters, spaces,
 * `~^:?*[\`, `..`, `//`, `@{`, nor `@` alone; no leading `-` or `/`, no trailing `/` or `.`; no
 * component starting with `.` or ending with `.lock`. Such a name never walks out of refs/.
 */
export function isGitRefName(name: string): boolean {
  return !(
    name.length === 0 ||
    name.length > 255 ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u0020\u007f~^:?*[\\]/.test(name) ||
    name.includes('..') ||
    name.includes('//') ||
    name.includes('@{') ||
    name === '@' ||
    name.startsWith('/') ||
    name.startsWith('-') ||
    name.endsWith('/') ||
    name.endsWith('.') ||
    name.split('/').some((segment) => segment.startsWith('.') || segment.endsWith('.lock'))
  );
}

/** Throws InputError unless `ref` is a valid Git ref name (see isGitRefName). */
export function checkRefName(ref: string): void {
  if (!isGitRefName(ref)) {
    throw new InputError(`${JSON.stringify(ref)} is not a valid Git ref`, {
      hint: 'Give a branch (main, refs/heads/main), a tag (v1.2.0, refs/tags/v1.2.0) or a commit SHA (full or at least 4 hex digits).',
    });
  }
}
