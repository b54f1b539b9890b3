import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { accessLogger, createLogger } from '../../src/server/logger.js';

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
