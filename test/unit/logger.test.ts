import { describe, expect, it, vi } from 'vitest';
import { Writable } from 'node:stream';
import { once, type EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accessLogger, createLogger, daemonDestination } from '../../src/log/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ destination, name: 'test' }), lines };
}

describe('daemon logger', () => {
  it('writes JSON with level names, time, name and the fields given', () => {
    const { logger, lines } = capture();
    logger.child({ jobId: 'j1' }).info({ durationMs: 12 }, 'done');
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', name: 'test', jobId: 'j1', durationMs: 12, msg: 'done' });
    expect(typeof line.time).toBe('string');
  });

  it('redacts authorization, signatures, secrets, tokens and passwords, at the top level and one level down', () => {
    const { logger, lines } = capture();
    logger.info({
      authorization: 'Bearer top-secret-token',
      token: 'tok-123',
      headers: { authorization: 'Bearer nested-token', 'x-hub-signature-256': 'sha256=abcdef', 'content-type': 'application/json' },
      server: { webhookSecret: 'whsec', apiTokens: ['t1', 't2'] },
      nats: { password: 'pw', token: 'nats-token', url: 'nats://127.0.0.1:4222' },
      git: { token: 'ghp_xyz' },
      secret: 'plain-secret',
    });
    const text = lines.join('\n');
    for (const secret of ['top-secret-token', 'tok-123', 'nested-token', 'sha256=abcdef', 'whsec', '"t1"', '"pw"', 'nats-token', 'ghp_xyz', 'plain-secret']) {
      expect(text).not.toContain(secret);
    }
    expect(text).toContain('application/json');
    expect(text).toContain('nats://127.0.0.1:4222');
    expect(text).toContain('[redacted]');
  });

  it('the access logger writes to the same destination with the same fields and still redacts top-level secret keys', () => {
    const { logger, lines } = capture();
    const access = accessLogger(logger);
    access.info({ method: 'POST', path: '/webhooks/github', status: 202, durationMs: 1.5, authorization: 'Bearer top-level-token' }, 'request');
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', name: 'test', method: 'POST', path: '/webhooks/github', status: 202, durationMs: 1.5, msg: 'request' });
    expect(line.authorization).toBe('[redacted]');
    expect(lines[0]).not.toContain('top-level-token');
    // The parent keeps its full redaction (nested keys too).
    logger.info({ headers: { authorization: 'Bearer nested-token' } });
    expect(lines[1]).not.toContain('nested-token');
  });
});

describe('daemonDestination', () => {
  it('a line shorter than the 4 KiB block is written within 250 ms, without more lines behind it', async () => {
    // The flush interval runs on a fake clock (only setInterval: opening and writing the file and
    // the test's waits are real), so "within 250 ms" is checked exactly however loaded the machine
    // is: at 250 ms of that clock the line must reach the file; a slower flush never fires here.
    // (Not expect.poll: it advances fake timers while it waits.)
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const dir = mkdtempSync(join(tmpdir(), 'oci-build-log-'));
    try {
      const file = join(dir, 'serve.log');
      const destination = daemonDestination(file);
      // The file opens asynchronously; a flush before it is open writes nothing (stdout, the
      // daemons' destination, is open from the start).
      await once(destination as unknown as EventEmitter, 'ready');
      const logger = createLogger({ destination, name: 'test' });
      logger.info({ path: '/health' }, 'request');
      vi.advanceTimersByTime(250);
      // The write is asynchronous and real: give it real time, never more fake time.
      const deadline = performance.now() + 3_000;
      while (!readFileSync(file, 'utf8').includes('"path":"/health"') && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(readFileSync(file, 'utf8')).toContain('"path":"/health"');
    } finally {
      vi.useRealTimers();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('what is still buffered when the process exits is written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oci-build-log-'));
    try {
      const file = join(dir, 'serve.log');
      // The compiled module (the tests' global setup builds dist/); a file descriptor, as stdout is.
      const logger = new URL('../../dist/log/logger.js', import.meta.url).pathname;
      // Logs, then exits at once, before the 250 ms flush: pino's exit hook must write the line.
      const script = `import { openSync } from 'node:fs';
        import { createLogger, daemonDestination } from ${JSON.stringify(logger)};
        const log = createLogger({ destination: daemonDestination(openSync(${JSON.stringify(file)}, 'a')) });
        log.info('last words'); process.exit(0);`;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(child.status, child.stderr).toBe(0);
      expect(readFileSync(file, 'utf8')).toContain('last words');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
