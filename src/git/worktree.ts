// Writes a commit's files into a build's own directory straight from the object database: trees
// through isomorphic-git, blob contents through PackReader (native zlib) with isomorphic-git as
// the fallback. The shared mirror has no index and no worktree of its own, so any number of
// builds can materialise different commits at once without stepping on each other.

import * as fs from 'node:fs';
import { join } from 'node:path';
import git from './isomorphic-git.js';
import { InputError } from '../core/errors.js';
import { PackReader } from './pack-reader.js';
import { parseTree, type TreeEntry } from './tree-object.js';

export interface ObjectSource {
  gitdir: string;
  /** isomorphic-git cache object: pack indexes stay loaded across calls. */
  cache: object;
}

interface FileEntry {
  path: string;
  oid: string;
  mode: string;
}

/**
 * node:fs for isomorphic-git's object reads (commits, trees, blobs PackReader did not find),
 * synchronous, and told up front which loose-object directories exist. Reading one object is a
 * probe for a loose object, a listing of the pack directory and a pack read; asynchronous, each
 * is a thread-pool round trip, and the failed probe an exception built by libuv — the worktree of
 * a 1,100-file commit spent seconds on that. Only reads: a checkout never writes to the mirror.
 */
function objectReadFs(gitdir: string) {
  const objects = join(gitdir, 'objects');
  let looseDirs: Set<string>;
  try {
    looseDirs = new Set(fs.readdirSync(objects).filter((name) => /^[0-9a-f]{2}$/.test(name)));
  } catch {
    looseDirs = new Set();
  }
  const loose = /[\\/]objects[\\/]([0-9a-f]{2})[\\/][0-9a-f]{38}$/;
  const missing = new Set<string>();
  // One error object for every miss: isomorphic-git only looks at its code, and building a stack
  // trace per probe was a measurable share of a checkout.
  const enoent = Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' });
  return {
    promises: {
      ...fs.promises,
      readFile: async (path: string, options?: { encoding?: BufferEncoding } | BufferEncoding) => {
        // isomorphic-git calls readFile() without a path on every API call, to see whether it
        // returns a promise; node:fs answers with a freshly built (and costly) error each time.
        if (path === undefined) throw enoent;
        const dir = loose.exec(path)?.[1];
        if ((dir !== undefined && !looseDirs.has(dir)) || missing.has(path)) throw enoent;
        try {
          return fs.readFileSync(path, options as BufferEncoding);
        } catch (err) {
          // objects/info/alternates and friends are asked for on every object read.
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') missing.add(path);
          throw err;
        }
      },
      readdir: async (path: string) => fs.readdirSync(path),
      stat: async (path: string) => fs.statSync(path),
      lstat: async (path: string) => fs.lstatSync(path),
      readlink: async (path: string) => fs.readlinkSync(path),
    },
  };
}

/** Files being written at once while the next blobs are read. */
const MAX_WRITES_IN_FLIGHT = 32;

/**
 * Names a hostile tree could use to escape the directory or plant Git metadata: git's own rules
 * (is_valid_win32_path and friends, as isomorphic-git's readTree applies them too): a separator,
 * `.`/`..` or any name of only dots and spaces, `.git` however spelled — in any case, with trailing
 * dots or spaces, with the HFS+ ignorable code points, as an NTFS stream (`.git::$INDEX_ALLOCATION`)
 * or as its 8.3 short name (`git~1`).
 */
export function unsafeEntryName(name: string): boolean {
  if (name === '' || name.includes('/') || name.includes('\\') || name.includes('\0')) return true;
  const ntfs = name.replace(/[\u200C-\u200F\u202A-\u202E\u206A-\u206F\uFEFF]/g, '').split(':')[0]!;
  const normalized = ntfs.toLowerCase().replace(/[. ]+$/, '');
  return (normalized === '' && ntfs !== '') || normalized === '.git' || /^\.?git~[1-9]$/.test(normalized) || name === '.' || name === '..';
}

/** What a checkout wrote, so a later checkout can reuse the directory and rewrite only what differs. */
export interface WorktreeManifest {
  commit: string;
  /** Path → the blob written there and the file's identity right after writing. */
  files: Record<string, { oid: string; mode: string; ino: string; size: string; ctimeNs: string }>;
}

export interface CheckoutResult {
  manifest: WorktreeManifest;
  /** Files written (all of them for a fresh directory). */
  written: number;
  /** Files and directories removed from a reused directory (build outputs, stale files). */
  removed: number;
  files: number;
}

/**
 * Makes `targetDir` hold exactly the files of `commit`: regular files with their executable bit,
 * symbolic links as links, submodules as empty directories. `targetDir` is empty, or a worktree
 * of an earlier build described by `previous`: then files whose blob and identity (inode, size,
 * ctime) are unchanged since that checkout are kept, and everything else — build outputs, files
 * the build changed, files of the old commit — is removed or rewritten, like `git checkout` in
 * place. Nothing is ever written through an existing path: a stale entry is unlinked first.
 */
