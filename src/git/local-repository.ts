// A repository on this machine read directly: its root, HEAD, a config value, objects (loose ones
// with native zlib, packed ones through pack-reader.ts), its trees' files and its ignore rules; a
// `.git` file (a linked worktree's, a submodule checkout's) is followed to the git directory. This is what a local
// build reads before its first command (local-source.ts); isomorphic-git stays the fallback for
// anything these do not read, which they say by returning undefined.
//
// Why our own: loading isomorphic-git (~4.5 ms: 230 KB of code) and its calls for the root, HEAD,
// the branch, the origin URL and HEAD's commit (~4.5 ms: a file-system wrapper and a
// normalisation of its arguments per call), and its gitignore check (~1.5 ms a path: the rules
// read and compiled again at every call) were nearly all of a local build's source phase
// (bench/local-overhead). The answers are isomorphic-git's (test/integration/local-repository.test.ts
// compares them, and with git, on random repositories).

import * as fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { inflateSync } from 'node:zlib';
import ignoreModule, { type Ignore } from 'ignore';
import { gitObjectId } from './object-hash.js';
import { PackReader } from './pack-reader.js';
import { parseTree, treePath } from './tree-object.js';

// A CommonJS module typed as an ES one: its export is the factory, which is also its `default`.
const ignore = ignoreModule.default;

const OID = /^[0-9a-f]{40}$/;
/** Symbolic refs followed before giving up (git's own limit is 5). */
const MAX_SYMREF_DEPTH = 5;

export interface GitObject {
  type: string;
  data: Buffer;
}

export interface CommitInfo {
  tree: string;
  /** The committer's timestamp, in seconds. */
  committerTime: number;
}

/**
 * The directory holding `.git`, from `dir` upwards, as isomorphic-git's findRoot finds it (a
 * `.git` of any kind); undefined when there is none.
 */
export function findRepositoryRoot(dir: string): string | undefined {
  for (let current = dir; ; current = dirname(current)) {
    if (fs.existsSync(join(current, '.git'))) return current;
    if (dirname(current) === current) return undefined;
  }
}

export class LocalRepository {
  private packs: PackReader | undefined;
  private readonly files = new Map<string, string | null>();

  /**
   * @param gitdir the worktree's git directory: HEAD, the index and per-worktree refs
   * @param commondir where refs, objects and config are: the git directory itself, or the main
   *   repository's for a linked worktree (`git worktree add`)
   */
  private constructor(
    readonly root: string,
    readonly gitdir: string,
    readonly commondir: string,
  ) {}

  /**
   * The repository whose worktree is `root`: its `.git` is the git directory, or a file naming it
   * (`gitdir: …`, as in a linked worktree or a submodule's checkout). Undefined when there is none.
   */
  static at(root: string): LocalRepository | undefined {
    const dotGit = join(root, '.git');
    let gitdir = dotGit;
    try {
      if (!fs.statSync(dotGit).isDirectory()) {
        const named = /^gitdir: *(.+?)\s*$/m.exec(fs.readFileSync(dotGit, 'utf8'))?.[1];
        if (!named) return undefined;
        gitdir = resolve(root, named);
        if (!fs.statSync(gitdir).isDirectory()) return undefined;
      }
    } catch {
      return undefined;
    }
    let commondir = gitdir;
    try {
      commondir = resolve(gitdir, fs.readFileSync(join(gitdir, 'commondir'), 'utf8').trim());
    } catch {
      // not a linked worktree: everything is in the git directory
    }
    return new LocalRepository(root, gitdir, commondir);
  }

  /** The index file of this worktree. */
  get indexFile(): string {
    return join(this.gitdir, 'index');
  }

  /** Whether isomorphic-git can read this repository at `root` (its `.git` is the whole git directory). */
  get plain(): boolean {
    return this.gitdir === join(this.root, '.git') && this.commondir === this.gitdir;
  }

  /** Closes the pack files read (if any). */
  close(): void {
    this.packs?.close();
    this.packs = undefined;
  }

  /** A file of the repository as text, or null when absent; read once. */
  private text(path: string): string | null {
    let content = this.files.get(path);
    if (content === undefined) {
      try {
        content = fs.readFileSync(path, 'utf8');
      } catch {
        content = null;
      }
      this.files.set(path, content);
    }
    return content;
  }

  /**
   * The commit HEAD names, and the branch when HEAD is one (`refs/heads/<name>`); undefined when
   * HEAD or a ref on its way is not one this reads (an unborn branch, a reftable repository).
   */
  head(): { commit: string; branch?: string } | undefined {
    let ref = 'HEAD';
    let branch: string | undefined;
    for (let depth = 0; depth <= MAX_SYMREF_DEPTH; depth++) {
      const value = this.ref(ref);
      if (value === undefined) return undefined;
      if (OID.test(value)) return { commit: value, ...(branch !== undefined ? { branch } : {}) };
      const target = /^ref: *(refs\/\S+)$/.exec(value)?.[1];
      if (!target) return undefined;
      // The branch is the ref HEAD points to (isomorphic-git's currentBranch); HEAD on anything
      // but a branch is left to isomorphic-git.
      if (depth === 0) {
        if (!target.startsWith('refs/heads/')) return undefined;
        branch = target.slice('refs/heads/'.length);
      }
      ref = target;
    }
    return undefined;
  }

