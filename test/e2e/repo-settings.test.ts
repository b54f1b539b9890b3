// A repository's `.oci-build.yaml` end to end, as users meet it: the built CLI on a local directory
// and on a Git URL (real Git over HTTP), and a webhook through real `serve` + `worker` processes on a
// real nats-server. The file changes the build command, the Dockerfile path, the image name and adds
// tags; a bad file fails with every problem listed (exit 2; a failed detect phase on a worker); an
// operator key in it is refused by name; a webhook push of a branch it excludes ends `skipped`.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv, runCli } from '../helpers/cli.js';
import { fixtureRepo, git, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { sendPush } from '../helpers/github-push.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { stopDaemons } from '../helpers/daemons.js';

const SECRET = 'repo-settings-webhook-secret';
const TOKEN = 'repo-settings-api-token-0123456789';
const PREFIX = '127.0.0.1:5999/ci';

// The build command writes to out/ (the Go default is dist/) and prints a variable of the file's
// env; the Containerfile is not where detection looks, and copies from out/.
const SETTINGS = `projects:
  .:
    command: [sh, -c, 'echo "env=$FROM_FILE" && mkdir -p out && CGO_ENABLED=0 go build -trimpath -o out/ ./...']
    dockerfile: build/Containerfile
    image: payments-api
    env: { FROM_FILE: from-the-file }
image:
  tags: ["{branch}-{shortSha}", { tag: latest, defaultBranch: true }]
branches: { include: [main] }
`;
const CONTAINERFILE = 'FROM scratch\nCOPY out/sample-go-repo /app\nENTRYPOINT ["/app"]\n';
const BAD_SETTINGS = `projects:
  .:
    command: make build
    dockerfile: ../outside/Dockerfile
image:
  registry: evil.example/steal
  tags: ["{nope}"]
`;

let sandbox: TempDir;
let nats: NatsServer;
let gitServer: GitServer;
let serveUrl: string;
let daemonEnv: Record<string, string>;
let good: FixtureRepo;
let bad: FixtureRepo;
const daemons: ChildProcess[] = [];
let runs = 0;
/** The webhook jobs, pushed as soon as the daemons answer: the worker loads its modules from dist/ once, at its first job. */
const jobs: Record<'main' | 'excluded' | 'bad', string> = { main: '', excluded: '', bad: '' };

async function withSettings(name: string, settings: string, files: Record<string, string> = {}): Promise<FixtureRepo> {
  const repo = await fixtureRepo('sample-go-repo');
  writeFileSync(join(repo.dir, '.oci-build.yaml'), settings);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(repo.dir, path, '..'), { recursive: true });
    writeFileSync(join(repo.dir, path), text);
  }
  const commit = repo.commitAll('with .oci-build.yaml');
  git(repo.dir, ['branch', 'feature/x']);
  await gitServer.addRepo(`acme/${name}`, repo.dir);
  return { ...repo, commit };
}

/** `oci-build build … --json` in a work directory of its own (no build reuses another's image). */
async function cliBuild(source: string): Promise<{ code: number; record: BuildRecord; stderr: string; env: Record<string, string> }> {
  const env = { ...isolatedEnv(join(sandbox.path, `cli-${runs++}`)), OCI_BUILD_IMAGE_REGISTRY: PREFIX };
  const result = await runCli(['build', source, '--json'], { env });
  return { code: result.code, record: JSON.parse(result.stdout) as BuildRecord, stderr: result.stderr, env };
}

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(`${serveUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: (await response.json()) as T };
}

/** A signed push of `repo` (served as acme/<name>) to `branch`; push.json names main as the default branch. */
async function push(repo: FixtureRepo, name: string, branch: string): Promise<string> {
  const answer = await sendPush({ serveUrl, secret: SECRET, gitServer, name, commit: repo.commit, branch });
  expect(answer.status).toBe(202);
  return answer.body.jobId as string;
}

async function finished(id: string): Promise<BuildRecord> {
  let record: BuildRecord | undefined;
  await waitFor(
    async () => {
      const { status, body } = await api<BuildRecord>(`/builds/${id}`);
      record = status === 200 ? body : undefined;
      return record !== undefined && ['succeeded', 'failed', 'cancelled', 'skipped'].includes(record.status);
    },
    { timeoutMs: 170_000, intervalMs: 250, what: `build ${id} to finish` },
  );
  return record!;
}

let daemonOutput = '';

function startDaemon(args: string[]): void {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...daemonEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  // Kept to say why a daemon did not come up.
  const keep = (d: Buffer) => void (daemonOutput = (daemonOutput + d.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  daemons.push(child);
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-repo-settings-');
  [nats, gitServer] = await Promise.all([startNatsServer(), startGitServer()]);
  good = await withSettings('payments', SETTINGS, { 'build/Containerfile': CONTAINERFILE });
  bad = await withSettings('bad-settings', BAD_SETTINGS);
  const port = await freePort();
  serveUrl = `http://127.0.0.1:${port}`;
  daemonEnv = {
    ...isolatedEnv(join(sandbox.path, 'daemons')),
    OCI_BUILD_NATS_URL: nats.url,
    OCI_BUILD_SERVER_PORT: String(port),
    OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
    OCI_BUILD_SERVER_API_TOKENS: TOKEN,
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: PREFIX,
    OCI_BUILD_WORKER_NAME: 'settings-worker',
  };
  startDaemon(['serve']);
  startDaemon(['worker']);
  await waitFor(async () => (await fetch(`${serveUrl}/health`).catch(() => undefined))?.ok === true, { timeoutMs: 30_000, what: 'serve to answer /health' }).catch((err: Error) => {
    throw new Error(`${err.message}; the daemons said:\n${daemonOutput}`);
  });
  jobs.main = await push(good, 'payments', 'main');
  jobs.excluded = await push(good, 'payments', 'feature/x');
  jobs.bad = await push(bad, 'bad-settings', 'main');
});