export async function checkoutTree(source: ObjectSource, commit: string, targetDir: string, options: { previous?: WorktreeManifest; signal?: AbortSignal } = {}): Promise<CheckoutResult> {
  const readFs = objectReadFs(source.gitdir);
  const { commit: commitObject } = await git.readCommit({ fs: readFs, gitdir: source.gitdir, oid: commit, cache: source.cache });
  const files = new Map<string, FileEntry>();
  const directories = new Set<string>();
  const packs = PackReader.open(source.gitdir);
  try {
    // Trees from the packs too (native zlib; one per directory: a 120-package Go module has 120),
    // isomorphic-git for what they do not hold.
    const readTree = async (oid: string): Promise<TreeEntry[]> => {
      const packed = packs.read(oid);
      if (packed?.type === 'tree') return parseTree(packed.data);
      return (await git.readTree({ fs: readFs, gitdir: source.gitdir, oid, cache: source.cache })).tree;
    };

    const collect = async (treeOid: string, prefix: string): Promise<void> => {
      const tree = await readTree(treeOid);
      const subtrees: Array<Promise<void>> = [];
      for (const entry of tree) {
        if (unsafeEntryName(entry.path)) {
          throw new InputError(`Commit ${commit} has a tree entry named ${JSON.stringify(entry.path)} under "${prefix || '.'}", which cannot be checked out safely`);
        }
        const path = prefix ? `${prefix}/${entry.path}` : entry.path;
        if (entry.type === 'tree') {
          directories.add(path);
          subtrees.push(collect(entry.oid, path));
        } else if (entry.type === 'commit') {
          // A submodule: its content lives in another repository.
          directories.add(path);
        } else if (entry.type === 'blob') {
          files.set(path, { path, oid: entry.oid, mode: entry.mode });
        }
      }
      await Promise.all(subtrees);
    };
    await collect(commitObject.tree, '');

    const manifest: WorktreeManifest = { commit, files: {} };
    const previous = options.previous?.files ?? {};
    let removed = 0;
    const remove = (full: string) => {
      fs.rmSync(full, { recursive: true, force: true });
      removed += 1;
    };

    // Pass 1 (reused directory only): keep what is still right, remove everything else.
    const sweep = (rel: string) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(join(targetDir, rel), { withFileTypes: true });
      } catch {
        // Unreadable (a build chmod-ed it): start that directory over.
        if (rel !== '') remove(join(targetDir, rel));
        return;
      }
      for (const entry of entries) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        const full = join(targetDir, path);
        if (entry.isDirectory()) {
          if (directories.has(path)) sweep(path);
          else remove(full);
          continue;
        }
        const wanted = files.get(path);
        const before = previous[path];
        if (wanted && before && before.oid === wanted.oid && before.mode === wanted.mode && (entry.isFile() || entry.isSymbolicLink())) {
          const stat = fs.lstatSync(full, { bigint: true });
          if (String(stat.ino) === before.ino && String(stat.size) === before.size && String(stat.ctimeNs) === before.ctimeNs) {
            manifest.files[path] = before;
            continue;
          }
        }
        remove(full);
      }
    };
    if (options.previous) sweep('');

    // Pass 2: create missing directories (parents first), write missing files. Blobs are read
    // (CPU: inflating) on this thread while earlier files are being written by the thread pool, so
    // a checkout costs about the larger of the two rather than their sum.
    for (const dir of [...directories].sort((a, b) => a.length - b.length)) fs.mkdirSync(join(targetDir, dir), { recursive: true });
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const writtenPaths: FileEntry[] = [];
    try {
      for (const file of files.values()) {
        if (manifest.files[file.path]) continue;
        if (failure) break;
        if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new Error('aborted');
        const blob = packs.read(file.oid)?.data ?? (await git.readBlob({ fs: readFs, gitdir: source.gitdir, oid: file.oid, cache: source.cache })).blob;
        const target = join(targetDir, file.path);
        writtenPaths.push(file);
        if (file.mode === '120000') {
          fs.symlinkSync(Buffer.from(blob).toString('utf8'), target);
          continue;
        }
        // 'wx': never write through something that is already there (a symlink planted earlier).
        const write: Promise<void> = fs.promises
          .writeFile(target, blob, { flag: 'wx', mode: file.mode === '100755' ? 0o755 : 0o644 })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => inFlight.delete(write));
        inFlight.add(write);
        if (inFlight.size >= MAX_WRITES_IN_FLIGHT) await Promise.race(inFlight);
      }
    } finally {
      // Also on failure: the caller removes the directory, which must not race our writes.
      await Promise.allSettled([...inFlight]);
    }
    if (failure) throw failure;
    for (const file of writtenPaths) {
      const stat = fs.lstatSync(join(targetDir, file.path), { bigint: true });
      manifest.files[file.path] = { oid: file.oid, mode: file.mode, ino: String(stat.ino), size: String(stat.size), ctimeNs: String(stat.ctimeNs) };
    }
    const written = writtenPaths.length;
    return { manifest, written, removed, files: files.size };
  } finally {
    packs.close();
  }
}

