// A GitHub webhook delivery → a BuildJob, or the reason it builds nothing. Pure: no I/O.
// Everything taken from the payload is validated here, because it travels on to Git, image tags
// and the status API: anything invalid is an InputError (400) and nothing is queued.

import { InputError } from '../core/errors.js';
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
  now?: () => Date;
}

export type IgnoredReason = 'ping' | 'deleted' | 'event' | 'ref' | 'branch-filtered';

export type WebhookDecision =
  | { kind: 'job'; job: BuildJob }
  | { kind: 'ignored'; reason: IgnoredReason; detail: string };

/**
 * The body's JSON: `application/json`, or `application/x-www-form-urlencoded` with the JSON in
 * `payload` (both are GitHub's "content type" settings of a webhook).
 */
export function parseWebhookBody(contentType: string | undefined, body: Buffer): unknown {
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  let text: string;
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) {
    text = body.toString('utf8');
  } else if (mediaType === 'application/x-www-form-urlencoded') {
    const payload = new URLSearchParams(body.toString('utf8')).get('payload');
    if (payload === null) throw new InputError('The form-encoded webhook body has no "payload" field', { hint: 'GitHub sends the JSON in payload=…' });
    text = payload;
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

export function validateCloneUrl(value: unknown): string {
  let url: URL;
  try {
    if (typeof value !== 'string') throw new TypeError('not a string');
    url = new URL(value);
  } catch {
    throw new InputError(`The payload's repository.clone_url is not a URL: ${JSON.stringify(value)?.slice(0, 120)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InputError(`The payload's repository.clone_url must be http(s), got ${url.protocol}`);
  }
  // Credentials in the URL would be copied into records and logs.
  if (url.username || url.password) throw new InputError('The payload\'s repository.clone_url must not carry credentials');
  return value as string;
}

/** A branch or tag name from a ref, as `git check-ref-format` allows it (see isGitRefName). */
export function validateRefName(name: string, ref: string): string {
  if (!isGitRefName(name)) throw new InputError(`The push payload's ref ${JSON.stringify(ref).slice(0, 300)} is not a valid Git ref name`);
  return name;
}

function optionalString(value: unknown, max: number): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value.slice(0, max) : undefined;
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
  const cloneUrl = validateCloneUrl(repository.clone_url);

  if (branch !== undefined && options.branchFilter) {
    const decision = options.branchFilter(branch);
    if (!decision.build) return { kind: 'ignored', reason: 'branch-filtered', detail: decision.reason };
  }

  const pusherObj = isObject(payload.pusher) ? payload.pusher : undefined;
  const pusher = optionalString(pusherObj?.name, 256);
  const headCommit = isObject(payload.head_commit) ? payload.head_commit : undefined;
  const headCommitMessage = optionalString(headCommit?.message, MAX_MESSAGE_CHARS);

  const repo: RepositoryInfo = {
    fullName,
    cloneUrl,
    ref,
    ...(branch !== undefined ? { branch } : {}),
    ...(tag !== undefined ? { tag } : {}),
    commit: after,
    before,
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
    createdAt: (options.now?.() ?? new Date()).toISOString(),
  };
  return { kind: 'job', job };
}
