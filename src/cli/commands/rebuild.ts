// `oci-build rebuild ID`: build a build's commit again, as a new build with `rebuildOf`.
// --server: the server queues it (POST /builds/:id/rebuild). Locally: the record's Git remote at
// its commit, in the foreground like `oci-build build URL --ref COMMIT` (a build of a directory
// names no remote, and the directory may have changed since: build it again with `build DIR`).

import { ExitCode, InputError, type ExitCodeValue } from '../../core/errors.js';
import { createLocalStores } from '../../compose.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';
import { serverApi } from '../server-api.js';
import { buildCommand } from './build.js';

export interface RebuildOptions {
  config?: string;
  server?: string;
  token?: string;
  json?: boolean;
  verbose?: boolean;
  workDir?: string;
}

interface RebuildAnswer {
  jobId: string;
  status: string;
  rebuildOf: string;
}

const SHA = /^[0-9a-f]{40}$/;

export async function rebuildCommand(id: string, options: RebuildOptions, io: CliIO): Promise<ExitCodeValue> {
  if (options.server) {
    const api = serverApi(options.server, options.token);
    const answer = await api.post<RebuildAnswer>(`/builds/${encodeURIComponent(id)}/rebuild`);
    if (options.json) io.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    else io.stdout.write(`Queued build ${answer.jobId}, a rebuild of ${id}. Follow it with: oci-build status ${answer.jobId} --server ${api.origin} --follow\n`);
    return ExitCode.Success;
  }
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const record = await createLocalStores(config).store.get(id);
  if (!record) {
    throw new InputError(`No build with id ${id} in ${config.workDir}`, { hint: 'To rebuild a build of a server, pass --server URL (and --token or OCI_BUILD_API_TOKEN).' });
  }
  const { cloneUrl, commit } = record.repository;
  if (!cloneUrl || !/^https?:\/\//i.test(cloneUrl) || !commit || !SHA.test(commit)) {
    throw new InputError(`Build ${id} cannot be rebuilt: its record names no http(s) Git remote and commit (it was built from a directory)`, {
      hint: 'Run `oci-build build DIR` in that directory again.',
    });
  }
  io.stderr.write(`Rebuilding ${cloneUrl} at ${commit.slice(0, 12)} (build ${id}${record.repository.dirty ? ', which had uncommitted changes: only the commit is built' : ''})\n`);
  return buildCommand(cloneUrl, { ref: commit, rebuildOf: id, ...pick(options) }, io);
}

function pick(options: RebuildOptions) {
  return {
    ...(options.config ? { config: options.config } : {}),
    ...(options.json ? { json: true } : {}),
    ...(options.verbose ? { verbose: true } : {}),
    ...(options.workDir ? { workDir: options.workDir } : {}),
  };
}
