import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { colorEnabled, interactiveEnabled } from '../../src/cli/render/color.js';
import { alignColumns, formatAge, formatBytes, formatDuration, formatTimestamp, printable } from '../../src/cli/render/format.js';

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [120 * 1024 ** 2, '120 MiB'],
    [1.2 * 1024 ** 3, '1.2 GiB'],
    [1024 ** 2 - 1, '1.0 MiB'],
    [5 * 1024 ** 4, '5.0 TiB'],
  ])('%d bytes is %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('never shows more than three integer digits nor a 1024 of a unit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 50 }), (n) => {
        const text = formatBytes(n);
        expect(text).toMatch(/^(\d{1,4} B|\d\.\d [KMGTP]iB|\d{2,4} [KMGTP]iB)$/);
        expect(text).not.toMatch(/^1024 .iB/);
      }),
    );
  });
});

describe('formatAge', () => {
  const now = new Date('2026-11-29T12:00:00Z');
  it.each([
    ['2026-11-29T12:00:00Z', 'just now'],
    ['2026-11-29T12:00:05Z', 'just now'],
    ['2026-11-29T11:59:15Z', '45s ago'],
    ['2026-11-29T11:57:00Z', '3m ago'],
    ['2026-11-29T07:00:00Z', '5h ago'],
    ['2026-11-27T13:00:00Z', '47h ago'],
    ['2026-11-17T12:00:00Z', '12d ago'],
  ])('%s is %s', (from, text) => {
    expect(formatAge(from, now)).toBe(text);
  });
});

describe('formatDuration', () => {
  it('follows the pipeline’s formatting', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(1234)).toBe('1.2s');
    expect(formatDuration(42_000)).toBe('42s');
    expect(formatDuration(185_000)).toBe('3m5s');
    expect(formatDuration(3_720_000)).toBe('1h2m');
    expect(formatDuration(-5)).toBe('0ms');
  });
});

describe('formatTimestamp', () => {
  it('is UTC to the second', () => {
    expect(formatTimestamp(new Date('2026-11-29T08:01:02.999Z'))).toBe('2026-11-29T08:01:02Z');
  });
});

describe('alignColumns', () => {
  it('pads by the plain text, paints after padding, and leaves no trailing spaces', () => {
    const lines = alignColumns([
      ['a', { text: 'bb', paint: (t) => `<${t}>` }, 'c'],
      ['aaaa', 'b', ''],
    ]);
    expect(lines).toEqual(['a     <bb>  c', 'aaaa  b']);
  });
});

describe('printable', () => {
  it('removes escape sequences and control characters, keeping the text', () => {
    expect(printable('a\u001b[31mred\u001b[0m\tb\nc\u0007\u009b')).toBe('ared b c');
  });
});

describe('colorEnabled', () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };
  it.each([
    [tty, {}, true],
    [pipe, {}, false],
    [tty, { NO_COLOR: '1' }, false],
    [tty, { NO_COLOR: '' }, true],
    [tty, { TERM: 'dumb' }, false],
    [pipe, { FORCE_COLOR: '1' }, true],
    [pipe, { FORCE_COLOR: '' }, true],
    [tty, { FORCE_COLOR: '0' }, false],
    [tty, { FORCE_COLOR: 'false' }, false],
    [pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }, true],
  ])('%j with %j: %s', (stream, env, expected) => {
    expect(colorEnabled(stream, env)).toBe(expected);
  });
});

describe('interactiveEnabled', () => {
  it.each([
    [{ isTTY: true }, {}, true],
    [{ isTTY: false }, {}, false],
    [{}, {}, false],
    [{ isTTY: true }, { CI: 'true' }, false],
    [{ isTTY: true }, { CI: '1' }, false],
    [{ isTTY: true }, { CI: 'false' }, true],
    [{ isTTY: true }, { TERM: 'dumb' }, false],
  ])('%j with %j: %s', (stream, env, expected) => {
    expect(interactiveEnabled(stream, env)).toBe(expected);
  });
});
