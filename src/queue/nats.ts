// The NATS connection shared by `serve` and `worker`: one connection, the JetStream client and
// manager, and the status KV bucket. connectNats() also makes sure the streams and the bucket exist
// with the settings the rest of the code relies on (idempotent: every process may call it).

import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  DiscardPolicy,
  nkeyAuthenticator,
  nanos,
  RetentionPolicy,
  StorageType,
  type ConnectionOptions,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type NatsConnection,
  type StreamConfig,
} from 'nats';
import { ConfigError, ServiceUnavailableError, describeError, isOciBuildError } from '../core/errors.js';
import { retry, type BackoffPolicy } from '../core/retry.js';
import { registerSecrets } from '../core/secrets.js';
import { JetStreamPublisher } from './js-publisher.js';
import { isJetStreamSettling, isJsError, isNoResponders, jsErrorCode, JsErrorCode } from './nats-errors.js';
import type { Config } from '../config/config.js';

export interface NatsContext {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
  /** JetStream publishes of the webhook path (queued records, jobs); see js-publisher.ts. */
  publisher: JetStreamPublisher;
  config: Config['nats'];
}

/** Subjects of the build logs: `oci-build.logs.<build id token>`. */
export const LOG_SUBJECT_PREFIX = 'oci-build.logs';
/** Logs are kept a week; the records (KV) stay. */
export const LOG_MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
/**
 * Webhook redeliveries are dropped by `Nats-Msg-Id` within this window. GitHub retries within
 * minutes; a day also covers most manual redeliveries. Beyond it (and after a server restart,
 * which rebuilds the window from the messages still stored), the KV record is what dedupes.
 */
export const DUPLICATE_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * How long a process that has just connected keeps setting up what it needs of JetStream (the
 * streams and buckets here, a worker's consumer) while JetStream is settling (isJetStreamSettling):
 * on a cluster that has just started, or whose leaders are being elected, a first request can go
 * unanswered; a daemon should not exit for that. An answer that refuses is not retried.
 */
export const JETSTREAM_SETUP_WAIT_MS = 30_000;
export const JETSTREAM_SETUP_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 2_000, jitter: 0.5 };

const START_HINT =
  'Start a NATS server with JetStream enabled (`nats-server -js -sd /var/lib/nats`), or point nats.url (OCI_BUILD_NATS_URL) at one.';

/**
 * Makes an id usable as one subject token / KV key token: characters outside `[A-Za-z0-9_-]`
 * (dots, wildcards, spaces) become `=XX` hex escapes, so distinct ids stay distinct.
 */
