// A GitHub webhook delivery → a BuildJob, or the reason it builds nothing. Pure: no I/O.
// Everything taken from the payload is validated here, because it travels on to Git, image tags
// and the status API: anything invalid is an InputError (400) and nothing is queued.

import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { InputError } from '../core/errors.js';
import { hostAllowed, hostLabel, type HostEntry } from '../core/hosts.js';
import type { BuildJob, ImageOptions, RepositoryInfo } from '../core/types.js';
import { isGitRefName } from '../git/url.js';
import type { BranchDecision } from './branch-filter.js';

export const ZERO_SHA = '0000000000000000000000000000000000000000';

const SHA_PATTERN = /^[0-9a-f]{40}$/i;
/** GitHub sends a UUID; GitHub Enterprise Server too. */
const DELIVERY_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FULL_NAME_PATTERN = /^[A-Za-z0-9._-]{1,100}\/[A-Za-z0-9._-]{1,100}$/;
const EVENT_PATTERN = /^[a-z_]{1,64}$/;
/** Longest commit message kept in a job: the job travels as one NATS message (1 MB max by default). */
export const MAX_MESSAGE_CHARS = 4096;

export interface WebhookHeaders {
  event: string | undefined;
  delivery: string | undefined;
}

export interface PayloadOptions {
  image: ImageOptions;
  /** Decides whether a branch builds (server.branches); tags always build. */
  branchFilter?: (branch: string) => BranchDecision;
  /** server.allowedHosts, parsed (parseHostList): the only hosts a clone_url may name. */
  allowedHosts: readonly HostEntry[];
  now?: () => Date;
}

export type IgnoredReason = 'ping' | 'deleted' | 'event' | 'ref' | 'branch-filtered';

export type WebhookDecision =
  /** `pushKey`: the push's claim (pushClaimKey); serve builds one job per claim. */
  | { kind: 'job'; job: BuildJob; pushKey: string }
  | { kind: 'ignored'; reason: IgnoredReason; detail: string };

/**
 * The body's JSON: `application/json`, or `application/x-www-form-urlencoded` with the JSON in
 * `payload` (both are GitHub's "content type" settings of a webhook).
 */
export function parseWebhookBody(contentType: string | undefined, body: Buffer): unknown {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  let text: string;
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) {
    text = utf8(body, 'The webhook body');
  } else if (mediaType === 'application/x-www-form-urlencoded') {
    utf8(body, 'The webhook body');
    const payload = formField(body, PAYLOAD_FIELD);
    if (payload === undefined) throw new InputError('The form-encoded webhook body has no "payload" field', { hint: 'GitHub sends the JSON in payload=…' });
    text = utf8(payload, 'The webhook body\'s "payload" field (percent-decoded)');
  } else {
    throw new InputError(`Unsupported webhook Content-Type ${JSON.stringify(contentType ?? '')}`, {
      hint: 'Set the webhook\'s content type to application/json or application/x-www-form-urlencoded.',
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InputError(`The webhook body is not valid JSON: ${(err as Error).message}`);
  }
}

const PAYLOAD_FIELD = Buffer.from('payload');

/**
 * Strict UTF-8: Buffer#toString would turn invalid bytes into U+FFFD, and a field changed that way
 * (a branch name, a commit message) would reach records and tags as something GitHub never sent.
 * isUtf8 validates first (profiled on the webhook path: a fatal TextDecoder cost 4 % of serve's CPU,
 * isUtf8 + toString a fraction of it).
 */
function utf8(bytes: Buffer, what: string): string {
  if (!isUtf8(bytes)) throw new InputError(`${what} is not valid UTF-8`, { hint: 'GitHub sends UTF-8; check what sent this delivery.' });
  return bytes.toString('utf8');
}

/**
 * The bytes of the first `name=value` pair of a form body named `name` (application/x-www-form-urlencoded:
 * `+` is a space, `%XX` a byte). Read as bytes so the value's UTF-8 can be checked strictly:
 * URLSearchParams replaces invalid sequences silently.
 */
function formField(body: Buffer, name: Buffer): Buffer | undefined {
  for (let start = 0; start < body.length; ) {
    let end = body.indexOf(0x26 /* & */, start);
    if (end === -1) end = body.length;
    const eq = body.indexOf(0x3d /* = */, start);
    const nameEnd = eq !== -1 && eq < end ? eq : end;
    if (nameEnd > start && percentDecode(body.subarray(start, nameEnd)).equals(name)) {
      return percentDecode(body.subarray(Math.min(nameEnd + 1, end), end));
    }
    start = end + 1;
  }
  return undefined;
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

function percentDecode(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0x2b /* + */) {
      out[n++] = 0x20;
      continue;
    }
    if (byte === 0x25 /* % */) {
      const high = hexValue(bytes[i + 1]);
      const low = hexValue(bytes[i + 2]);
      if (high >= 0 && low >= 0) {
        out[n++] = high * 16 + low;
        i += 2;
        continue;
      }
    }
    out[n++] = byte;
  }
  return out.subarray(0, n);
}

