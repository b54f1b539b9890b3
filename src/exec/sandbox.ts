// Build commands (the language builds, npm, Nx) run a repository's code: a pushed package.json
// script, a Maven plugin, an Nx target. They run here with a clean environment (an allow-list,
// never the worker's tokens) and, with `build.sandbox: bubblewrap`, inside bubblewrap: the host
// read-only, writable only the tree being built, its caches and a private /tmp; the rest of the
// work directory, container storage, registry credentials, the config file and HOME hidden; a PID
// namespace of its own. Git and buildah never come through here.
//
// The sandbox stays in runCommand's process group (no --new-session), so cancelling a build
// still kills every process inside it: bwrap, its init and the build's own processes.

import { mkdtemp, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { CommandFailedError, ToolUnavailableError, describeError } from '../core/errors.js';
import type { LogSink, LogStream } from '../core/ports.js';
import { installHint, runCommand, type CommandRunner, type RunOptions, type RunResult } from './run-command.js';

export type SandboxMode = 'bubblewrap' | 'none';

export interface BuildRunOptions extends Omit<RunOptions, 'inheritEnv' | 'contained'> {
  /** The tree being built: writable, and the only part of the work directory visible. */
  tree: string;
  /** Directories the command may write besides the tree: its caches, a temp dir of the caller. */
  writable?: readonly string[];
  /** Directories or files shown read-only although they lie under a hidden path (a tool home). */
  readable?: readonly string[];
}

/** Runs a build command. runCommand itself satisfies it (no sandbox, the whole environment). */
export type BuildRunner = (file: string, args: readonly string[], options: BuildRunOptions) => Promise<RunResult>;

export interface BuildRunnerOptions {
  run?: CommandRunner;
  mode: SandboxMode;
  /**
   * Hidden from build commands: a directory gets an empty tmpfs over it, a file /dev/null.
   * Paths that do not exist are skipped; what the tree or `writable` need is bound back on top.
   */
  hide?: readonly string[];
  /** `build.env`: set last, over everything else. */
  env?: Readonly<Record<string, string>>;
  /** Where the allow-list is picked from (default process.env). */
  parentEnv?: NodeJS.ProcessEnv;
  /** The bubblewrap executable (default `bwrap` on PATH). */
  bwrap?: string;
}

/** HOME of a sandboxed command: its private /tmp, empty at the start of every command. */
export const SANDBOX_HOME = '/tmp';

/**
 * The variables a build command gets from the worker's environment: the tool search path, locale
 * and time zone, the proxy settings (and the CA bundles a TLS-intercepting proxy needs; paths to
 * public certificates). Nothing else: not OCI_BUILD_*, not NATS credentials, tokens or secrets.
 */
const PASSED_VARIABLES: ReadonlySet<string> = new Set([
  'PATH',
  'LANG',
  'TZ',
  'http_proxy',
  'https_proxy',
  'no_proxy',
  'all_proxy',
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'ALL_PROXY',
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
]);
const LOCALE_VARIABLE = /^LC_[A-Z_]+$/;

/** The names of `parent` a build command inherits (PASSED_VARIABLES and LC_*). */
export function passedVariable(name: string): boolean {
  return PASSED_VARIABLES.has(name) || LOCALE_VARIABLE.test(name);
}

/**
 * A build command's whole environment, in this order (later wins): the allow-list from `parent`,
 * CI=true and HOME, the caller's `env` (cache variables, the step's own; undefined removes), then
 * `build.env`.
 */
export function buildCommandEnv(
  parent: NodeJS.ProcessEnv,
  layers: { home: string; env?: Readonly<Record<string, string | undefined>>; buildEnv?: Readonly<Record<string, string>> },
): Record<string, string> {
  const env: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && passedVariable(name)) env[name] = value;
  }
  Object.assign(env, { CI: 'true', HOME: layers.home }, layers.env, layers.buildEnv);
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) result[name] = value;
  return result;
}