export function subjectToken(id: string): string {
  return id.replace(/[^A-Za-z0-9_-]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `=${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

/** A NATS client error (timeout, disconnected, no responders) as a transient ServiceUnavailableError. */
export function natsUnavailable(what: string, err: unknown, config?: Pick<Config['nats'], 'url'>): ServiceUnavailableError {
  if (err instanceof ServiceUnavailableError) return err;
  return new ServiceUnavailableError(`${what}${config ? ` (NATS at ${config.url})` : ''}: ${describeError(err)}`, {
    cause: err,
    hint: 'NATS or JetStream is unreachable; the operation can be retried once it is back.',
  });
}

export async function connectNats(
  config: Config['nats'],
  options: { name?: string; maxReconnectAttempts?: number; logger?: { warn(fields: object, msg: string): void }; setupWaitMs?: number } = {},
): Promise<NatsContext> {
  const connectOptions: ConnectionOptions = {
    servers: config.servers ?? config.url.split(',').map((s) => s.trim()).filter(Boolean),
    ...(options.name ? { name: options.name } : {}),
    // A daemon outlives NATS restarts: keep reconnecting, and buffer what is published meanwhile.
    reconnect: true,
    maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    timeout: 5_000,
    // nats.js otherwise builds two Error objects (stack captures) for every request/publish, to
    // attach the caller's stack to a possible timeout: profiled at ~50 µs per JetStream publish on
    // the webhook path (serve does two per webhook). Our errors already say what failed
    // (natsUnavailable names the operation), so the async stack is not worth that.
    noAsyncTraces: true,
    ...(config.user ? { user: config.user } : {}),
    ...(config.password ? { pass: config.password } : {}),
    ...(config.token ? { token: config.token } : {}),
    ...authenticationOf(config),
  };
  let nc: NatsConnection;
  try {
    nc = await connect(connectOptions);
  } catch (err) {
    throw new ServiceUnavailableError(`Cannot connect to NATS at ${config.url}: ${describeError(err)}`, { cause: err, hint: START_HINT });
  }
  // A server without JetStream answers its API with "no responders", which is also what a
  // JetStream still starting says: the server's INFO tells the two apart. (One without JetStream in
  // a cluster where others have it forwards the API to them, so only its "no responders" is final.)
  const withoutJetStream = (err: unknown) => isNoResponders(err) && !nc.info?.jetstream;
  try {
    const js = nc.jetstream({ timeout: 5_000 });
    const { jsm, kv } = await retry(
      async () => {
        const jsm = await nc.jetstreamManager({ timeout: 5_000 });
        await ensureJobStream(jsm, config);
        await ensureLogStream(jsm, config);
        return { jsm, kv: await openBucket({ js, jsm, config }, config.statusBucket) };
      },
      {
        policy: JETSTREAM_SETUP_BACKOFF,
        deadlineMs: options.setupWaitMs ?? JETSTREAM_SETUP_WAIT_MS,
        retryable: (err): err is unknown => isJetStreamSettling(err) && !withoutJetStream(err),
        onRetry: (err, delayMs, attempt) =>
          options.logger?.warn({ nats: config.url, attempt, retryInMs: delayMs, err: describeError(err) }, 'JetStream is not answering yet; setting up its streams again'),
      },
    );
    return { nc, js, jsm, kv, publisher: new JetStreamPublisher(nc), config };
  } catch (err) {
    await nc.close().catch(() => undefined);
    if (isOciBuildError(err)) throw err;
    if (withoutJetStream(err)) {
      throw new ServiceUnavailableError(`NATS at ${config.url} has no usable JetStream: the server runs without it`, { cause: err, hint: START_HINT });
    }
    if (isJetStreamSettling(err)) {
      const waited = Math.round((options.setupWaitMs ?? JETSTREAM_SETUP_WAIT_MS) / 1000);
      throw new ServiceUnavailableError(`JetStream at ${config.url} did not answer the setup of its streams within ${waited} s: ${describeError(err)}`, {
        cause: err,
        hint: 'On a cluster, check that its nodes are up and have elected their leaders (`nats server report jetstream`), then start again.',
      });
    }
    throw new ServiceUnavailableError(`NATS at ${config.url} has no usable JetStream: ${describeError(err)}`, { cause: err, hint: START_HINT });
  }
}

/**
 * The secrets in a NATS credentials file (the user JWT and the NKey seed between their `-----`
 * delimiters) or a seed file: every line that is one word, neither a delimiter nor a banner. Registered
 * with the masker when read, so no log line, record or error shows them.
 */
export function natsFileSecrets(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length >= 16 && !/\s/.test(line) && !line.startsWith('-') && !line.startsWith('*'));
}

/** TLS files and a credentials file or NKey seed (read when connecting: a bad file is a clear error). */
export function authenticationOf(config: Config['nats']): Partial<ConnectionOptions> {
  const read = (what: string, file: string) => {
    try {
      const content = readFileSync(file);
      registerSecrets(natsFileSecrets(content.toString('utf8')));
      return content;
    } catch (err) {
      const key = what === 'the NATS credentials file' ? 'nats.credsFile' : 'nats.nkeySeedFile';
      throw new ConfigError(`Cannot read ${what}`, [{ path: key, message: `${file}: ${describeError(err)}; check the path and its permissions` }]);
    }
  };
  const options: Partial<ConnectionOptions> = {};
  if (config.tls) {
    options.tls = {
      ...(config.tls.ca ? { caFile: config.tls.ca } : {}),
      ...(config.tls.cert ? { certFile: config.tls.cert } : {}),
      ...(config.tls.key ? { keyFile: config.tls.key } : {}),
    };
  }
  if (config.credsFile) options.authenticator = credsAuthenticator(read('the NATS credentials file', config.credsFile));
  else if (config.nkeySeedFile) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(read('the NATS NKey seed file', config.nkeySeedFile).toString('utf8').trim()));
  return options;
}

/**
 * A KV bucket with the configured replicas, created when missing; an existing one with another
 * replica count is updated (JetStream moves the data), so `nats.replicas: 3` on a cluster holds.
 */
export async function openBucket(ctx: Pick<NatsContext, 'js' | 'jsm' | 'config'>, name: string): Promise<KV> {
  const replicas = ctx.config.replicas ?? 1;
  const kv = await ctx.js.views.kv(name, { storage: StorageType.File, history: 1, replicas });
  const stream = `KV_${name}`;
  const current = (await ctx.jsm.streams.info(stream)).config;
  if ((current.num_replicas || 1) !== replicas) await updateReplicas(ctx.jsm, current, replicas);
  return kv;
}

async function updateReplicas(jsm: JetStreamManager, current: StreamConfig, replicas: number): Promise<void> {
  try {
    await jsm.streams.update(current.name, { ...current, num_replicas: replicas });
  } catch (err) {
    // No answer yet is the caller's to retry; an answer that refuses is about the replicas.
    if (isJetStreamSettling(err)) throw err;
    throw replicasError(current.name, current.num_replicas || 1, replicas, err);
  }
}

function replicasError(stream: string, from: number | undefined, replicas: number, err: unknown): ServiceUnavailableError {
  return new ServiceUnavailableError(`Cannot ${from === undefined ? 'create' : 'change'} stream ${stream} ${from === undefined ? 'with' : `from ${from} to`} ${replicas} replicas: ${describeError(err)}`, {
    cause: err,
    hint: `nats.replicas: ${replicas} needs a JetStream cluster of at least ${replicas} nodes; set nats.replicas (OCI_BUILD_NATS_REPLICAS) to what the servers have${from === undefined ? '' : `, or change the stream with \`nats stream edit ${stream} --replicas ${replicas}\``}.`,
  });
}

/** Drains the connection (flushes buffered publishes) and closes it. */
export async function closeNats(ctx: NatsContext): Promise<void> {
  ctx.publisher.close();
  if (ctx.nc.isClosed()) return;
  try {
    await ctx.nc.drain();
  } catch {
    await ctx.nc.close().catch(() => undefined);
  }
}

async function ensureStream(jsm: JetStreamManager, want: Partial<StreamConfig> & { name: string; num_replicas: number }, compare: (current: StreamConfig) => boolean): Promise<void> {
  let current: StreamConfig | undefined;
  try {
    current = (await jsm.streams.info(want.name)).config;
  } catch (err) {
    if (!isJsError(err, JsErrorCode.StreamNotFound)) throw err;
  }
  if (!current) {
    try {
      await jsm.streams.add(want);
      return;
    } catch (err) {
      if (want.num_replicas > 1 && jsErrorCode(err) !== undefined && !isJetStreamSettling(err) && !isJsError(err, JsErrorCode.StreamNameInUse)) {
        throw replicasError(want.name, undefined, want.num_replicas, err);
      }
      // Another process created it between our look and our add (with other settings: an add
      // of the same settings succeeds).
      if (!isJsError(err, JsErrorCode.StreamNameInUse)) throw err;
      current = (await jsm.streams.info(want.name)).config;
    }
  }
  if ((current.num_replicas || 1) !== want.num_replicas) {
    await updateReplicas(jsm, current, want.num_replicas);
    current = { ...current, num_replicas: want.num_replicas };
  }
  if (!compare(current)) {
    // Retention and storage cannot change on a live stream; subjects are added, never dropped
    // (messages on an old subject must stay reachable).
    const { name, retention: _retention, storage: _storage, ...update } = want;
    if (update.subjects) update.subjects = [...new Set([...current.subjects, ...update.subjects])];
    await jsm.streams.update(name, update);
  }
}

async function ensureJobStream(jsm: JetStreamManager, config: Config['nats']): Promise<void> {
  const duplicateWindow = nanos(DUPLICATE_WINDOW_MS);
  await ensureStream(
    jsm,
    {
      name: config.stream,
      // Branch jobs go to `<subject>.<jobKey>` (see job-queue.ts), the others to `<subject>`.
      subjects: [config.subject, `${config.subject}.>`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: duplicateWindow,
      discard: DiscardPolicy.Old,
      num_replicas: config.replicas ?? 1,
    },
    (c) => c.subjects.includes(config.subject) && c.subjects.includes(`${config.subject}.>`) && c.duplicate_window >= nanos(2 * 60 * 1000),
  );
}

async function ensureLogStream(jsm: JetStreamManager, config: Config['nats']): Promise<void> {
  await ensureStream(
    jsm,
    {
      name: config.logStream,
      subjects: [`${LOG_SUBJECT_PREFIX}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: nanos(LOG_MAX_AGE_MS),
      discard: DiscardPolicy.Old,
      num_replicas: config.replicas ?? 1,
    },
    (c) => c.subjects.includes(`${LOG_SUBJECT_PREFIX}.>`) && c.max_age === nanos(LOG_MAX_AGE_MS),
  );
}
