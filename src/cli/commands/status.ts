// `oci-build status [ID]`: recent builds, one build, or its live log; from the local work
// directory or from a server's HTTP API (--server).

import { open } from 'node:fs/promises';
import { ExitCode, InputError, ServiceUnavailableError, UsageError, type ExitCodeValue } from '../../core/errors.js';
import type { BuildListFilter } from '../../core/ports.js';
import { isFinalStatus, JOB_STATUSES, type BuildRecord, type JobStatus } from '../../core/types.js';
import { sleep } from '../../core/retry.js';
import { createLocalStores } from '../../compose.js';
import { onShutdownSignals } from '../../exec/shutdown-signals.js';
import { colorEnabled } from '../render/reporter.js';
import { renderBuildDetails, renderStatusTable } from '../render/status-table.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

export interface StatusOptions {
  config?: string;
  server?: string;
  token?: string;
  limit?: number;
  repo?: string;
  branch?: string;
  status?: string;
  follow?: boolean;
  workers?: boolean;
  json?: boolean;
  workDir?: string;
}

/** How often `status ID --follow` looks at a local build's log file and record. */
const LOG_POLL_MS = 250;

/** Where builds are read from: the local store or a server. */
interface BuildSource {
  list(filter: BuildListFilter): Promise<BuildRecord[]>;
  get(id: string): Promise<BuildRecord | undefined>;
  /** Writes the log to `out`; with follow, until the build ends. */
  streamLog(id: string, follow: boolean, write: (text: string) => void, signal: AbortSignal): Promise<void>;
}

