// Every place a line is written masks the process's secrets: a command's output, the file log
// and its tee, the JetStream log (real nats-server), the daemons' JSON lines, typed errors (and so
// records), the CLI's error output, and the secrets come from the compiled config.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/config.js';
import { CommandFailedError, InputError, describeError } from '../../src/core/errors.js';
import { maskSecrets, registerSecret } from '../../src/core/secrets.js';
import { loadCliConfig } from '../../src/cli/load-config.js';
import { reportError } from '../../src/cli/main.js';
import type { CliIO } from '../../src/cli/io.js';
import { runCommand } from '../../src/exec/run-command.js';
import { closeNats, connectNats, type NatsContext } from '../../src/queue/nats.js';
import { JetStreamLogStore, readLog } from '../../src/queue/log-stream.js';
import { accessLogger, createLogger } from '../../src/log/logger.js';
import { FileLogStore } from '../../src/store/file-log-store.js';
import { tempDir, type TempDir } from '../helpers/fixtures.js';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';

const SECRET = 'tok_Sink5ecret_0123456789abcdef';
/** The secret the way a Git client sends it, inside a longer base64 string. */
const BASIC = Buffer.from(`x-access-token:${SECRET}`).toString('base64');
const FORMS = [SECRET, encodeURIComponent(SECRET), Buffer.from(SECRET).toString('base64'), BASIC];

function expectNoSecret(text: string): void {
  for (const form of FORMS) expect(text).not.toContain(form);
  expect(text).not.toContain(SECRET.slice(4, 20));
}

function memoryStream(): Writable & { text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return Object.assign(stream, { text: () => chunks.join('') });
}

let tmp: TempDir;

beforeAll(async () => {
  tmp = await tempDir();
});
afterAll(async () => {
  await tmp?.cleanup();
});

describe('secrets from the config', () => {
  it('loadCliConfig registers git.token, the webhook secret, API tokens, NATS password and token, and OCI_BUILD_API_TOKEN', async () => {
    const values = {
      OCI_BUILD_GIT_TOKEN: 'cfg-git-token-1111',
      OCI_BUILD_SERVER_WEBHOOK_SECRET: 'cfg-webhook-secret-2222',
      OCI_BUILD_SERVER_API_TOKENS: 'cfg-api-token-3333,cfg-api-token-4444',
      OCI_BUILD_NATS_PASSWORD: 'cfg-nats-password-5555',
      OCI_BUILD_NATS_TOKEN: 'cfg-nats-token-6666',
      OCI_BUILD_API_TOKEN: 'cli-api-token-7777',
    };
    const io: CliIO = {
      stdout: memoryStream(),
      stderr: memoryStream(),
      env: { ...values, OCI_BUILD_NATS_USER: 'natsuser', OCI_BUILD_NATS_URL: 'nats://u:url-pass-8888@127.0.0.1:4222, nats://url-token-9999@127.0.0.1:4223' },
      cwd: tmp.path,
    };
    expect(maskSecrets('cfg-git-token-1111')).toBe('cfg-git-token-1111');
    await loadCliConfig(undefined, io, { workDir: join(tmp.path, 'wd') });
    const line = `${Object.values(values).join(' ')} natsuser`;
    expect(maskSecrets(line)).toBe('*** *** ***,*** *** *** *** natsuser');
    expect(maskSecrets(`NATS at ${io.env.OCI_BUILD_NATS_URL}`)).toBe('NATS at nats://u:***@127.0.0.1:4222, nats://***@127.0.0.1:4223');
  });
});

