// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against the real
// service: `oci-build serve` and `oci-build worker` as processes of the built CLI, nats-server, Git
// over HTTP, buildah and a registry. A webhook's build appears in the list and its page follows
// the log to the end and shows the digest; a wrong token gets a clear message; a running build is
// cancelled from its page (its processes are killed); and `oci-build cancel` / `rebuild` --server.
// Screenshots of the three pages go to the test's directory, and to docs/ when
// OCI_BUILD_DASHBOARD_SCREENSHOTS=docs (how docs/dashboard-*.png are made).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildRecord } from '../../src/core/types.js';
import { CLI, isolatedEnv, runCli } from '../helpers/cli.js';
import { REPO_ROOT, fixtureRepo, tempDir, type FixtureRepo, type TempDir } from '../helpers/fixtures.js';
import { sendPush } from '../helpers/github-push.js';
import { startGitServer, type GitServer } from '../helpers/git-http-server.mjs';
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { startRegistry } from '../helpers/registry.js';
import { stopDaemons } from '../helpers/daemons.js';

const SECRET = 'dashboard-webhook-secret';
const TOKEN = 'dashboard-api-token-0123456789';
/** The slow repository's build command sleeps this long: a process the test can look for. */
const SLEEP_SECONDS = '4321';

let sandbox: TempDir;
let nats: NatsServer;
let gitServer: GitServer;
let registry: Awaited<ReturnType<typeof startRegistry>>;
let serveUrl: string;
let browser: Browser;
let page: Page;
const daemons: ChildProcess[] = [];
const repos: FixtureRepo[] = [];
let goRepo: FixtureRepo;
let goBuildId: string;
/** The slow repository's build, cancelled from the page. */
let slowBuildId: string;
let slowRepo: FixtureRepo;

function startDaemon(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  (child as ChildProcess & { output: () => string }).output = () => output;
  daemons.push(child);
  return child;
}

async function record(id: string): Promise<BuildRecord> {
  const response = await fetch(`${serveUrl}/builds/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return (await response.json()) as BuildRecord;
}

async function served(fixture: string, name: string): Promise<FixtureRepo> {
  const repo = await fixtureRepo(fixture, { repoName: name });
  repos.push(repo);
  await gitServer.addRepo(`acme/${name}`, repo.dir);
  return repo;
}

async function push(repo: FixtureRepo, name: string): Promise<string> {
  const answer = await sendPush({ serveUrl, secret: SECRET, gitServer, name, commit: repo.commit });
  expect(answer.status).toBe(202);
  return answer.body.jobId as string;
}

/** Processes whose command line runs the slow build's sleep. */
function sleepers(): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(`sleep ${SLEEP_SECONDS}`);
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function screenshot(name: string): Promise<void> {
  const file = join(sandbox.path, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (process.env.OCI_BUILD_DASHBOARD_SCREENSHOTS === 'docs') copyFileSync(file, join(REPO_ROOT, 'docs', `${name}.png`));
}

async function enterToken(token: string): Promise<void> {
  if (await page.locator('#token-form').isHidden()) await page.click('#token-toggle');
  await page.fill('#token-input', token);
  await page.click('#token-form button[type=submit]');
}

beforeAll(async () => {
  sandbox = await tempDir('oci-build-dashboard-');
  [nats, gitServer, registry] = await Promise.all([startNatsServer(), startGitServer(), startRegistry()]);
  const port = await freePort();
  serveUrl = `http://127.0.0.1:${port}`;
  const env = {
    ...isolatedEnv(sandbox.path),
    OCI_BUILD_NATS_URL: nats.url,
    OCI_BUILD_SERVER_PORT: String(port),
    OCI_BUILD_SERVER_WEBHOOK_SECRET: SECRET,
    OCI_BUILD_SERVER_API_TOKENS: TOKEN,
    OCI_BUILD_SERVER_ALLOWED_HOSTS: `127.0.0.1:${gitServer.port}`,
    OCI_BUILD_IMAGE_REGISTRY: `${registry.host}/ci`,
    OCI_BUILD_IMAGE_PUSH: 'true',
    OCI_BUILD_IMAGE_TLS_VERIFY: 'false',
    OCI_BUILD_WORKER_CONCURRENCY: '2',
    OCI_BUILD_WORKER_NAME: 'dashboard-worker',
  };
  // The slow repository's build is a command that sleeps (build.projects.<name>.command).
  const workerConfig = join(sandbox.path, 'worker.yaml');
  // The noisy one prints colours, HTML and some 400 KiB: more than the tail the page shows first.
  const noisy = ['sh', '-c', "printf '\\033[1;31mred alert\\033[0m <b>not bold</b>\\n'; seq -f 'line %06.0f of the noisy build' 1 12000"];
  writeFileSync(
    workerConfig,
    `build:\n  projects:\n    slow-repo:\n      command: ["sh", "-c", "echo sleeping for the cancel test; exec sleep ${SLEEP_SECONDS}"]\n    noisy-repo:\n      command: ${JSON.stringify(noisy)}\n`,
  );
  startDaemon(['serve'], env);
  startDaemon(['worker', '-c', workerConfig], env);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on('dialog', (dialog) => void dialog.accept());
  await waitFor(async () => (await fetch(`${serveUrl}/health`)).ok, { timeoutMs: 30_000, what: 'serve to answer /health' });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await stopDaemons(daemons);
  await Promise.allSettled([nats?.stop(), gitServer?.dispose(), registry?.stop()]);
  for (const repo of repos) await repo.cleanup();
  await sandbox?.cleanup();
});