/** Where a sandboxed command's mounts go; every path absolute and resolved (realpath). */
export interface SandboxLayout {
  tree: string;
  cwd: string;
  writable: readonly string[];
  readable: readonly string[];
  hiddenDirs: readonly string[];
  hiddenFiles: readonly string[];
}

type Mount = { kind: 'tmpfs' | 'ro-bind' | 'bind' | 'null'; path: string };
/** At the same path a later kind goes on top of an earlier one. */
const MOUNT_ORDER: Record<Mount['kind'], number> = { tmpfs: 0, 'ro-bind': 1, bind: 2, null: 3 };

/** Flags that make the sandbox, the same for the probe and for every command. */
const NAMESPACE_FLAGS = ['--unshare-pid', '--unshare-ipc', '--die-with-parent', '--cap-drop', 'ALL'];
const BASE_MOUNTS = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp'];

/**
 * bwrap's arguments for `file args` in `layout`. A mount hides or shows everything below it, so
 * mounts go parents first (by depth): HOME and the work directory become empty tmpfs, then the tree
 * and the caches are bound back into them, then hidden files are covered wherever they are (a
 * config file inside the tree too).
 */
export function bubblewrapArgs(layout: SandboxLayout, file: string, args: readonly string[]): string[] {
  const mounts: Mount[] = [
    ...layout.hiddenDirs.map((path): Mount => ({ kind: 'tmpfs', path })),
    ...layout.readable.map((path): Mount => ({ kind: 'ro-bind', path })),
    ...[layout.tree, ...layout.writable].map((path): Mount => ({ kind: 'bind', path })),
    ...layout.hiddenFiles.map((path): Mount => ({ kind: 'null', path })),
  ].filter((m) => m.path !== '/' && !(m.kind === 'tmpfs' && m.path === '/tmp'));
  const depth = (path: string) => path.split(sep).filter(Boolean).length;
  mounts.sort((a, b) => depth(a.path) - depth(b.path) || MOUNT_ORDER[a.kind] - MOUNT_ORDER[b.kind] || compareOrdinal(a.path, b.path));
  const seen = new Set<string>();
  const flags: string[] = [];
  for (const mount of mounts) {
    const key = `${mount.kind}\0${mount.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (mount.kind === 'tmpfs') flags.push('--tmpfs', mount.path);
    else if (mount.kind === 'null') flags.push('--ro-bind', '/dev/null', mount.path);
    else flags.push(mount.kind === 'bind' ? '--bind' : '--ro-bind', mount.path, mount.path);
  }
  return [...BASE_MOUNTS, ...flags, ...NAMESPACE_FLAGS, '--chdir', layout.cwd, '--', file, ...args];
}

/** Code-unit order: the same on every machine, and no locale collator to load (localeCompare's first call costs ms). */
function compareOrdinal(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface SandboxProbe {
  ok: boolean;
  /** bwrap's version, when it runs. */
  version?: string;
  /** Why it cannot run. */
  reason?: string;
  fix?: string;
}

const UNSANDBOXED = 'or set build.sandbox: none (OCI_BUILD_BUILD_SANDBOX=none) knowingly: build commands then run unsandboxed, able to read and write everything the worker can';
const INSTALL_FIX = `Install bubblewrap: apt-get install -y bubblewrap; ${UNSANDBOXED}`;
const NAMESPACE_FIX =
  'bubblewrap must be able to create mount and PID namespaces: run oci-build as root, or allow unprivileged user namespaces ' +
  '(sysctl kernel.unprivileged_userns_clone=1, or a setuid bwrap); inside a container, run it with CAP_SYS_ADMIN and a seccomp ' +
  `profile that allows unshare and mount (e.g. --privileged); ${UNSANDBOXED}`;

const probes = new Map<string, Promise<SandboxProbe>>();

/**
 * Can bubblewrap make the sandbox here? For `oci-build doctor`, and to name why a sandboxed command
 * could not start. Asked once per process and executable: `bwrap --version`,
 * then an empty command (`true`) in a sandbox with the same namespaces as a build's.
 */
export function probeBubblewrap(bwrap = 'bwrap', run: CommandRunner = runCommand): Promise<SandboxProbe> {
  let probe = probes.get(bwrap);
  if (!probe) {
    probe = (async (): Promise<SandboxProbe> => {
      const signal = AbortSignal.timeout(30_000);
      let version: string | undefined;
      try {
        const result = await run(bwrap, ['--version'], { signal, killGraceMs: 1_000 });
        version = /bubblewrap\s+(\S+)/.exec(result.stdout)?.[1] ?? (result.stdout.trim() || undefined);
      } catch (err) {
        if (err instanceof ToolUnavailableError) return { ok: false, reason: `bubblewrap is not installed (no ${bwrap} on PATH)`, fix: INSTALL_FIX };
        return { ok: false, reason: `${bwrap} --version failed: ${firstLine(describeError(err))}`, fix: INSTALL_FIX };
      }
      try {
        await run(bwrap, [...BASE_MOUNTS, ...NAMESPACE_FLAGS, '--', 'true'], { signal, killGraceMs: 1_000, displayName: 'bwrap' });
        return { ok: true, ...(version ? { version } : {}) };
      } catch (err) {
        return { ok: false, ...(version ? { version } : {}), reason: `bubblewrap cannot create its sandbox here: ${bwrapMessage(describeError(err))}`, fix: NAMESPACE_FIX };
      }
    })();
    probes.set(bwrap, probe);
  }
  return probe;
}

/** Builds the runner of build commands for `build.sandbox`. */
export function createBuildRunner(options: BuildRunnerOptions): BuildRunner {
  const run = options.run ?? runCommand;
  const parentEnv = options.parentEnv ?? process.env;
  const hide = options.hide ?? [];
  const bwrap = options.bwrap ?? 'bwrap';

  if (options.mode === 'none') {
    return async (file, args, runOptions) => {
      const { tree: _tree, writable: _writable, readable: _readable, env, ...rest } = runOptions;
      // A HOME of its own, as in the sandbox: nothing of the worker's home, nothing kept.
      const home = await mkdtemp(join(tmpdir(), 'oci-build-home-'));
      try {
        return await run(file, args, { ...rest, env: buildCommandEnv(parentEnv, { home, ...(env ? { env } : {}), ...(options.env ? { buildEnv: options.env } : {}) }), inheritEnv: false });
      } finally {
        await rm(home, { recursive: true, force: true });
      }
    };
  }

  return async (file, args, runOptions) => {
    // No probe before the command (two more processes a build): bwrap itself says, before running
    // anything, when it is missing or cannot make the sandbox, and that failure is named below.
    const { tree, writable = [], readable = [], env, log, displayName, ...rest } = runOptions;
    const layout = await resolveLayout({ tree, cwd: rest.cwd ?? tree, writable, readable, hide });
    const name = displayName ?? file;
    // bwrap reports what it could not do on stderr, before running anything, and exits 1.
    let first: { line: string; stream: LogStream | undefined } | undefined;
    const watching: LogSink = {
      write(line, stream) {
        first ??= { line, stream };
        log?.write(line, stream);
      },
    };
    try {
      return await run(bwrap, bubblewrapArgs(layout, file, args), {
        ...rest,
        cwd: layout.cwd,
        env: buildCommandEnv(parentEnv, { home: SANDBOX_HOME, ...(env ? { env } : {}), ...(options.env ? { buildEnv: options.env } : {}) }),
        inheritEnv: false,
        log: watching,
        displayName: name,
        // --unshare-pid: whatever the command leaves running dies with the namespace's init.
        contained: true,
      });
    } catch (err) {
      // Only bwrap itself is run here: a missing executable is bubblewrap not installed.
      if (err instanceof ToolUnavailableError) throw await unavailableSandbox(bwrap, run, err);
      if (!(err instanceof CommandFailedError)) throw err;
      const setup = err.exitStatus === 1 && first?.stream === 'stderr' && first.line.startsWith('bwrap: ') ? first.line : undefined;
      if (setup && /^bwrap: execvp .*: No such file or directory$/.test(setup)) {
        throw new ToolUnavailableError(`${name} is not installed (no ${file} on PATH)`, { hint: installHint(file) });
      }
      if (setup) {
        // In the probe's words (README, troubleshooting), naming the command it was for.
        throw new ToolUnavailableError(`build.sandbox is bubblewrap, and bubblewrap cannot create its sandbox here (for ${name}): ${setup}`, { hint: NAMESPACE_FIX, details: { sandbox: 'bubblewrap' } });
      }
      // The command's own failure, named as the command (not the bwrap line around it).
      throw new CommandFailedError(err.message, [file, ...args].join(' '), err.exitStatus, {
        ...(err.hint ? { hint: err.hint } : {}),
        cause: err,
      });
    }
  };
}

/** Why bwrap could not run at all, in the probe's words (the probe runs only now, on failure). */
async function unavailableSandbox(bwrap: string, run: CommandRunner, err: ToolUnavailableError): Promise<ToolUnavailableError> {
  const probe = await probeBubblewrap(bwrap, run);
  if (probe.ok) return err;
  return new ToolUnavailableError(`build.sandbox is bubblewrap, and ${probe.reason}`, { hint: probe.fix, details: { sandbox: 'bubblewrap' } });
}

async function resolveLayout(input: {
  tree: string;
  cwd: string;
  writable: readonly string[];
  readable: readonly string[];
  hide: readonly string[];
}): Promise<SandboxLayout> {
  const real = (path: string) => realpath(resolve(path)).catch(() => undefined);
  const tree = await real(input.tree);
  if (!tree) throw new ToolUnavailableError(`Cannot sandbox a build in ${input.tree}: it does not exist`);
  if (tree === '/') throw new ToolUnavailableError('Cannot sandbox a build of / : the tree must be a directory of its own');
  const existing = async (paths: readonly string[]) => (await Promise.all(paths.map(real))).filter((p): p is string => p !== undefined);
  // Every path at once: each realpath and stat is a thread-pool round trip.
  const [hidden, cwd, writable, readable] = await Promise.all([
    existing(input.hide).then((paths) => Promise.all(paths.map(async (path) => ({ path, st: await stat(path).catch(() => undefined) })))),
    real(input.cwd),
    existing(input.writable),
    existing(input.readable),
  ]);
  return {
    tree,
    cwd: cwd ?? tree,
    // A missing cache directory was not prepared for this step: nothing to bind.
    writable,
    readable,
    hiddenDirs: hidden.filter(({ st }) => st?.isDirectory()).map(({ path }) => path),
    hiddenFiles: hidden.filter(({ st }) => st !== undefined && !st.isDirectory()).map(({ path }) => path),
  };
}

/** The `bwrap: …` line of a failed probe, else the first line. */
function bwrapMessage(message: string): string {
  return message.split('\n').find((l) => l.startsWith('bwrap: '))?.trim() ?? firstLine(message);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

export interface SandboxCheck {
  ok: boolean;
  /** A failure that does not stop builds (build.sandbox: none, chosen). */
  warning: boolean;
  detail: string;
  fix?: string;
}

/** For `oci-build doctor`: does `build.sandbox` work here, and what does it mean. */
export async function checkSandbox(mode: SandboxMode, bwrap = 'bwrap', run: CommandRunner = runCommand): Promise<SandboxCheck> {
  if (mode === 'none') {
    return {
      ok: false,
      warning: true,
      detail: "build.sandbox is none: build commands run unsandboxed: a repository's build can read and write everything the worker can",
      fix: 'Set build.sandbox: bubblewrap (the default; apt-get install -y bubblewrap) unless every repository built here is trusted.',
    };
  }
  const probe = await probeBubblewrap(bwrap, run);
  if (probe.ok) return { ok: true, warning: false, detail: `bubblewrap ${probe.version ?? ''}`.trim() + ': build commands see the host read-only, write only their tree, caches and /tmp' };
  return { ok: false, warning: false, detail: probe.reason ?? 'bubblewrap cannot run', ...(probe.fix ? { fix: probe.fix } : {}) };
}
