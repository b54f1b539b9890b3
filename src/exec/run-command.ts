// Every external command goes through here: an argument array (never a shell string), its own
// process group, output streamed line by line to a LogSink, cancellation through an AbortSignal.
// On abort the whole group gets SIGTERM, then SIGKILL after a grace period, so no grandchild
// (a Maven JVM, a Go compiler, a buildah RUN step) outlives the build.

import { readdirSync, readFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { CommandFailedError, ToolUnavailableError } from '../core/errors.js';
import type { LogSink } from '../core/ports.js';
import { abortError, sleep } from '../core/retry.js';
import { secretMasker } from '../core/secrets.js';

export interface RunOptions {
  cwd?: string;
  /** Added to the current environment, or the whole environment when `inheritEnv` is false. */
  env?: Record<string, string | undefined>;
  /**
   * Start from this process's environment (default true). Build commands pass false: they get
   * exactly `env`, never the worker's tokens and passwords (see exec/sandbox.ts).
   */
  inheritEnv?: boolean;
  signal?: AbortSignal;
  /** Where output lines go; omitted output is only captured. */
  log?: LogSink;
  /** Between SIGTERM and SIGKILL of the process group. Default 10 s. */
  killGraceMs?: number;
  /** Keep stdout in the result (default true); a long build's output need not be held. */
  capture?: boolean;
  /** Bytes written to stdin. */
  input?: string;
  /** Exit codes that are not failures. Default [0]. */
  okExitCodes?: number[];
  /** How the command is named in errors (default the executable). */
  displayName?: string;
  /**
   * No process of the command can outlive it: it runs in a PID namespace of its own (the bubblewrap
   * sandbox), whose processes the kernel kills when the namespace's init exits. Its group is then
   * not looked over when it exits (a scan of /proc, ~2 ms: bubblewrap's init, reparented as it
   * exits, stays in the group as a zombie until the system reaps it).
   */
  contained?: boolean;
  /**
   * Strings masked as *** in logs and errors (tokens, passwords), besides every secret the process
   * has registered (core/secrets.ts), which are always masked.
   */
  secrets?: string[];
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** The last lines of stderr (or stdout), for an error message. */
const TAIL_LINES = 20;
/** How often a group being killed is looked at until its last member is gone. */
const GROUP_EXIT_POLL_MS = 20;

export type CommandRunner = (file: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

export const runCommand: CommandRunner = (file, args, options = {}) => {
  const started = Date.now();
  const killGraceMs = options.killGraceMs ?? 10_000;
  const mask = secretMasker(options.secrets);
  const name = options.displayName ?? file;
  if (options.signal?.aborted) return Promise.reject(abortError(options.signal, name));

  return (async () => {
    // execa is imported on first use: commands that run nothing never pay for loading it.
    const { execa } = await import('execa');
    const capture = options.capture ?? true;
    const child = execa(file, [...args], {
      cwd: options.cwd,
      env: options.env,
      extendEnv: options.inheritEnv ?? true,
      // Its own process group: a kill reaches every descendant.
      detached: true,
      reject: false,
      buffer: false,
      stripFinalNewline: false,
      ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' as const }),
    });
    const stdoutParts: string[] = [];
    const stderrParts: string[] = [];
    const tails: Record<'stdout' | 'stderr', string[]> = { stdout: [], stderr: [] };
    let killTimer: NodeJS.Timeout | undefined;
    let aborted = false;

    const lineReader = (stream: 'stdout' | 'stderr', parts: string[]) => {
      const decoder = new StringDecoder('utf8');
      let pending = '';
      const emit = (line: string) => {
        const safe = mask(line);
        const tail = tails[stream];
        tail.push(safe);
        if (tail.length > TAIL_LINES) tail.shift();
        options.log?.write(safe, stream);
      };
      return {
        push(chunk: Buffer) {
          const text = decoder.write(chunk);
          if (capture) parts.push(text);
          pending += text;
          let index: number;
          while ((index = pending.indexOf('\n')) >= 0) {
            emit(pending.slice(0, index).replace(/\r$/, ''));
            pending = pending.slice(index + 1);
          }
        },
        flush() {
          const rest = pending + decoder.end();
          if (rest.length > 0) emit(rest);
          pending = '';
        },
      };
    };
    const out = lineReader('stdout', stdoutParts);
    const err = lineReader('stderr', stderrParts);
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));

    const killGroup = (signal: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // the group is already gone
      }
    };
    const terminateGroup = () => {
      if (killTimer) return;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), killGraceMs);
    };
    const onAbort = () => {
      aborted = true;
      terminateGroup();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // When the leader exits, what is left of its group (a background job, a build daemon) would
    // outlive the build and, holding the output pipes, keep `await child` waiting for ever.
    if (!options.contained) {
      child.once('exit', () => {
        if (child.pid !== undefined && groupAlive(child.pid)) terminateGroup();
      });
    }

    let result;
    try {
      result = await child;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      if (child.pid !== undefined && killTimer) {
        // Settle only once the group is gone (SIGKILL comes when the grace period ends), so a
        // caller that removes the worktree next does not race a dying compiler.
        await waitForGroupExit(child.pid, killGraceMs + 5_000);
      }
      if (killTimer) clearTimeout(killTimer);
    }
    out.flush();
    err.flush();
    if (aborted) throw abortError(options.signal!, name);
    const spawnError = (result as { code?: string }).code;
    if (result.exitCode === undefined && spawnError) {
      if (spawnError === 'ENOENT') {
        throw new ToolUnavailableError(`${name} is not installed (no ${file} on PATH)`, { hint: installHint(file) });
      }
      throw new ToolUnavailableError(`Cannot run ${name}: ${result.message}`);
    }
    const exitCode = result.exitCode ?? 128 + (result.signal ? osSignalNumber(result.signal as NodeJS.Signals) ?? 0 : 0);
    if (!(options.okExitCodes ?? [0]).includes(exitCode)) {
      const tail = (tails.stderr.some((l) => l.trim()) ? tails.stderr : tails.stdout).filter((l) => l.trim().length > 0);
      const lastLines = tail.slice(-8).join('\n');
      throw new CommandFailedError(
        `${name} exited with ${result.signal ? `signal ${result.signal}` : `code ${exitCode}`}${lastLines ? `:\n${lastLines}` : ''}`,
        [file, ...args].map(mask).join(' '),
        exitCode,
      );
    }
    return {
      exitCode,
      stdout: mask(stdoutParts.join('')),
      stderr: mask(stderrParts.join('')),
      durationMs: Date.now() - started,
    };
  })();
};

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    // EPERM: the group exists but is not ours to signal (it cannot be, but say alive).
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return hasLiveMember(pgid);
}