describe('the dashboard', () => {
  it('without a token it asks for one; a wrong token gets a clear message', async () => {
    await page.goto(`${serveUrl}/`);
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 15_000 }).toContain('This server needs an API token');
    await enterToken('not-the-right-token-000000');
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 15_000 }).toContain('The server refused the API token (The bearer token is not valid)');
    expect(await page.locator('#notice').isVisible()).toBe(true);
  });

  it("a webhook's build appears in the list; its page follows the log until the build ends and shows the digest", async () => {
    await enterToken(TOKEN);
    goRepo = await served('sample-go-repo', 'sample-go-repo');
    goBuildId = await push(goRepo, 'sample-go-repo');
    const row = page.locator(`tr[data-id="${goBuildId}"]`);
    await row.waitFor({ timeout: 15_000 });
    expect(await row.textContent()).toContain('acme/sample-go-repo');
    await row.locator('a.id').click();
    expect(page.url()).toBe(`${serveUrl}/#/builds/${goBuildId}`);
    // Followed live: the log shows the phases as they run, and the page ends on the final state.
    await page.locator('pre.log .line').first().waitFor({ timeout: 60_000 });
    await page.locator('h1 .status[data-status="succeeded"]').waitFor({ timeout: 170_000 });
    await expect.poll(() => page.locator('.log-state').textContent(), { timeout: 10_000 }).toBe('ended');
    const log = (await page.locator('pre.log').textContent()) ?? '';
    for (const phase of ['==> source', '==> build', '==> image', '==> push']) expect(log).toContain(phase);
    const final = await record(goBuildId);
    expect(final.status).toBe('succeeded');
    const digest = final.images[0]!.digest!;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await page.locator('.digest').textContent()).toContain(digest);
    expect(await page.locator('.phase').count()).toBe(final.phases.length);
    // The commit links to the repository's page.
    expect(await page.locator(`a[href$="/commit/${goRepo.commit}"]`).count()).toBe(1);
    await screenshot('dashboard-build');
  }, 200_000);

  it('the list filters by repository, branch and status', async () => {
    await page.goto(`${serveUrl}/#/builds?repo=acme/sample-go-repo&status=succeeded`);
    await page.locator(`tr[data-id="${goBuildId}"]`).waitFor({ timeout: 15_000 });
    await page.fill('input[name=branch]', 'no-such-branch');
    await expect.poll(() => page.locator('tbody tr').count(), { timeout: 10_000 }).toBe(0);
    await page.fill('input[name=branch]', 'main');
    await page.locator(`tr[data-id="${goBuildId}"]`).waitFor({ timeout: 10_000 });
    expect(page.url()).toContain('branch=main');
  });

  it('cancel works from the page: the worker kills the build and the record says who cancelled', async () => {
    const slow = await served('sample-go-repo', 'slow-repo');
    slowRepo = slow;
    const id = await push(slow, 'slow-repo');
    slowBuildId = id;
    await page.goto(`${serveUrl}/#/builds/${id}`);
    await expect.poll(() => page.locator('pre.log').textContent(), { timeout: 90_000 }).toContain('sleeping for the cancel test');
    await waitFor(() => sleepers().length > 0, { timeoutMs: 10_000, what: 'the build command to run' });

    // The workers page shows the worker running it.
    await page.goto(`${serveUrl}/#/workers`);
    const worker = page.locator('[data-worker="dashboard-worker"]');
    await worker.waitFor({ timeout: 15_000 });
    await expect.poll(() => worker.textContent(), { timeout: 10_000 }).toContain(id);
    await screenshot('dashboard-workers');

    await page.goto(`${serveUrl}/#/builds/${id}`);
    await page.click('#cancel-build');
    await page.locator('h1 .status[data-status="cancelled"]').waitFor({ timeout: 60_000 });
    const cancelled = await record(id);
    expect(cancelled).toMatchObject({ status: 'cancelled', cancelledBy: 'api:token#1', cancelReason: 'cancelled from the dashboard' });
    expect(cancelled.error?.message).toContain('Cancelled by api:token#1');
    expect(await page.locator('dl.facts').textContent()).toContain('api:token#1');
    await waitFor(() => sleepers().length === 0, { timeoutMs: 20_000, what: "the build's processes to be killed" });
  }, 200_000);

  it('a build of the same inputs as a running one says on its page whom it waits for; cancelled while it waits, it ends at once', async () => {
    // slow-repo's commit again, on two new branches: the first builds (and sleeps), the second
    // waits for its image (Result reuse: builds of the same inputs at the same time).
    const slow = slowRepo;
    for (const branch of ['twin-a', 'twin-b']) execFileSync('git', ['-C', gitServer.repoPath('acme/slow-repo'), 'branch', '-f', branch, slow.commit]);
    const pushed = await sendPush({ serveUrl, secret: SECRET, gitServer, name: 'slow-repo', commit: slow.commit, branch: 'twin-a' });
    expect(pushed.status).toBe(202);
    const first = pushed.body.jobId as string;
    await waitFor(async () => (await record(first)).status === 'running' && sleepers().length > 0, { timeoutMs: 90_000, what: 'the first build to run its command' });
    const answer = await sendPush({ serveUrl, secret: SECRET, gitServer, name: 'slow-repo', commit: slow.commit, branch: 'twin-b' });
    expect(answer.status).toBe(202);
    const second = answer.body.jobId as string;
    await waitFor(async () => (await record(second)).waitingFor !== undefined, { timeoutMs: 60_000, what: 'the second build to wait for the first' });
    expect((await record(second)).waitingFor).toMatchObject({ project: 'slow-repo', buildId: first, worker: 'dashboard-worker' });
    await page.goto(`${serveUrl}/#/builds/${second}`);
    await expect.poll(() => page.locator('dl.facts').textContent(), { timeout: 15_000 }).toContain(`Waiting forbuild ${first} on dashboard-worker to make the image of slow-repo (same inputs)`);
    await expect(page.locator(`dl.facts a[href="#/builds/${first}"]`).count()).resolves.toBe(1);

    await page.click('#cancel-build');
    await page.locator('h1 .status[data-status="cancelled"]').waitFor({ timeout: 30_000 });
    const cancelled = await record(second);
    expect(cancelled).toMatchObject({ status: 'cancelled', error: { phase: 'build' } });
    expect(cancelled.waitingFor).toBeUndefined();
    expect(cancelled.phases.some((p) => p.name === 'build')).toBe(false);
    expect((await record(first)).status).toBe('running');
    expect((await runCli(['cancel', first, '--server', serveUrl, '--token', TOKEN])).code).toBe(0);
    await waitFor(async () => (await record(first)).status === 'cancelled' && sleepers().length === 0, { timeoutMs: 30_000, what: 'the first build to be cancelled' });
  }, 200_000);

  it("a huge log shows its tail first, with Load all; ANSI colours are rendered and the log's HTML is text", async () => {
    const noisy = await served('sample-go-repo', 'noisy-repo');
    const id = await push(noisy, 'noisy-repo');
    // Ended (its image fails: the command built no binary) before the page opens: the tail is loaded.
    await waitFor(async () => ['succeeded', 'failed', 'cancelled'].includes((await record(id)).status), { timeoutMs: 120_000, intervalMs: 500, what: 'the noisy build to end' });
    await page.goto(`${serveUrl}/#/builds/${id}`);
    const skipped = page.locator('.log-skipped');
    await skipped.waitFor({ timeout: 30_000 });
    expect(await skipped.textContent()).toMatch(/KiB of earlier output not shown/);
    expect(await page.locator('pre.log').textContent()).toContain('line 012000 of the noisy build');
    expect(await page.locator('pre.log').textContent()).not.toContain('line 000001 of');
    await page.click('.load-all');
    await expect.poll(() => page.locator('pre.log').textContent(), { timeout: 30_000 }).toContain('line 000001 of the noisy build');
    expect(await skipped.isHidden()).toBe(true);
    const red = page.locator('pre.log span.ansi-fg-1.ansi-bold');
    expect(await red.textContent()).toBe('red alert');
    expect(await page.locator('pre.log b').count()).toBe(0);
    expect(await page.locator('pre.log').textContent()).toContain('<b>not bold</b>');
    // The list now holds a succeeded, a cancelled and a failed build.
    await page.goto(`${serveUrl}/#/builds`);
    await page.locator(`tr[data-id="${id}"][data-status="failed"]`).waitFor({ timeout: 15_000 });
    await screenshot('dashboard-builds');
  }, 180_000);

  it("is usable on a phone's width: nothing wider than the screen", async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await phone.goto(`${serveUrl}/`);
      // Expressions run in the page (the tests' TypeScript has no DOM types).
      await phone.evaluate(`sessionStorage.setItem('oci-build.apiToken', ${JSON.stringify(TOKEN)})`);
      await phone.goto(`${serveUrl}/#/builds/${goBuildId}`);
      await phone.locator('h1 .status').waitFor({ timeout: 15_000 });
      await phone.locator('pre.log .line').first().waitFor({ timeout: 15_000 });
      const widths = (await phone.evaluate('({ page: document.documentElement.scrollWidth, screen: window.innerWidth })')) as { page: number; screen: number };
      expect(widths.page).toBeLessThanOrEqual(widths.screen);
    } finally {
      await phone.close();
    }
  });
});

