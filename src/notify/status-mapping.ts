// What a build says on its commit in GitHub: a record (or a job just queued or starting) → the
// commit statuses to post. Pure: no I/O, no clock.
//
// Contexts: `oci-build` for the whole build, and `oci-build/<project>` for each project meant to
// have an image (known once detect has run, so they appear with the final state). States:
//   queued, running          → pending ("queued", "building")
//   succeeded                → success (the digest, shortened)
//   failed, the build's fault → failure (the phase and project that failed)
//   failed, infrastructure   → error (queue, NATS, a registry or a tool away; workers gave up)
//   cancelled                → error ("cancelled by …": nothing was proven about the commit)
//   skipped                  → success ("skipped: …": the repository asked for no build, and a
//                              required check must not block its pull requests for that)

import type { BuildJob, BuildRecord, ImageResult, StatusNotification } from '../core/types.js';

export type StatusState = StatusNotification['state'];

/** One commit status, as GitHub's `POST /repos/{owner}/{repo}/statuses/{sha}` takes it. */
export interface CommitStatus {
  context: string;
  state: StatusState;
  description: string;
  targetUrl?: string;
}

/** The commit a build's statuses go to. */
export interface StatusTarget {
  owner: string;
  repo: string;
  sha: string;
}

export const BUILD_CONTEXT = 'oci-build';
/** GitHub cuts a description at 140 characters (and refuses a longer one). */
export const MAX_DESCRIPTION = 140;
/** Longest context we send: GitHub does not document one; a project name is short anyway. */
const MAX_CONTEXT = 100;

/**
 * Errors of the machinery, not of the commit: a status of `error`, not `failure`. By code (core/errors.ts
 * and adapters), never by message.
 */
const INFRASTRUCTURE_CODES = new Set(['E_SERVICE_UNAVAILABLE', 'E_TOOL_UNAVAILABLE', 'E_GIT_AUTH', 'E_REGISTRY_AUTH', 'E_PUSH_FAILED', 'E_NOT_ACCEPTED', 'E_INTERNAL']);

const SHA = /^[0-9a-f]{40}$/i;
const FULL_NAME = /^([A-Za-z0-9._-]{1,100})\/([A-Za-z0-9._-]{1,100})$/;

export function projectContext(project: string): string {
  return `${BUILD_CONTEXT}/${project}`.slice(0, MAX_CONTEXT);
}

/** Where a status links to: the build's page of the dashboard, when serve's public URL is known. */
export function buildPageUrl(publicUrl: string | undefined, buildId: string): string | undefined {
  return publicUrl ? `${publicUrl.replace(/\/+$/, '')}/#/builds/${encodeURIComponent(buildId)}` : undefined;
}

/**
 * The commit of a webhook build (statuses are for pushes GitHub told us about; a CLI build's
 * repository may not even be on GitHub). Undefined: no status for it.
 */
export function statusTarget(subject: Pick<BuildRecord, 'trigger'> & { repository?: { fullName?: string; commit?: string } }): StatusTarget | undefined {
  if (subject.trigger !== 'webhook') return undefined;
  const name = FULL_NAME.exec(subject.repository?.fullName ?? '');
  const sha = subject.repository?.commit;
  if (!name || !sha || !SHA.test(sha)) return undefined;
  return { owner: name[1]!, repo: name[2]!, sha: sha.toLowerCase() };
}

/** One line, at most MAX_DESCRIPTION characters (code points: a cut never splits a character). */
export function description(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  const chars = Array.from(line);
  return chars.length <= MAX_DESCRIPTION ? line : `${chars.slice(0, MAX_DESCRIPTION - 1).join('')}…`;
}

function status(context: string, state: StatusState, text: string, targetUrl: string | undefined): CommitStatus {
  return { context, state, description: description(text), ...(targetUrl ? { targetUrl } : {}) };
}

/** serve accepted the job. */
export function queuedStatuses(job: Pick<BuildJob, 'id'>, publicUrl?: string): CommitStatus[] {
  return [status(BUILD_CONTEXT, 'pending', 'queued', buildPageUrl(publicUrl, job.id))];
}

/** A worker starts the job. */
export function buildingStatuses(job: Pick<BuildJob, 'id'>, publicUrl?: string): CommitStatus[] {
  return [status(BUILD_CONTEXT, 'pending', 'building', buildPageUrl(publicUrl, job.id))];
}

