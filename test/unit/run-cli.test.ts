// bin/run-cli.js, the only place that ends the process: it ends it with main()'s code as soon as
// the output is out, all of it, whatever still holds the event loop (a stray timer or socket).

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.js';

const RUN_CLI = pathToFileURL(join(REPO_ROOT, 'bin/run-cli.js')).href;

/** Runs runCli with a main() given as source; reads stdout slowly when asked to. */
function runWith(mainSource: string, options: { slowReader?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const script = `import { runCli } from ${JSON.stringify(RUN_CLI)};\nawait runCli(${mainSource}, []);`;
  const started = Date.now();
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  if (options.slowReader) {
    // Pauses between reads: the writer must wait for the pipe to drain.
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 2);
    });
  } else child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  return new Promise((resolveRun) => child.once('close', (code) => resolveRun({ code, stdout, stderr, ms: Date.now() - started })));
}

describe('runCli', () => {
  it("exits with main()'s code once its output is written, though a timer still holds the event loop", async () => {
    // A ref'd interval would keep a natural exit waiting for ever; the 2 s fallback is not needed either.
    const result = await runWith(`async (argv, io) => { setInterval(() => {}, 1000); io.stdout.write('done\\n'); return 3; }`);
    expect(result).toMatchObject({ code: 3, stdout: 'done\n' });
    expect(result.ms).toBeLessThan(1900);
  });

  it('writes every byte of a large output to a slow reader before it exits', async () => {
    const result = await runWith(`async (argv, io) => { for (let i = 0; i < 64; i++) io.stdout.write(String(i % 10).repeat(16 * 1024)); return 0; }`, { slowReader: true });
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(64 * 16 * 1024);
    expect(result.stdout.slice(-3)).toBe('333');
  });
});