/** Validates `X-GitHub-Delivery`; the job id derives from it so a redelivery maps to the same job. */
export function deliveryIdFrom(header: string | undefined): string {
  if (header === undefined || header === '') {
    throw new InputError('The X-GitHub-Delivery header is missing', { hint: 'GitHub sets it on every delivery; the job id is derived from it.' });
  }
  if (!DELIVERY_PATTERN.test(header)) {
    throw new InputError(`The X-GitHub-Delivery header ${JSON.stringify(header.slice(0, 80))} is not a UUID`);
  }
  return header.toLowerCase();
}

/** The BuildRecord/job id of a delivery. Also a valid NATS KV key and Nats-Msg-Id. */
export function jobIdForDelivery(deliveryId: string): string {
  return `gh-${deliveryId}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(obj: Record<string, unknown>, key: string, path: string): unknown {
  if (!(key in obj)) throw new InputError(`The push payload has no ${path}`);
  return obj[key];
}

function sha(value: unknown, path: string): string {
  if (typeof value !== 'string' || !SHA_PATTERN.test(value)) {
    throw new InputError(`The push payload's ${path} is not a 40-hex commit SHA: ${JSON.stringify(value)?.slice(0, 80)}`);
  }
  return value.toLowerCase();
}

export function validateFullName(value: unknown): string {
  if (typeof value !== 'string' || !FULL_NAME_PATTERN.test(value) || value.includes('..') || value.split('/').some((p) => p === '.')) {
    throw new InputError(`The payload's repository.full_name is not owner/name: ${JSON.stringify(value)?.slice(0, 120)}`, {
      hint: 'Owner and name may hold letters, digits, ".", "_" and "-", and no "..".',
    });
  }
  return value;
}

const ALLOWED_HOSTS_HINT =
  'serve fetches only a repository.clone_url whose host is in server.allowedHosts (OCI_BUILD_SERVER_ALLOWED_HOSTS, comma-separated host or host:port; default github.com) and equals repository.html_url\'s, with the path of repository.full_name, as GitHub sends them.';

function urlField(value: unknown, path: string): URL {
  let url: URL;
  try {
    if (typeof value !== 'string') throw new TypeError('not a string');
    url = new URL(value);
  } catch {
    throw new InputError(`The payload's ${path} is not a URL: ${JSON.stringify(value)?.slice(0, 120)}`, { hint: ALLOWED_HOSTS_HINT });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InputError(`The payload's ${path} must be http(s), got ${url.protocol}`, { hint: ALLOWED_HOSTS_HINT });
  }
  // Credentials in the URL would be copied into records and logs, and `https://github.com@evil/`
  // names the host after the `@`.
  if (url.username || url.password) throw new InputError(`The payload's ${path} must not carry credentials`, { hint: ALLOWED_HOSTS_HINT });
  if (url.search || url.hash) throw new InputError(`The payload's ${path} must not carry a query or fragment`, { hint: ALLOWED_HOSTS_HINT });
  return url;
}