describe('sinks', () => {
  beforeAll(() => registerSecret(SECRET));

  it('runCommand masks a registered secret in every form, in the log, the result and the error', async () => {
    const lines: string[] = [];
    const script = `printf '%s\\n' "$S"; printf '%s' "x-access-token:$S" | base64 -w0; echo; printf '%s\\n' "$S" >&2`;
    const result = await runCommand('sh', ['-c', script], { env: { S: SECRET }, log: { write: (line) => lines.push(line) } });
    expect(lines).toHaveLength(3);
    expect(lines.every((line) => line.includes('***'))).toBe(true);
    expectNoSecret(JSON.stringify([lines, result.stdout, result.stderr]));

    const failed = await runCommand('sh', ['-c', 'echo "bad token $S" >&2; exit 4', SECRET], { env: { S: SECRET } }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CommandFailedError);
    expect((failed as Error).message).toContain('bad token ***');
    expectNoSecret(JSON.stringify({ message: (failed as Error).message, command: (failed as CommandFailedError).command }));
  });

  it('the file log and its tee never hold the secret', async () => {
    const teed: string[] = [];
    const store = new FileLogStore(join(tmp.path, 'logs'), { tee: { write: (line) => teed.push(line) } });
    const log = await store.open('20260101-000000-abcdef');
    log.write(`token=${SECRET}`);
    log.write(`Authorization: Basic ${BASIC}`, 'system');
    await log.close();
    const content = await readFile(store.pathOf('20260101-000000-abcdef'), 'utf8');
    expect(content).toBe('token=***\nAuthorization: Basic eC1hY2Nlc3MtdG9rZW46***\n');
    expectNoSecret(content + teed.join('\n'));
    expect(teed).toHaveLength(2);
  });

  it("the daemons' JSON lines are masked whatever the key, nested or in the message", () => {
    const destination = memoryStream();
    const logger = createLogger({ destination, name: 'test' });
    logger.child({ jobId: 'j1' }).warn({ detail: `fetch failed for https://u:${encodeURIComponent(SECRET)}@h/`, deep: { deeper: { x: BASIC } } }, `oops ${SECRET}`);
    const text = destination.text();
    expectNoSecret(text);
    const line = JSON.parse(text) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'warn', jobId: 'j1', msg: 'oops ***', detail: 'fetch failed for https://u:***@h/' });

    // serve's access logger (a child with its own redaction) masks as well.
    const accessDestination = memoryStream();
    accessLogger(createLogger({ destination: accessDestination })).info({ path: `/x?t=${SECRET}`, status: 401 }, 'request');
    expect(JSON.parse(accessDestination.text())).toMatchObject({ path: '/x?t=***', status: 401 });
  });

  it('typed errors (and so records), describeError and the CLI error output are masked', () => {
    const error = new InputError(`cannot use ${SECRET}`, { hint: `check ${BASIC}` });
    expect(error.message).toBe('cannot use ***');
    expectNoSecret(JSON.stringify(error.toJSON()));
    expect(describeError(new Error(`plain ${SECRET}`))).toBe('plain ***');
    expect(describeError(`thrown string ${SECRET}`)).toBe('thrown string ***');

    const stderr = memoryStream();
    const io: CliIO = { stdout: memoryStream(), stderr, env: {}, cwd: tmp.path };
    expect(reportError(error, io)).toBe(2);
    expect(reportError(new TypeError(`internal ${SECRET}`), io)).toBe(1);
    expect(stderr.text()).toContain('internal error (please report it): TypeError: internal ***');
    expectNoSecret(stderr.text());
  });
});

describe('the JetStream log', () => {
  let server: NatsServer;
  let ctx: NatsContext;

  beforeAll(async () => {
    registerSecret(SECRET);
    server = await startNatsServer();
    ctx = await connectNats({ ...DEFAULTS.nats, url: server.url }, { name: 'secret-sinks' });
  });
  afterAll(async () => {
    if (ctx) await closeNats(ctx);
    await server?.stop();
  });

  it('stores no secret, also in a line long enough to be cut', async () => {
    const store = new JetStreamLogStore(ctx);
    const log = await store.open('masked-log');
    log.write(`token=${SECRET}\nsecond ${encodeURIComponent(SECRET)}`);
    // The cut at 64 KiB falls inside the secret unless the line is masked first.
    log.write(`${'x'.repeat(64 * 1024 - 10)}${SECRET}`, 'system');
    await log.close();
    const lines: string[] = [];
    for await (const line of readLog(ctx, 'masked-log', { follow: false })) lines.push(line);
    expect(lines.slice(0, 2)).toEqual(['token=***', 'second ***']);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe(`${'x'.repeat(64 * 1024 - 10)}***`);
    expectNoSecret(lines.join('\n'));
  });
});
