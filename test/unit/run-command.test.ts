// runCommand against real processes. `sh` here is only a test program given as an argument array:
// it spawns grandchildren the way a build tool does (a Maven JVM, a Go compiler).

import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import {
  BuildTimeoutError,
  CancelledError,
  CommandFailedError,
  ToolUnavailableError,
} from '../../src/core/errors.js';
import type { LogSink, LogStream } from '../../src/core/ports.js';
import { runCommand } from '../../src/exec/run-command.js';

class MemorySink implements LogSink {
  readonly lines: Array<{ line: string; stream?: LogStream }> = [];
  write(line: string, stream?: LogStream): void {
    this.lines.push({ line, stream });
  }
  text(stream?: LogStream): string[] {
    return this.lines.filter((l) => stream === undefined || l.stream === stream).map((l) => l.line);
  }
}

/**
 * A process of the group still runs. Zombies do not count: killed orphans are reparented to PID 1,
 * which here reaps them only every second or so, and a zombie runs nothing and holds no file.
 */
function groupAlive(pgid: number): boolean {
  return execFileSync('ps', ['-eo', 'pgid=,stat='], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .some(([group, stat]) => Number(group) === pgid && !stat?.startsWith('Z'));
}

/** Processes whose process group is `pgid`, from ps (zombies left out, as above). */
function processesInGroup(pgid: number): Promise<string[]> {
  return runCommand('ps', ['-eo', 'pid=,pgid=,stat=,args=']).then((r) =>
    r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((cols) => Number(cols[1]) === pgid && !cols[2]?.startsWith('Z'))
      .map((cols) => cols.join(' ')),
  );
}

/** Waits until the command's first output line (its shell's pid, which is also its pgid). */
async function firstLine(sink: MemorySink): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const first = sink.text('stdout')[0];
    if (first) return Number(first);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the command printed nothing');
}

