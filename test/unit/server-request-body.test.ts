// The shared body budget (server.maxInflightBytes) and what serve logs for a client that hangs up.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/config.js';
import { startServer } from '../../src/server/http-server.js';
import { createLogger } from '../../src/log/logger.js';
import { InflightBudget } from '../../src/server/request-body.js';
import { FakeIntake } from './server-fake-intake.js';

describe('InflightBudget', () => {
  it('never holds more than its ceiling, and drops the largest bodies first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.array(fc.tuple(fc.nat(7), fc.integer({ min: 1, max: 3000 })), { maxLength: 200 }), (max, writes) => {
        const budget = new InflightBudget(max);
        const bodies = Array.from({ length: 8 }, () => budget.open());
        for (const [which, size] of writes) {
          const body = bodies[which]!;
          const before = bodies.map((b) => ({ held: b.held, dropped: b.dropped }));
          const kept = budget.hold(body, Buffer.alloc(size));
          expect(budget.usedBytes).toBeLessThanOrEqual(max);
          expect(budget.usedBytes).toBe(bodies.reduce((n, b) => n + b.held, 0));
          if (kept) {
            // Every body dropped for this chunk held at least what the kept one holds now.
            bodies.forEach((b, i) => {
              if (b.dropped && !before[i]!.dropped) expect(before[i]!.held).toBeGreaterThanOrEqual(body.held - size);
            });
          }
          // A chunk that fits alongside what is held is always kept.
          if (!before[which]!.dropped && before.reduce((n, b) => n + b.held, 0) + size <= max) expect(kept).toBe(true);
        }
        for (const b of bodies) budget.release(b);
        expect(budget.usedBytes).toBe(0);
      }),
    );
  });

  it('keeps a small body while huge ones are dropped', () => {
    const budget = new InflightBudget(1000);
    const huge = [budget.open(), budget.open()];
    for (let i = 0; i < 10; i++) for (const h of huge) budget.hold(h, Buffer.alloc(300));
    const small = budget.open();
    expect(budget.hold(small, Buffer.alloc(100))).toBe(true);
    expect(huge.every((h) => h.dropped)).toBe(true);
    expect(small.dropped).toBe(false);
  });
});

describe('access log', () => {
  it('a client that hangs up mid-body is logged as an abort: no status, no error', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const config = parseConfig({ env: { OCI_BUILD_SERVER_PORT: '0', OCI_BUILD_SERVER_WEBHOOK_SECRET: 'secret-for-abort-test' }, home: '/tmp' });
    const server = await startServer({ config, intake: new FakeIntake(), logger: createLogger({ destination, level: 'info' }), watchRecords: false });
    try {
      await new Promise<void>((resolve, reject) => {
        const socket = connect(server.port, '127.0.0.1', () => {
          socket.write(
            'POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-github-event: push\r\n' +
              `x-hub-signature-256: sha256=${'0'.repeat(64)}\r\ncontent-length: 100000\r\n\r\n{"ref":`,
          );
          setTimeout(() => {
            socket.destroy();
            resolve();
          }, 100);
        });
        socket.on('error', reject);
      });
      const deadline = Date.now() + 3000;
      while (!lines.some((l) => l.msg === 'request') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await server.close();
    }
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ method: 'POST', path: '/webhooks/github', aborted: true, outcome: 'aborted' });
    expect(requests[0]).not.toHaveProperty('status');
    expect(requests[0]).not.toHaveProperty('error');
    expect(lines.filter((l) => l.msg === 'request failed')).toHaveLength(0);
  });
});