afterAll(async () => {
  await stopDaemons(daemons);
  await Promise.allSettled([nats?.stop(), gitServer?.dispose()]);
  await Promise.allSettled([good?.cleanup(), bad?.cleanup()]);
  await sandbox?.cleanup();
});

/** What the good file makes of a build of `good`'s commit on main. */
function expectSettingsApplied(record: BuildRecord, project: string, extraTags: string[]): void {
  expect(record.status, JSON.stringify(record.error)).toBe('succeeded');
  const short = good.commit.slice(0, 7);
  expect(record.images).toHaveLength(1);
  expect(record.images[0]).toMatchObject({ repository: `${PREFIX}/payments-api`, tags: [`sha-${short}`, 'main', `main-${short}`, ...extraTags] });
  expect(record.settings).toMatchObject({
    file: '.oci-build.yaml',
    blob: git(good.dir, ['rev-parse', 'HEAD:.oci-build.yaml']),
    projects: { [project]: { dockerfile: 'build/Containerfile', image: 'payments-api', env: { FROM_FILE: 'from-the-file' } } },
  });
}

describe('.oci-build.yaml', () => {
  it('oci-build build <dir>: the file changes the command, the Dockerfile, the image name and adds tags', async () => {
    const { code, record, env } = await cliBuild(good.dir);
    expect(code).toBe(0);
    // no default branch is known locally: the entry limited to it is left out, with a warning
    expectSettingsApplied(record, 'sample-go-repo', []);
    expect(record.warnings).toEqual([expect.stringContaining('image.tags "latest" not added: the repository\'s default branch is not known')]);
    const log = readFileSync(record.logPath!, 'utf8');
    expect(log).toContain('env=from-the-file');
    expect(log).toContain('$ sh -c');
    const status = await runCli(['status', record.id], { env });
    expect(status.stdout).toMatch(/Settings \(\.oci-build\.yaml, blob [0-9a-f]{12}\)/);
    expect(status.stdout).toContain('sample-go-repo: command sh -c');
  });

  it('oci-build build <git-url>: the same, from the commit fetched', async () => {
    const { code, record } = await cliBuild(gitServer.url('acme/payments'));
    expect(code).toBe(0);
    expectSettingsApplied(record, 'payments', []);
  });

  it('a bad file fails with every problem listed and the operator key refused by name, exit 2', async () => {
    const { code, record, stderr } = await cliBuild(bad.dir);
    expect(code).toBe(2);
    expect(record).toMatchObject({ status: 'failed', error: { phase: 'detect', code: 'E_REPO_SETTINGS' } });
    const message = record.error!.message;
    expect(message).toMatch(/^Invalid \.oci-build\.yaml \(4 problems\):/);
    expect(message).toContain('.oci-build.yaml: projects["."].command: must be array');
    expect(message).toContain('.oci-build.yaml: projects["."].dockerfile: must be a relative path inside the project');
    expect(message).toContain(".oci-build.yaml: image.registry: is the operator's key, not the repository's: the operator sets it in oci-build.config.yaml or OCI_BUILD_IMAGE_REGISTRY");
    expect(message).toContain('.oci-build.yaml: image.tags.0: must be a tag template');
    expect(record.images).toEqual([]);
    expect(stderr).not.toContain('evil.example/steal:');
  });

  it('a webhook: the worker applies the file, the default branch gets its limited tag', async () => {
    const record = await finished(jobs.main);
    expectSettingsApplied(record, 'payments', ['latest']);
    expect(record.worker).toBe('settings-worker');
  });

  it('a webhook of a branch the file excludes ends skipped, with the reason, and GET /builds?status=skipped lists it', async () => {
    const id = jobs.excluded;
    const record = await finished(id);
    expect(record).toMatchObject({ status: 'skipped', skipReason: 'branch feature/x matches none of branches.include in .oci-build.yaml', images: [] });
    expect(record.phases.map((p) => p.name)).toEqual(['source', 'detect']);
    const { body } = await api<{ builds: BuildRecord[] }>('/builds?status=skipped');
    expect(body.builds.map((b) => b.id)).toEqual([id]);
  });

  it('a webhook of a bad file: a failed detect phase with every problem, not retried', async () => {
    const record = await finished(jobs.bad);
    expect(record).toMatchObject({ status: 'failed', error: { phase: 'detect', code: 'E_REPO_SETTINGS' } });
    expect(record.phases.find((p) => p.name === 'detect')).toMatchObject({ status: 'failed', error: expect.stringContaining(".oci-build.yaml: image.registry: is the operator's key") });
    expect(record.error!.message).toMatch(/^Invalid \.oci-build\.yaml \(4 problems\):/);
    expect(record.warnings ?? []).not.toContainEqual(expect.stringMatching(/retrying/));
  });
});