function entryLabel(entry: HostEntry): string {
  return entry.port === undefined ? entry.hostname : `${entry.hostname}:${entry.port}`;
}

/**
 * What a worker will fetch: repository.clone_url, only when it names an allowed host, the same host
 * as repository.html_url, and the repository that full_name names (so a build is never recorded
 * under another repository's name, nor cancels that one's builds as superseded). Hosts are compared
 * as WHATWG URL parsing reads them (src/core/hosts.ts), paths case-insensitively as GitHub does.
 * Returns the clone URL as sent.
 */
export function validateRepositoryUrls(fullName: string, cloneValue: unknown, htmlValue: unknown, allowedHosts: readonly HostEntry[]): string {
  const clone = urlField(cloneValue, 'repository.clone_url');
  if (!hostAllowed(clone, allowedHosts)) {
    const allowed = allowedHosts.length === 0 ? 'none' : allowedHosts.slice(0, 10).map(entryLabel).join(', ') + (allowedHosts.length > 10 ? ', …' : '');
    throw new InputError(`The payload's repository.clone_url names host ${hostLabel(clone)}, which is not in server.allowedHosts (${allowed})`, { hint: ALLOWED_HOSTS_HINT });
  }
  if (htmlValue === undefined || htmlValue === null) throw new InputError('The push payload has no repository.html_url', { hint: ALLOWED_HOSTS_HINT });
  const html = urlField(htmlValue, 'repository.html_url');
  if (html.host !== clone.host) {
    throw new InputError(`The payload's repository.clone_url host ${hostLabel(clone)} differs from repository.html_url's host ${hostLabel(html)}`, { hint: ALLOWED_HOSTS_HINT });
  }
  const repoPath = `/${fullName.toLowerCase()}`;
  const clonePath = clone.pathname.toLowerCase();
  if (clonePath !== repoPath && clonePath !== `${repoPath}.git`) {
    throw new InputError(
      `The payload's repository.clone_url path ${JSON.stringify(clone.pathname.slice(0, 200))} does not match repository.full_name ${fullName} (expected /${fullName} or /${fullName}.git)`,
      { hint: ALLOWED_HOSTS_HINT },
    );
  }
  if (html.pathname.toLowerCase() !== repoPath) {
    throw new InputError(`The payload's repository.html_url path ${JSON.stringify(html.pathname.slice(0, 200))} does not match repository.full_name ${fullName}`, { hint: ALLOWED_HOSTS_HINT });
  }
  return cloneValue as string;
}

/**
 * The push claim of a push: one per repository (GitHub's names are case-insensitive), ref and
 * before → after. A replay of a signed body under a new X-GitHub-Delivery has the same claim; 64
 * hex characters, a valid KV key token.
 */
export function pushClaimKey(repository: Pick<RepositoryInfo, 'fullName' | 'ref' | 'before' | 'commit'>): string {
  return createHash('sha256')
    .update(`${repository.fullName.toLowerCase()}\0${repository.ref ?? ''}\0${(repository.before ?? '').toLowerCase()}\0${repository.commit.toLowerCase()}`)
    .digest('hex');
}

/** A branch or tag name from a ref, as `git check-ref-format` allows it (see isGitRefName). */
export function validateRefName(name: string, ref: string): string {
  if (!isGitRefName(name)) throw new InputError(`The push payload's ref ${JSON.stringify(ref).slice(0, 300)} is not a valid Git ref name`);
  return name;
}

function optionalString(value: unknown, max: number): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value.slice(0, max) : undefined;
}

/** `installation.id` of a delivery sent by a GitHub App (commit statuses are posted as it): a positive integer, or absent. */
function installationIdOf(installation: unknown): number | undefined {
  if (installation === undefined || installation === null) return undefined;
  const id = isObject(installation) ? installation.id : undefined;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) {
    throw new InputError(`The payload's installation.id is not a positive integer: ${JSON.stringify(id)?.slice(0, 40)}`);
  }
  return id;
}

