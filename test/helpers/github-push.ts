// A signed GitHub push webhook of a fixture repository served by the test Git server, sent to a
// running serve: what GitHub would send for `git push` to refs/heads/<branch>.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signWebhookBody } from '../../src/server/webhook-signature.js';
import type { GitServer } from './git-http-server.mjs';

const PUSH = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/github/push.json'), 'utf8')) as Record<string, unknown>;

export interface PushOptions {
  serveUrl: string;
  secret: string;
  gitServer: GitServer;
  /** Served as acme/<name>. */
  name: string;
  commit: string;
  branch?: string;
  before?: string;
}

/** Sends the push; resolves with serve's answer (status and JSON). */
export async function sendPush(options: PushOptions): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = structuredClone(PUSH) as Record<string, any>;
  payload.ref = `refs/heads/${options.branch ?? 'main'}`;
  payload.before = options.before ?? '0'.repeat(40);
  payload.after = options.commit;
  payload.repository.name = options.name;
  payload.repository.full_name = `acme/${options.name}`;
  payload.repository.clone_url = options.gitServer.url(`acme/${options.name}`);
  payload.repository.html_url = `http://127.0.0.1:${options.gitServer.port}/acme/${options.name}`;
  payload.head_commit.id = options.commit;
  const body = JSON.stringify(payload);
  const response = await fetch(`${options.serveUrl}/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signWebhookBody(options.secret, body) },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