  /** A ref's value (an object id or `ref: …`), loose file first, then packed-refs. */
  private ref(name: string): string | undefined {
    if (name.split('/').some((segment) => segment === '..' || segment === '.' || segment === '')) return undefined;
    // HEAD and refs/worktree, refs/bisect, refs/rewritten are the worktree's own; the rest are shared.
    const own = name === 'HEAD' || /^refs\/(worktree|bisect|rewritten)\//.test(name);
    const loose = this.text(join(own ? this.gitdir : this.commondir, name));
    if (loose !== null) return loose.trim();
    if (name === 'HEAD') return undefined;
    const packed = this.text(join(this.commondir, 'packed-refs'));
    if (packed === null) return undefined;
    for (const line of packed.split('\n')) {
      if (line.startsWith('#') || line.startsWith('^')) continue;
      const space = line.indexOf(' ');
      if (space === 40 && line.slice(space + 1).trim() === name) return line.slice(0, 40);
    }
    return undefined;
  }

  /**
   * `section.subsection.key` from .git/config (the last value, as `git config --get` gives it),
   * undefined when absent. Includes are not followed (isomorphic-git does not either).
   */
  config(path: string): string | undefined {
    const text = this.text(join(this.commondir, 'config'));
    if (text === null) return undefined;
    const first = path.indexOf('.');
    const last = path.lastIndexOf('.');
    if (first < 0) return undefined;
    const wanted = { section: path.slice(0, first).toLowerCase(), subsection: first === last ? undefined : path.slice(first + 1, last), key: path.slice(last + 1).toLowerCase() };
    return lastConfigValue(text, wanted);
  }

  /** An object, loose or packed (its id checked for a loose one); undefined when neither has it. */
  readObject(oid: string): GitObject | undefined {
    if (!OID.test(oid)) return undefined;
    let deflated: Buffer | undefined;
    try {
      deflated = fs.readFileSync(join(this.commondir, 'objects', oid.slice(0, 2), oid.slice(2)));
    } catch {
      deflated = undefined;
    }
    if (deflated) {
      let raw: Buffer;
      try {
        raw = inflateSync(deflated);
      } catch {
        return undefined;
      }
      const nul = raw.indexOf(0);
      const header = /^(commit|tree|blob|tag) (\d+)$/.exec(raw.toString('latin1', 0, nul));
      if (nul < 0 || !header || Number(header[2]) !== raw.length - nul - 1) return undefined;
      const data = raw.subarray(nul + 1);
      if (gitObjectId(header[1]!, data) !== oid) return undefined;
      return { type: header[1]!, data };
    }
    this.packs ??= PackReader.open(this.commondir);
    return this.packs.read(oid);
  }

  /** A commit's tree and committer time; undefined when it is not a commit this reads. */
  readCommit(oid: string): CommitInfo | undefined {
    const object = this.readObject(oid);
    if (object?.type !== 'commit') return undefined;
    return parseCommit(object.data);
  }

  /**
   * The object id of `path` in `tree` (`git rev-parse <commit>:<path>`): the id, null when the path
   * is not in the tree, undefined when an object on the way is not one this reads.
   */
  objectIdIn(tree: string, path: string): string | null | undefined {
    const normal = treePath(path);
    if (normal === undefined) return null;
    let oid = tree;
    for (const name of normal === '' ? [] : normal.split('/')) {
      const object = this.readObject(oid);
      if (object === undefined) return undefined;
      if (object.type !== 'tree') return null;
      const entry = parseTree(object.data).find((e) => e.path === name);
      if (!entry) return null;
      oid = entry.oid;
    }
    return oid;
  }

  /**
   * The files of `tree` under `prefix` (paths from the tree's root): blobs and links with their
   * modes, submodules left out; undefined when a tree on the way is not one this reads.
   */
  filesOf(tree: string, prefix = ''): Map<string, { oid: string; mode: string }> | undefined {
    const files = new Map<string, { oid: string; mode: string }>();
    const start = prefix === '' ? tree : this.objectIdIn(tree, prefix);
    if (start === null) return files;
    if (start === undefined) return undefined;
    // false: an object on the way that is not a tree this reads (the prefix naming a file included).
    const walk = (oid: string, at: string): boolean => {
      const object = this.readObject(oid);
      if (object?.type !== 'tree') return false;
      for (const entry of parseTree(object.data)) {
        const path = at === '' ? entry.path : `${at}/${entry.path}`;
        if (entry.type === 'tree') {
          if (!walk(entry.oid, path)) return false;
        } else if (entry.type === 'blob') files.set(path, { oid: entry.oid, mode: entry.mode });
      }
      return true;
    };
    return walk(start, prefix) ? files : undefined;
  }

