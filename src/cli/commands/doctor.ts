// `oci-build doctor`: one line per check, each failing one with its fix.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { ExitCode, type ExitCodeValue } from '../../core/errors.js';
import { runCommand } from '../../exec/run-command.js';
import { buildahOptions } from '../../compose.js';
import { checkBuildah, checkRegistry } from '../../image/buildah.js';
import { checkToolchains } from '../../build/code-builder.js';
import { checkSandbox } from '../../exec/sandbox.js';
import { colorEnabled } from '../render/reporter.js';
import type { CliIO } from '../io.js';
import { loadCliConfig } from '../load-config.js';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  /** A failed optional check is a warning: local builds of other languages still work. */
  required: boolean;
  detail?: string;
  fix?: string;
}

export async function doctorCommand(options: { config?: string; json?: boolean; workDir?: string }, io: CliIO): Promise<ExitCodeValue> {
  const config = await loadCliConfig(options.config, io, options.workDir ? { workDir: options.workDir } : {});
  const checks: DoctorCheck[] = [];

  const buildah = await checkBuildah(runCommand, buildahOptions(config));
  checks.push({ name: 'buildah', required: true, ok: buildah.ok, detail: [buildah.version, buildah.detail].filter(Boolean).join(', '), ...(buildah.fix ? { fix: buildah.fix } : {}) });

  const git = await runCommand('git', ['--version']).then(
    (r) => ({ ok: true, detail: r.stdout.trim() }),
    () => ({ ok: false, detail: 'not found' }),
  );
  checks.push({ name: 'git', required: false, ...git, ...(git.ok ? {} : { fix: 'apt-get install -y git (used for Nx affected builds and by the test suite)' }) });

  for (const tool of await checkToolchains(runCommand)) {
    checks.push({ name: tool.name, required: false, ok: tool.ok, ...(tool.version ? { detail: tool.version } : {}), ...(tool.fix ? { fix: tool.fix } : {}) });
  }

  const sandbox = await checkSandbox(config.build.sandbox);
  // Unsandboxed by choice is a warning; bubblewrap chosen and not working stops every build.
  checks.push({ name: 'sandbox', required: !sandbox.warning, ok: sandbox.ok, detail: sandbox.detail, ...(sandbox.fix ? { fix: sandbox.fix } : {}) });

  checks.push(await checkWorkDir(config.workDir));

  if (config.image.registry) {
    const registryHost = config.image.registry.split('/')[0]!;
    const registry = await checkRegistry(registryHost, config.image.tlsVerify);
    checks.push({ name: `registry ${registryHost}`, required: true, ok: registry.ok, ...(registry.detail ? { detail: registry.detail } : {}), ...(registry.fix ? { fix: registry.fix } : {}) });
  }

  const nats = await checkTcp(config.nats.url);
  checks.push({
    name: `nats ${config.nats.url}`,
    required: false,
    ok: nats.ok,
    detail: nats.ok ? 'reachable (needed by serve and worker only)' : nats.detail,
    ...(nats.ok ? {} : { fix: 'Start NATS with JetStream: nats-server -js -sd /var/lib/nats (needed by serve and worker only)' }),
  });

  if (options.json) {
    io.stdout.write(`${JSON.stringify({ checks }, null, 2)}\n`);
  } else {
    const color = colorEnabled(io.stdout, io.env);
    const chalk = color ? (await import('chalk')).default : undefined;
    for (const check of checks) {
      const mark = check.ok ? (chalk?.green('✔') ?? 'ok  ') : check.required ? (chalk?.red('✖') ?? 'FAIL') : (chalk?.yellow('!') ?? 'warn');
      io.stdout.write(`${mark} ${check.name}${check.detail ? `: ${check.detail}` : ''}\n`);
      if (!check.ok && check.fix) io.stdout.write(`    fix: ${check.fix}\n`);
    }
  }
  return checks.some((c) => c.required && !c.ok) ? ExitCode.Unavailable : ExitCode.Success;
}

async function checkWorkDir(workDir: string): Promise<DoctorCheck> {
  const probe = join(workDir, `.doctor-${process.pid}`);
  try {
    await mkdir(workDir, { recursive: true });
    await writeFile(probe, 'ok');
    await rm(probe);
    return { name: 'workDir', required: true, ok: true, detail: `${workDir} is writable` };
  } catch (err) {
    return { name: 'workDir', required: true, ok: false, detail: `${workDir}: ${(err as Error).message}`, fix: 'Set workDir (OCI_BUILD_WORK_DIR or --work-dir) to a writable directory.' };
  }
}

function checkTcp(url: string): Promise<{ ok: boolean; detail: string }> {
  let host = '127.0.0.1';
  let port = 4222;
  try {
    const parsed = new URL(url.split(',')[0]!);
    host = parsed.hostname;
    port = Number(parsed.port || 4222);
  } catch {
    return Promise.resolve({ ok: false, detail: `invalid URL ${url}` });
  }
  return new Promise((resolveCheck) => {
    const socket = netConnect({ host, port, timeout: 2000 });
    const done = (ok: boolean, detail: string) => {
      socket.destroy();
      resolveCheck({ ok, detail });
    };
    socket.once('connect', () => done(true, 'reachable'));
    socket.once('timeout', () => done(false, 'no answer within 2 s'));
    socket.once('error', (err) => done(false, err.message));
  });
}