/** The statuses of a record: pending while it is not final, else its final state per context. */
export function recordStatuses(record: BuildRecord, publicUrl?: string): CommitStatus[] {
  const url = buildPageUrl(publicUrl, record.id);
  if (record.status === 'queued') return [status(BUILD_CONTEXT, 'pending', 'queued', url)];
  if (record.status === 'running') return [status(BUILD_CONTEXT, 'pending', 'building', url)];
  const whole = wholeBuild(record);
  return [status(BUILD_CONTEXT, whole.state, whole.text, url), ...imageProjects(record).map((project) => projectStatus(record, project, whole, url))];
}

interface Verdict {
  state: StatusState;
  text: string;
}

/** True when the record failed because of the machinery rather than the commit. */
export function isInfrastructureFailure(record: Pick<BuildRecord, 'status' | 'error'>): boolean {
  return record.status === 'failed' && (record.error === undefined || record.error.phase === 'queue' || INFRASTRUCTURE_CODES.has(record.error.code));
}

function wholeBuild(record: BuildRecord): Verdict {
  const status = record.status;
  if (status === 'succeeded') {
    const took = duration(record);
    const images = record.images;
    if (images.length === 1) return { state: 'success', text: `built ${shortDigest(images[0]!)}${took}` };
    return { state: 'success', text: images.length === 0 ? `built${took}` : `built ${images.length} images${took}` };
  }
  if (status === 'skipped') return { state: 'success', text: `skipped: ${skipReason(record)}` };
  if (status === 'cancelled') return { state: 'error', text: cancelled(record) };
  const error = record.error;
  if (isInfrastructureFailure(record)) return { state: 'error', text: error ? `${error.phase === 'queue' ? 'not built' : `${error.phase} stopped`}: ${error.message}` : 'failed' };
  const failed = [...record.phases].reverse().find((p) => p.status === 'failed');
  const where = failed ? `${failed.name}${failed.project !== undefined ? ` of ${failed.project}` : ''}` : error?.phase ?? 'build';
  return { state: 'failure', text: `${where} failed: ${failed?.error?.trim() || error?.message.trim() || 'see the log'}` };
}

function projectStatus(record: BuildRecord, project: string, whole: Verdict, url: string | undefined): CommitStatus {
  const context = projectContext(project);
  const image = record.images.find((i) => i.project === project);
  const failed = record.phases.find((p) => p.project === project && p.status === 'failed');
  if (failed) return status(context, whole.state === 'error' ? 'error' : 'failure', `${failed.name} failed: ${failed.error?.trim() || 'see the log'}`, url);
  if (record.status === 'succeeded' || (image?.digest && record.status === 'failed')) {
    if (image) return status(context, 'success', `${image.digest ? shortDigest(image) : 'built'}${image.reusedFrom ? ` (reused from ${image.reusedFrom})` : ''}`, url);
    return status(context, 'success', 'built', url);
  }
  if (whole.state === 'success') return status(context, 'success', whole.text, url);
  if (whole.state === 'error') return status(context, 'error', whole.text, url);
  return status(context, 'failure', `not built: ${whole.text}`, url);
}

/** The projects that get a context of their own: each meant to have an image (and every one that has one). */
function imageProjects(record: BuildRecord): string[] {
  const names = (record.projects ?? []).filter((p) => p.noImageReason === undefined).map((p) => p.name);
  for (const image of record.images) if (!names.includes(image.project)) names.push(image.project);
  return names;
}

function shortDigest(image: Pick<ImageResult, 'digest'>): string {
  const digest = image.digest ?? '';
  return /^sha256:[0-9a-f]{12,}$/.test(digest) ? digest.slice(0, 'sha256:'.length + 12) : digest || 'an image';
}

function duration(record: BuildRecord): string {
  const start = Date.parse(record.startedAt ?? record.createdAt);
  const end = Date.parse(record.finishedAt ?? '');
  if (!Number.isFinite(start) || !Number.isFinite(end) || end < start) return '';
  const seconds = Math.round((end - start) / 1000);
  return ` in ${seconds >= 60 ? `${Math.floor(seconds / 60)}m ${seconds % 60}s` : `${seconds}s`}`;
}

function cancelled(record: BuildRecord): string {
  const reason = record.cancelReason;
  if (record.cancelledBy) return `cancelled by ${record.cancelledBy}${reason ? `: ${reason}` : ''}`;
  return record.error?.message ? `cancelled: ${record.error.message}` : 'cancelled';
}

function skipReason(record: BuildRecord): string {
  return record.skipReason ?? record.error?.message ?? record.warnings?.at(-1) ?? 'nothing to build';
}