export async function statusCommand(id: string | undefined, options: StatusOptions, io: CliIO): Promise<ExitCodeValue> {
  if (options.status && !JOB_STATUSES.includes(options.status as JobStatus)) {
    throw new UsageError(`--status must be one of ${JOB_STATUSES.join(', ')}, got ${JSON.stringify(options.status)}`);
  }
  if (options.follow && !id) throw new UsageError('--follow needs a build id: oci-build status ID --follow');
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});

  if (options.workers) {
    const { connectNats } = await import('../../queue/nats.js');
    const { listWorkers } = await import('../../queue/workers.js');
    // A cluster that does not answer yet is waited for (up to 30 s): say so rather than hang silently.
    const nats = await connectNats(config.nats, { name: 'oci-build-status', logger: { warn: (_fields, msg) => io.stderr.write(`${msg}\n`) } });
    try {
      const workers = await listWorkers(nats);
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ workers }, null, 2)}\n`);
      } else if (workers.length === 0) {
        io.stdout.write(`No live workers on ${config.nats.url}\n`);
      } else {
        for (const worker of workers) {
          io.stdout.write(`${worker.name}  concurrency ${worker.concurrency}  running ${worker.running.length}\n`);
          for (const job of worker.running) io.stdout.write(`  ${job.jobId}  ${job.repository}${job.branch ? `@${job.branch}` : ''}  since ${job.startedAt}\n`);
        }
      }
    } finally {
      await nats.nc.close();
    }
    return ExitCode.Success;
  }

  const source: BuildSource = options.server ? serverSource(options.server, options.token) : localSource(config);
  const color = colorEnabled(io.stdout, io.env);

  if (!id) {
    const filter: BuildListFilter = {
      limit: options.limit ?? 20,
      ...(options.repo ? { repo: options.repo } : {}),
      ...(options.branch ? { branch: options.branch } : {}),
      ...(options.status ? { status: options.status as JobStatus } : {}),
    };
    const records = await source.list(filter);
    if (options.json) io.stdout.write(`${JSON.stringify({ builds: records }, null, 2)}\n`);
    else if (records.length === 0) io.stdout.write('No builds yet. Run `oci-build build ./repo` to make one.\n');
    else io.stdout.write(renderStatusTable(records, { now: new Date(), color }));
    return ExitCode.Success;
  }

  const record = await source.get(id);
  if (!record) {
    throw new InputError(`No build with id ${id}${options.server ? ` on ${options.server}` : ` in ${config.workDir}`}`, {
      hint: 'Run `oci-build status` to list recent builds.',
    });
  }
  if (options.follow) {
    // Ctrl-C (or SIGTERM) stops following; the build itself goes on. A second signal ends the process.
    const controller = new AbortController();
    const removeSignalHandlers = onShutdownSignals({ graceful: () => controller.abort() });
    try {
      await source.streamLog(id, true, (text) => io.stdout.write(text), controller.signal);
    } finally {
      removeSignalHandlers();
    }
    const final = (await source.get(id)) ?? record;
    if (options.json) io.stdout.write(`${JSON.stringify(final, null, 2)}\n`);
    else io.stdout.write(`\n${renderBuildDetails(final, { color })}`);
    return final.status === 'succeeded' || final.status === 'skipped' || !isFinalStatus(final.status) ? ExitCode.Success : ExitCode.BuildFailed;
  }
  if (options.json) io.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
  else io.stdout.write(renderBuildDetails(record, { color }));
  return ExitCode.Success;
}

function localSource(config: Awaited<ReturnType<typeof loadCliConfig>>): BuildSource {
  const { store } = createLocalStores(config);
  return {
    list: (filter) => store.list(filter),
    get: (id) => store.get(id),
    async streamLog(id, follow, write, signal) {
      // Tail the log file until the record is final (the build runs in another process).
      const record = await store.get(id);
      const path = record?.logPath;
      if (!path) return;
      let position = 0;
      for (;;) {
        const finished = !follow || isFinalStatus((await store.get(id))?.status ?? 'failed');
        const handle = await open(path, 'r').catch(() => undefined);
        if (handle) {
          try {
            const { size } = await handle.stat();
            if (size > position) {
              const buffer = Buffer.alloc(size - position);
              await handle.read(buffer, 0, buffer.length, position);
              position = size;
              write(buffer.toString('utf8'));
            }
          } finally {
            await handle.close();
          }
        }
        if (finished || signal.aborted) return;
        await sleep(LOG_POLL_MS, signal);
      }
    },
  };
}

function serverSource(server: string, token: string | undefined): BuildSource {
  let base: URL;
  try {
    base = new URL(server);
  } catch {
    throw new UsageError(`--server must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(server)}`);
  }
  if (!token) throw new UsageError('--server needs an API token', { hint: 'Pass --token TOKEN or set OCI_BUILD_API_TOKEN (one of the server\'s server.apiTokens).' });

  const request = async (path: string, signal?: AbortSignal): Promise<Response> => {
    let response: Response;
    try {
      response = await fetch(new URL(path, base), { headers: { authorization: `Bearer ${token}` }, ...(signal ? { signal } : {}) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ServiceUnavailableError(`Cannot reach the oci-build server at ${base.origin}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`, {
        hint: 'Check --server, and that `oci-build serve` runs there.',
      });
    }
    if (response.status === 401 || response.status === 403) {
      throw new UsageError(`The server at ${base.origin} refused the API token (HTTP ${response.status})`, {
        hint: 'Check --token / OCI_BUILD_API_TOKEN against the server\'s server.apiTokens.',
      });
    }
    return response;
  };
  const json = async <T>(response: Response, what: string): Promise<T> => {
    if (!response.ok) throw new ServiceUnavailableError(`The server answered HTTP ${response.status} for ${what}`);
    return (await response.json()) as T;
  };

  return {
    async list(filter) {
      const params = new URLSearchParams();
      if (filter.limit) params.set('limit', String(filter.limit));
      if (filter.repo) params.set('repo', filter.repo);
      if (filter.branch) params.set('branch', filter.branch);
      if (filter.status) params.set('status', filter.status);
      const body = await json<{ builds: BuildRecord[] }>(await request(`/builds?${params}`), 'the build list');
      return body.builds;
    },
    async get(id) {
      const response = await request(`/builds/${encodeURIComponent(id)}`);
      if (response.status === 404) return undefined;
      return json<BuildRecord>(response, `build ${id}`);
    },
    async streamLog(id, follow, write, signal) {
      const response = await request(`/builds/${encodeURIComponent(id)}/logs${follow ? '?follow=1' : ''}`, signal);
      if (!response.ok || !response.body) return;
      const decoder = new TextDecoder();
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) write(decoder.decode(chunk, { stream: true }));
      } catch (err) {
        if (!signal.aborted) throw err;
      }
    },
  };
}