  /**
   * Whether an untracked path (relative to the root, `/`-separated) is ignored, decided as
   * isomorphic-git's isIgnored decides it: .git/info/exclude and the root's .gitignore for the
   * whole path, each deeper directory's .gitignore for the rest of it, a parent directory excluded
   * by a file being final, later files unignoring what earlier ones ignored. Each file's rules
   * are compiled once.
   */
  isIgnored(filepath: string): boolean {
    if (basename(filepath) === '.git') return true;
    if (filepath === '.') return false;
    const pieces = filepath.split('/').filter(Boolean);
    let ignored = false;
    for (let i = 0; i < pieces.length; i++) {
      const folder = pieces.slice(0, i).join('/');
      const rest = i === 0 ? filepath : pieces.slice(i).join('/');
      const rules = this.rules(folder);
      const parent = posixDirname(rest);
      if (parent !== '.' && rules.ignores(parent)) return true;
      ignored = ignored ? !rules.test(rest).unignored : rules.test(rest).ignored;
    }
    return ignored;
  }

  private readonly compiled = new Map<string, Ignore>();

  /** The rules of `folder`'s .gitignore (with .git/info/exclude for the root's). */
  private rules(folder: string): Ignore {
    let rules = this.compiled.get(folder);
    if (!rules) {
      rules = ignore();
      if (folder === '') rules.add(this.text(join(this.commondir, 'info', 'exclude')) ?? '');
      const own = this.text(join(this.root, folder, '.gitignore'));
      if (own !== null) rules.add(own);
      this.compiled.set(folder, rules);
    }
    return rules;
  }
}

/** isomorphic-git's dirname (either separator), which its isIgnored uses. */
function posixDirname(path: string): string {
  const last = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  if (last === -1) return '.';
  if (last === 0) return '/';
  return path.slice(0, last);
}

/** A commit object's tree and committer timestamp; undefined when its headers lack them. */
export function parseCommit(data: Buffer): CommitInfo | undefined {
  const end = data.indexOf('\n\n');
  const headers = data.toString('utf8', 0, end < 0 ? data.length : end).split('\n');
  const tree = /^tree ([0-9a-f]{40})$/.exec(headers[0] ?? '')?.[1];
  const committer = headers.find((line) => line.startsWith('committer '));
  const time = committer ? /> (-?\d+) [+-]\d{4}$/.exec(committer)?.[1] : undefined;
  if (!tree || time === undefined) return undefined;
  return { tree, committerTime: Number(time) };
}

/**
 * The last value of section[.subsection].key in a git config file: `[section "sub"]` (the
 * subsection case-sensitive) or the old `[section.sub]`, keys case-insensitive, values with
 * quotes, escapes, comments and continued lines as git reads them.
 */
export function lastConfigValue(text: string, wanted: { section: string; subsection: string | undefined; key: string }): string | undefined {
  let inSection = false;
  let found: string | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trimStart();
    if (line.startsWith('[')) {
      const close = line.indexOf(']');
      if (close < 0) {
        inSection = false;
        continue;
      }
      const header = line.slice(1, close);
      const quoted = /^([^\s"]+)\s+"((?:[^"\\]|\\.)*)"$/.exec(header);
      if (quoted) inSection = quoted[1]!.toLowerCase() === wanted.section && quoted[2]!.replace(/\\(.)/g, '$1') === wanted.subsection;
      else {
        const dot = header.indexOf('.');
        const section = (dot < 0 ? header : header.slice(0, dot)).toLowerCase();
        const subsection = dot < 0 ? undefined : header.slice(dot + 1).toLowerCase();
        inSection = section === wanted.section && subsection === wanted.subsection;
      }
      line = line.slice(close + 1).trimStart();
      if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    }
    if (!inSection || line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const key = /^([A-Za-z][A-Za-z0-9-]*)\s*(=|$)/.exec(line);
    if (!key || key[1]!.toLowerCase() !== wanted.key) continue;
    if (key[2] !== '=') {
      // A key without `=` (a boolean "true" to git's --bool): `git config --get` prints it empty.
      found = '';
      continue;
    }
    let raw = line.slice(key[0].length);
    // A backslash at the end of the line continues the value on the next one.
    while (/(^|[^\\])(\\\\)*\\$/.test(raw) && i + 1 < lines.length) raw = raw.slice(0, -1) + lines[++i]!;
    found = configValue(raw);
  }
  return found;
}

/** A config value as git reads it: outer whitespace trimmed, comments cut, quotes removed, escapes applied. */
function configValue(raw: string): string {
  let out = '';
  let quoted = false;
  let pendingSpace = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (!quoted && (c === '#' || c === ';')) break;
    if (c === '"') {
      out += pendingSpace;
      pendingSpace = '';
      quoted = !quoted;
      continue;
    }
    if (c === '\\' && i + 1 < raw.length) {
      const next = raw[++i]!;
      out += pendingSpace + ({ n: '\n', t: '\t', b: '\b' }[next] ?? next);
      pendingSpace = '';
      continue;
    }
    if (!quoted && (c === ' ' || c === '\t')) {
      if (out !== '') pendingSpace += c;
      continue;
    }
    out += pendingSpace + c;
    pendingSpace = '';
  }
  return out;
}