/** Decides what a delivery does. Throws InputError (400) for anything malformed. */
export function decideWebhook(headers: WebhookHeaders, payload: unknown, options: PayloadOptions): WebhookDecision {
  const event = headers.event;
  if (!event) throw new InputError('The X-GitHub-Event header is missing');
  if (!EVENT_PATTERN.test(event)) throw new InputError(`The X-GitHub-Event header ${JSON.stringify(event.slice(0, 80))} is not an event name`);
  const deliveryId = deliveryIdFrom(headers.delivery);
  if (!isObject(payload)) throw new InputError('The webhook payload is not a JSON object');

  if (event === 'ping') return { kind: 'ignored', reason: 'ping', detail: 'ping received' };
  if (event !== 'push') return { kind: 'ignored', reason: 'event', detail: `the ${event} event builds nothing` };

  const ref = field(payload, 'ref', 'ref');
  if (typeof ref !== 'string') throw new InputError('The push payload\'s ref is not a string');
  if (payload.deleted === true) return { kind: 'ignored', reason: 'deleted', detail: `${ref} was deleted` };

  let branch: string | undefined;
  let tag: string | undefined;
  if (ref.startsWith('refs/heads/')) branch = validateRefName(ref.slice('refs/heads/'.length), ref);
  else if (ref.startsWith('refs/tags/')) tag = validateRefName(ref.slice('refs/tags/'.length), ref);
  else return { kind: 'ignored', reason: 'ref', detail: `${ref.slice(0, 200)} is neither a branch nor a tag` };

  const after = sha(field(payload, 'after', 'after'), 'after');
  const before = sha(field(payload, 'before', 'before'), 'before');
  if (after === ZERO_SHA) return { kind: 'ignored', reason: 'deleted', detail: `${ref} was deleted` };

  const repository = field(payload, 'repository', 'repository');
  if (!isObject(repository)) throw new InputError('The push payload\'s repository is not an object');
  const fullName = validateFullName(repository.full_name);
  const cloneUrl = validateRepositoryUrls(fullName, repository.clone_url, repository.html_url, options.allowedHosts);

  if (branch !== undefined && options.branchFilter) {
    const decision = options.branchFilter(branch);
    if (!decision.build) return { kind: 'ignored', reason: 'branch-filtered', detail: decision.reason };
  }

  const pusherObj = isObject(payload.pusher) ? payload.pusher : undefined;
  const pusher = optionalString(pusherObj?.name, 256);
  const headCommit = isObject(payload.head_commit) ? payload.head_commit : undefined;
  const headCommitMessage = optionalString(headCommit?.message, MAX_MESSAGE_CHARS);
  const installationId = installationIdOf(payload.installation);

  const repo: RepositoryInfo = {
    fullName,
    cloneUrl,
    ref,
    ...(branch !== undefined ? { branch } : {}),
    ...(tag !== undefined ? { tag } : {}),
    commit: after,
    before,
    // Optional, so never a reason for 400: a `.oci-build.yaml` tag limited to the default branch needs it.
    ...(typeof repository.default_branch === 'string' && isGitRefName(repository.default_branch) ? { defaultBranch: repository.default_branch } : {}),
  };
  const job: BuildJob = {
    id: jobIdForDelivery(deliveryId),
    trigger: 'webhook',
    deliveryId,
    source: { kind: 'git', url: cloneUrl, ref: after },
    repository: repo,
    ...(before !== ZERO_SHA ? { affectedBase: before } : {}),
    image: { ...options.image, buildArgs: { ...options.image.buildArgs } },
    ...(pusher !== undefined ? { pusher } : {}),
    ...(headCommitMessage !== undefined ? { headCommitMessage } : {}),
    ...(installationId !== undefined ? { installationId } : {}),
    createdAt: (options.now?.() ?? new Date()).toISOString(),
  };
  return { kind: 'job', job, pushKey: pushClaimKey(repo) };
}
