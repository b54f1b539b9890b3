import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createReporter } from '../../src/cli/render/reporter.js';
import type { PhaseMetric } from '../../src/core/types.js';

// eslint-disable-next-line no-control-regex
const SGR = /\u001b\[[0-9;]*m/;

/** A stream that keeps what is written; `tty` makes it look like a terminal to ora. */
function capture(tty = false) {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  if (tty) {
    Object.assign(stream, {
      isTTY: true,
      columns: 100,
      cursorTo: () => true,
      moveCursor: () => true,
      clearLine: () => true,
    });
  }
  return { stream, text: () => chunks.join('') };
}

const metric = (m: Partial<PhaseMetric> & Pick<PhaseMetric, 'name' | 'status'>): PhaseMetric => ({
  startedAt: '2026-11-29T08:01:00.000Z',
  durationMs: 0,
  ...m,
});

/** Drives a reporter through a two-project build where one project fails. */
function runBuild(reporter: Awaited<ReturnType<typeof createReporter>>) {
  reporter.phaseStarted('source');
  reporter.warn('remote unreachable: built from the mirror');
  reporter.phaseEnded(metric({ name: 'source', status: 'succeeded', durationMs: 1234 }));
  reporter.phaseStarted('detect');
  reporter.phaseEnded(metric({ name: 'detect', status: 'succeeded', durationMs: 8 }));
  reporter.phaseStarted('build', 'api');
  reporter.phaseStarted('build', 'web');
  reporter.phaseEnded(metric({ name: 'build', project: 'api', status: 'succeeded', durationMs: 61_000, cached: true }));
  reporter.phaseEnded(metric({ name: 'build', project: 'web', status: 'failed', durationMs: 2500, error: 'npm ERR! missing script: build\nmore detail' }));
  reporter.stop();
}

describe('the plain reporter (pipes, CI)', () => {
  it('prints one timestamped line per phase end, none per start', async () => {
    const out = capture();
    let tick = Date.parse('2026-11-29T08:01:02.000Z');
    const reporter = await createReporter({ stream: out.stream, interactive: false, color: false, now: () => new Date((tick += 1000)) });
    runBuild(reporter);
    expect(out.text().split('\n')).toEqual([
      '2026-11-29T08:01:03Z warning: remote unreachable: built from the mirror',
      '2026-11-29T08:01:04Z source … done in 1.2s',
      '2026-11-29T08:01:05Z detect … done in 8ms',
      '2026-11-29T08:01:06Z build api … done in 1m1s (cached)',
      '2026-11-29T08:01:07Z build web … failed after 2.5s: npm ERR! missing script: build …',
      '',
    ]);
  });

  it('has colour codes only when asked', async () => {
    const plain = capture();
    runBuild(await createReporter({ stream: plain.stream, interactive: false, color: false }));
    expect(plain.text()).not.toMatch(SGR);
    const coloured = capture();
    runBuild(await createReporter({ stream: coloured.stream, interactive: false, color: true }));
    expect(coloured.text()).toMatch(SGR);
  });

  it('writes build output lines as they are', async () => {
    const out = capture();
    const reporter = await createReporter({ stream: out.stream, interactive: false, color: false });
    reporter.output.write('go: building ./...');
    expect(out.text()).toBe('go: building ./...\n');
  });
});

describe('the spinner reporter (a terminal)', () => {
  it('persists a ✔ or ✖ line with the duration for every phase, and the warnings', async () => {
    const out = capture(true);
    const reporter = await createReporter({ stream: out.stream, interactive: true, color: false });
    runBuild(reporter);
    const persisted = out
      .text()
      .split('\n')
      // ora redraws the spinner line in place; keep only what follows the last redraw on each line.
      .map((line) => line.replace(/^.*\u001b\[\?25[lh]/, ''))
      .filter((line) => /^[✔✖⚠]/.test(line));
    expect(persisted).toEqual([
      '⚠ remote unreachable: built from the mirror',
      '✔ source 1.2s',
      '✔ detect 8ms',
      '✔ build api 1m1s (cached)',
      '✖ build web failed after 2.5s: npm ERR! missing script: build …',
    ]);
  });

  it('spins with the names of every phase still running', async () => {
    const out = capture(true);
    const reporter = await createReporter({ stream: out.stream, interactive: true, color: false });
    reporter.phaseStarted('build', 'api');
    reporter.phaseStarted('build', 'web');
    expect(out.text()).toContain('build api, build web');
    reporter.stop();
    // Stopped means stopped: no redraw keeps the process busy or scribbles after the summary.
    const length = out.text().length;
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(out.text().length).toBe(length);
  });

  it('uses no colour codes when colour is off', async () => {
    const out = capture(true);
    runBuild(await createReporter({ stream: out.stream, interactive: true, color: false }));
    expect(out.text()).not.toMatch(SGR);
  });
});