describe('oci-build cancel and rebuild --server', () => {
  const server = () => ['--server', serveUrl, '--token', TOKEN];

  it('rebuild queues a new build of the same commit with rebuildOf; cancel cancels it; a finished build cannot be cancelled (exit 2)', async () => {
    const rebuilt = await runCli(['rebuild', goBuildId, ...server(), '--json']);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const answer = JSON.parse(rebuilt.stdout) as { jobId: string; rebuildOf: string };
    expect(answer.rebuildOf).toBe(goBuildId);
    expect(answer.jobId).not.toBe(goBuildId);
    expect(await record(answer.jobId)).toMatchObject({ rebuildOf: goBuildId, repository: { fullName: 'acme/sample-go-repo', commit: goRepo.commit, branch: 'main' } });

    // The cancelled slow build, rebuilt (its command sleeps again), then cancelled from the CLI.
    const slow = await runCli(['rebuild', slowBuildId, ...server()]);
    expect(slow.code, slow.stderr).toBe(0);
    const slowId = /Queued build (\S+), a rebuild of/.exec(slow.stdout)?.[1];
    expect(slowId).toMatch(/^rb-/);
    const cancel = await runCli(['cancel', slowId!, ...server(), '--reason', 'from the CLI']);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toMatch(/Cancell(ed|ing) build/);
    await waitFor(async () => (await record(slowId!)).status === 'cancelled', { timeoutMs: 60_000, what: 'the rebuild to be cancelled' });
    expect(await record(slowId!)).toMatchObject({ rebuildOf: slowBuildId, cancelledBy: 'api:token#1', cancelReason: 'from the CLI' });
    await waitFor(() => sleepers().length === 0, { timeoutMs: 20_000, what: "the rebuild's processes to be killed" });

    const again = await runCli(['cancel', goBuildId, ...server()]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`Build ${goBuildId} has already ended (succeeded)`);
    const wrong = await runCli(['cancel', goBuildId, '--server', serveUrl, '--token', 'not-the-right-token-000000']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('refused the API token');
  }, 120_000);

  it('a local build cannot be cancelled from another process: exit 2, saying Ctrl-C does it', async () => {
    const work = join(sandbox.path, 'local-work');
    const builds = join(work, 'builds');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(builds, { recursive: true });
    const running: BuildRecord = { id: '20261202-010203-abcdef', status: 'running', trigger: 'cli', repository: { fullName: 'app', commit: 'a'.repeat(40) }, createdAt: new Date().toISOString(), phases: [], images: [] };
    writeFileSync(join(builds, `${running.id}.json`), JSON.stringify(running));
    const result = await runCli(['cancel', running.id, '--work-dir', work]);
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('Ctrl-C');
    const rebuild = await runCli(['rebuild', running.id, '--work-dir', work]);
    expect(rebuild.code, rebuild.stderr).toBe(2);
    expect(rebuild.stderr).toContain('it was built from a directory');
  });
});
