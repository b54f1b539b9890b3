// `oci-build cancel ID`: cancel a build of a server (--server): a queued one at once, a running one
// by its worker, which kills its processes. A local build runs in the foreground of its own
// `oci-build build`, which Ctrl-C cancels: there is nothing to send it from here.

import { ExitCode, InputError, UsageError, type ExitCodeValue } from '../../core/errors.js';
import { isFinalStatus } from '../../core/types.js';
import { createLocalStores } from '../../compose.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';
import { serverApi } from '../server-api.js';

export interface CancelOptions {
  config?: string;
  server?: string;
  token?: string;
  reason?: string;
  json?: boolean;
  workDir?: string;
}

interface CancelAnswer {
  jobId: string;
  status: 'cancelled' | 'cancelling';
  cancelledBy: string;
}

export async function cancelCommand(id: string, options: CancelOptions, io: CliIO): Promise<ExitCodeValue> {
  if (options.server) {
    const api = serverApi(options.server, options.token);
    const answer = await api.post<CancelAnswer>(`/builds/${encodeURIComponent(id)}/cancel`, options.reason ? { reason: options.reason } : {});
    if (options.json) io.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    else if (answer.status === 'cancelled') io.stdout.write(`Cancelled build ${id} before it started (cancelledBy ${answer.cancelledBy})\n`);
    else io.stdout.write(`Cancelling build ${id}: its worker stops it and records cancelledBy ${answer.cancelledBy}. Follow it with: oci-build status ${id} --server ${api.origin} --follow\n`);
    return ExitCode.Success;
  }
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const record = await createLocalStores(config).store.get(id);
  if (!record) {
    throw new InputError(`No build with id ${id} in ${config.workDir}`, { hint: 'To cancel a build of a server, pass --server URL (and --token or OCI_BUILD_API_TOKEN).' });
  }
  if (isFinalStatus(record.status)) throw new InputError(`Build ${id} has already ended (${record.status}): there is nothing to cancel`);
  throw new UsageError(`Build ${id} is a local build: it runs in the foreground of its \`oci-build build\`, and only that process can stop it`, {
    hint: 'Press Ctrl-C in its terminal (or send that process SIGTERM): every process of the build is killed and the record says cancelled.',
  });
}
