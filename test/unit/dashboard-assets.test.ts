// The dashboard's embedded files (dashboard-assets.generated.ts) are the files of
// src/server/dashboard/, and its ANSI renderer, imported from the very text serve sends, never lets
// the log's text become HTML.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_ASSETS } from '../../src/server/dashboard-assets.generated.js';

const DIR = join(import.meta.dirname, '../../src/server/dashboard');

type Ansi = { renderAnsi(line: string): string; escapeHtml(text: string): string };
let ansi: Ansi;

beforeAll(async () => {
  const source = DASHBOARD_ASSETS['ansi.js']!.body;
  ansi = (await import(/* @vite-ignore */ `data:text/javascript;base64,${Buffer.from(source).toString('base64')}`)) as Ansi;
});

const TAG = /<span class="[a-z0-9 -]+">|<\/span>/g;
const unescape = (html: string) => html.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');

/** Log-like text: plain characters, HTML, SGR and other escape sequences, control characters. */
const logLine = fc
  .array(
    fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.constantFrom('\x1b[31m', '\x1b[0m', '\x1b[1;4;92m', '\x1b[38;5;200m', '\x1b[48;2;1;2;3m', '\x1b[m', '\x1b[2K', '\x1b]0;title\x07', '\x1b]8;;http://x/\x1b\\', '\x1b', '\x9b31m', '\r'),
      fc.constantFrom('<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '&amp;', '"', "'", '</span>', '<span class="x">'),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(''));

describe('embedded dashboard files', () => {
  it('are exactly the files of src/server/dashboard (run `node scripts/embed-dashboard.mjs` after editing one)', () => {
    const files = readdirSync(DIR).filter((f) => /\.(html|js|css|svg)$/.test(f)).sort();
    expect(Object.keys(DASHBOARD_ASSETS).sort()).toEqual(files);
    for (const file of files) expect(DASHBOARD_ASSETS[file]!.body, file).toBe(readFileSync(join(DIR, file), 'utf8'));
  });

  it('hold no inline script or style and no configuration value', () => {
    const html = DASHBOARD_ASSETS['index.html']!.body;
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style/);
    expect(html).not.toMatch(/\son[a-z]+=/);
    for (const [name, { body }] of Object.entries(DASHBOARD_ASSETS)) expect(body, name).not.toMatch(/OCI_BUILD_|apiTokens\s*[:=]|webhookSecret/);
  });
});

describe('renderAnsi', () => {
  it('never outputs a < or > of the input: the only tags are its own spans, balanced', () => {
    fc.assert(
      fc.property(logLine, (line) => {
        const html = ansi.renderAnsi(line);
        const rest = html.replace(TAG, '');
        expect(rest).not.toMatch(/[<>]/);
        expect(rest).not.toMatch(/&(?!(amp|lt|gt|quot|#39);)/);
        expect((html.match(/<span /g) ?? []).length).toBe((html.match(/<\/span>/g) ?? []).length);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps the text of a line without control characters exactly', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }).filter((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s)), (line) => {
        expect(unescape(ansi.renderAnsi(line).replace(TAG, ''))).toBe(line);
      }),
    );
  });

  it('renders colours and styles as classes, drops other sequences, and shows what a carriage return leaves', () => {
    expect(ansi.renderAnsi('\x1b[1;31merror\x1b[0m: <b>')).toBe('<span class="ansi-fg-1 ansi-bold">error</span>: &lt;b&gt;');
    expect(ansi.renderAnsi('\x1b[92mok\x1b[39m done\x1b[K')).toBe('<span class="ansi-fg-10">ok</span> done');
    expect(ansi.renderAnsi('\x1b[38;5;196mred\x1b[48;5;21mon blue')).toBe('<span class="ansi-fg-1">red</span><span class="ansi-fg-1 ansi-bg-4">on blue</span>');
    expect(ansi.renderAnsi('\x1b]0;title\x07text')).toBe('text');
    expect(ansi.renderAnsi(' 10%\r 50%\r100%')).toBe('100%');
    expect(ansi.renderAnsi('line\r')).toBe('line');
  });
});