describe('runCommand', () => {
  test('streams stdout and stderr lines to the LogSink as they come, the last line without a newline too', async () => {
    const sink = new MemorySink();
    const result = await runCommand('sh', ['-c', 'printf "one\\ntwo\\n"; printf "warn\\n" >&2; printf "tail"'], { log: sink });
    expect(sink.text('stdout')).toEqual(['one', 'two', 'tail']);
    expect(sink.text('stderr')).toEqual(['warn']);
    expect(result.stdout).toBe('one\ntwo\ntail');
    expect(result.exitCode).toBe(0);
  });

  test('masks secrets in log lines, results and errors', async () => {
    const sink = new MemorySink();
    const secret = 's3cr3t-token-value';
    const ok = await runCommand('sh', ['-c', `echo "token=${secret}"; echo "${secret}" >&2`], { log: sink, secrets: [secret] });
    expect(sink.text()).toEqual(['token=***', '***']);
    expect(ok.stdout).not.toContain(secret);
    expect(ok.stderr).not.toContain(secret);

    const failure = await runCommand('sh', ['-c', `echo "auth failed for ${secret}" >&2; exit 3`, secret], { secrets: [secret] }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CommandFailedError);
    const err = failure as CommandFailedError;
    expect(err.message).toContain('auth failed for ***');
    expect(err.message).not.toContain(secret);
    expect(err.command).not.toContain(secret);
    expect(err.exitStatus).toBe(3);
  });

  test('a non-zero exit is a CommandFailedError carrying the last lines of output', async () => {
    const err = await runCommand('sh', ['-c', 'echo compiling; echo "main.go:6:14: undefined: greeting" >&2; exit 2'], { displayName: 'go build' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as Error).message).toMatch(/^go build exited with code 2/);
    expect((err as Error).message).toContain('main.go:6:14: undefined: greeting');
  });

  test('a missing executable is a ToolUnavailableError with an install hint', async () => {
    const err = await runCommand('oci-build-no-such-tool', ['--version']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolUnavailableError);
    expect((err as ToolUnavailableError).exitCode).toBe(3);
    expect((err as Error).message).toContain('oci-build-no-such-tool');
    expect((err as ToolUnavailableError).hint).toBeTruthy();
  });

  test('an aborted command and its grandchildren are all gone when it rejects', async () => {
    const sink = new MemorySink();
    const controller = new AbortController();
    const running = runCommand('sh', ['-c', 'echo $$; sleep 100 & sleep 100 & wait'], { log: sink, signal: controller.signal, killGraceMs: 10_000 });
    const pgid = await firstLine(sink);
    // Both sleeps exist before the abort: the test would prove nothing otherwise.
    await expect.poll(async () => (await processesInGroup(pgid)).filter((p) => p.split(' ')[3] === 'sleep').length).toBe(2);
    controller.abort();
    const started = Date.now();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    // SIGTERM was enough: no wait for the SIGKILL at 10 s (reaping the orphans can take a second).
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(groupAlive(pgid)).toBe(false);
    expect(await processesInGroup(pgid)).toEqual([]);
  });

  // The grace period is 300 ms; settling takes that plus the kill and the reaping of the orphans
  // (PID 1 here reaps about every second): 5 s is generous on a loaded 2-core machine, and far
  // below the 100 s the sleeps would run if SIGKILL never came. The test's own timeout ends it
  // fast when the command never settles at all.
  test('grandchildren ignoring SIGTERM are killed after the grace period', { timeout: 20_000 }, async () => {
    const killGraceMs = 300;
    const sink = new MemorySink();
    const controller = new AbortController();
    const running = runCommand('sh', ['-c', 'echo $$; trap "" TERM; sleep 100 & sleep 100'], { log: sink, signal: controller.signal, killGraceMs });
    const pgid = await firstLine(sink);
    await expect.poll(async () => (await processesInGroup(pgid)).filter((p) => p.split(' ')[3] === 'sleep').length).toBe(2);
    const aborted = performance.now();
    controller.abort();
    await expect(running).rejects.toBeInstanceOf(CancelledError);
    const settledMs = performance.now() - aborted;
    // Not before the grace period: SIGTERM alone cannot end these.
    expect(settledMs).toBeGreaterThanOrEqual(killGraceMs - 20);
    expect(settledMs).toBeLessThan(killGraceMs + 5_000);
    expect(groupAlive(pgid)).toBe(false);
    expect(await processesInGroup(pgid)).toEqual([]);
  });

  test('a timeout (abort with a BuildTimeoutError reason) rejects with that reason and leaves nothing behind', async () => {
    const sink = new MemorySink();
    const signal = AbortSignal.timeout(300);
    const timeout = new AbortController();
    signal.addEventListener('abort', () => timeout.abort(new BuildTimeoutError('The build ran past its timeout of 300ms')));
    const running = runCommand('sh', ['-c', 'echo $$; sleep 100 & sleep 100'], { log: sink, signal: timeout.signal, killGraceMs: 1_000 });
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildTimeoutError);
    const pgid = Number(sink.text('stdout')[0]);
    expect(pgid).toBeGreaterThan(1);
    expect(groupAlive(pgid)).toBe(false);
  });

  test('a background process left by a command that exits is ended, and does not hold the command open', async () => {
    const sink = new MemorySink();
    const started = Date.now();
    const result = await runCommand('sh', ['-c', 'echo $$; sleep 100 & echo done'], { log: sink, killGraceMs: 1_000 });
    expect(result.exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(groupAlive(Number(sink.text('stdout')[0]))).toBe(false);
  });

  test("a contained command's group is not looked over when it exits: the caller vouches that nothing outlives it", async () => {
    const sink = new MemorySink();
    // A background process that lets go of the pipes, which only a look at the group would find.
    await runCommand('sh', ['-c', 'echo $$; sleep 100 >/dev/null 2>&1 </dev/null &'], { log: sink, killGraceMs: 1_000, contained: true });
    const pgid = Number(sink.text('stdout')[0]);
    try {
      expect(groupAlive(pgid)).toBe(true);
    } finally {
      process.kill(-pgid, 'SIGKILL');
    }
    const uncontained = new MemorySink();
    await runCommand('sh', ['-c', 'echo $$; sleep 100 >/dev/null 2>&1 </dev/null &'], { log: uncontained, killGraceMs: 1_000 });
    const deadline = Date.now() + 5_000;
    while (groupAlive(Number(uncontained.text('stdout')[0])) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(groupAlive(Number(uncontained.text('stdout')[0]))).toBe(false);
  });

  test('an already aborted signal rejects without starting anything', async () => {
    const controller = new AbortController();
    controller.abort();
    const sink = new MemorySink();
    await expect(runCommand('sh', ['-c', 'echo started'], { signal: controller.signal, log: sink })).rejects.toBeInstanceOf(CancelledError);
    expect(sink.lines).toEqual([]);
  });
});