/**
 * kill(-pgid, 0) succeeds while a member is a zombie. An orphan (bubblewrap's init in a PID
 * namespace exits just after its monitor) is reparented to PID 1, which may reap only every second
 * or so (it does here): such a member holds no file and runs nothing, so it does not count.
 * Without /proc, every member counts.
 */
function hasLiveMember(pgid: number): boolean {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/** Polls until no process is left in the group (killed members take a moment to be reaped). */
async function waitForGroupExit(pgid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (groupAlive(pgid) && Date.now() < deadline) {
    await sleep(GROUP_EXIT_POLL_MS);
  }
}

function osSignalNumber(signal: NodeJS.Signals): number | undefined {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal];
}

const DEBIAN_PACKAGES: Record<string, string> = {
  buildah: 'buildah',
  skopeo: 'skopeo',
  go: 'golang-go',
  mvn: 'maven',
  git: 'git',
  'nats-server': 'nats-server',
};

/** What to do when a tool is missing. */
export function installHint(tool: string): string {
  if (tool === 'dotnet') return 'Install the .NET SDK (https://learn.microsoft.com/dotnet/core/install/linux) and make sure `dotnet` is on PATH.';
  const pkg = DEBIAN_PACKAGES[tool];
  return pkg ? `Install it: apt-get install -y ${pkg}` : `Install ${tool} and make sure it is on PATH.`;
}
