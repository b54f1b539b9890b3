// JSON logs for the daemons (serve, worker): pino, with secrets redacted before anything is written.
// Redaction is by key name at the depths our log calls use; callers still never pass a whole
// config or request object (a log line names what it needs: jobId, path, status, durationMs).
// Whatever a line says, every secret the process knows is masked out of it as it is written
// (core/secrets.ts): a secret's value under an innocent key, or quoted in an error message.

import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { maskSecrets } from '../core/secrets.js';

export type Logger = PinoLogger;

const SECRET_KEYS = ['authorization', 'cookie', 'secret', 'token', 'password', 'webhookSecret', 'apiTokens', 'x-hub-signature-256', 'x-hub-signature'];

/**
 * `key` and `*.key` for each secret key name (pino's wildcards match one level). Not `*.*.key`:
 * intermediate wildcards made redaction a visible share of the webhook path's CPU, and no log
 * call passes objects nested that deep.
 */
export const REDACT_PATHS: string[] = SECRET_KEYS.flatMap((key) => {
  const plain = /^[A-Za-z_$][\w$]*$/.test(key);
  return plain ? [key, `*.${key}`] : [`["${key}"]`, `*["${key}"]`];
});

/**
 * The top-level secret keys only, for the access log (accessLogger). Any `*.key` path makes pino
 * run a wildcard redactor over every field of every line, primitives included; on the webhook
 * path that was ~35 µs a request (profiled), for lines whose fields are all primitives.
 */
const TOP_LEVEL_REDACT_PATHS: string[] = REDACT_PATHS.filter((p) => !p.startsWith('*'));

export interface LoggerOptions {
  /** `info` unless given; `silent` in tests that do not read logs. */
  level?: string;
  /** Name in every line (`oci-build-serve`, `oci-build-worker`). */
  name?: string;
  /** Where lines go (default daemonDestination(): stdout, buffered). Tests pass a stream to read them back. */
  destination?: DestinationStream;
  /** Fields on every line. */
  base?: Record<string, unknown>;
}

/**
 * Where the daemons' lines go unless told otherwise: stdout (or `dest`, a file descriptor or path),
 * written asynchronously in blocks of up to 4 KiB instead of one synchronous write per line.
 * Under load the access log's write per request was serve's largest cost after NATS (profiled);
 * a slow reader of stdout (a log
 * collector) also no longer blocks the event loop. Lines wait at most 250 ms, and pino flushes its
 * destinations when the process exits; a SIGKILL loses at most those 250 ms of lines (build logs
 * are not these: they go to JetStream).
 */
export function daemonDestination(dest: number | string = 1): DestinationStream {
  const stream = pino.destination({ dest, minLength: 4096, sync: false });
  const timer = setInterval(() => stream.flush(), 250);
  timer.unref();
  stream.once('close', () => clearInterval(timer));
  return stream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.OCI_BUILD_LOG_LEVEL ?? 'info',
      ...(options.name ? { name: options.name } : {}),
      base: { pid: process.pid, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      // On the serialised line, children included. With no secret registered this is a call
      // that returns its argument; with some, one regular-expression scan of the line.
      hooks: { streamWrite: maskSecrets },
    },
    options.destination ?? daemonDestination(),
  );
}

/**
 * A child for the per-request access lines of `serve`: their fields are fixed by http-server.ts
 * and are all strings, numbers and booleans (method, path, status, durationMs, jobId, …), so a
 * nested secret cannot occur in them; top-level secret keys are still redacted. Created once, not
 * per request (a pino child costs a bindings serialisation).
 */
export function accessLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: TOP_LEVEL_REDACT_PATHS, censor: '[redacted]' } });
}
