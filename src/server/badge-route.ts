// GET /badge/:owner/:name.svg?branch=B: the status of a repository's latest final build as an SVG
// badge in the style of shields.io, for a README. Open unless server.badgeAuth (then the same
// bearer token as the status API). Without `branch`, the latest final build of any branch or tag.
// A repository with no final build (or none known at all) gets a grey "unknown" badge with 200,
// as shields does: a README's image never breaks. `Cache-Control: no-cache`: GitHub's image proxy
// and browsers ask again every time.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/config.js';
import { FINAL_STATUSES, isFinalStatus, type BuildRecord, type JobStatus } from '../core/types.js';
import { isInfrastructureFailure } from '../notify/status-mapping.js';
import { createTokenCheck, type AuthResult } from './api-auth.js';
import { HttpError, allow, header, type RequestLog } from './http-response.js';
import type { JobIntake } from './job-intake.js';

const BADGE_PATH = /^\/badge\/([^/]+)\/([^/]+)\.svg$/;
const NAME_PART = /^[A-Za-z0-9._-]{1,100}$/;
/** Newest builds looked at before asking for each final status on its own. */
const RECENT = 20;
const LABEL = 'oci-build';

export interface Badge {
  message: string;
  color: string;
}

const GREY = '#9f9f9f';

/** The badge of a repository's latest final build (undefined: none). */
export function badgeFor(record: BuildRecord | undefined): Badge {
  if (!record) return { message: 'unknown', color: GREY };
  const status = record.status;
  if (status === 'succeeded') return { message: 'passing', color: '#4c1' };
  if (status === 'failed') return isInfrastructureFailure(record) ? { message: 'error', color: '#fe7d37' } : { message: 'failing', color: '#e05d44' };
  return { message: status, color: GREY };
}

export interface BadgeRouteDeps {
  config: Config;
  intake: JobIntake;
}

export class BadgeRoute {
  private readonly checkToken: ((authorization: string | undefined) => AuthResult) | undefined;

  constructor(private readonly deps: BadgeRouteDeps) {
    this.checkToken = deps.config.server.badgeAuth ? createTokenCheck(deps.config.server.apiTokens) : undefined;
  }

  /** Answers the request if `path` is a badge; false when it is not. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): Promise<boolean> {
    const match = BADGE_PATH.exec(path);
    if (!match) return false;
    log.route = 'badge';
    allow(req.method ?? 'GET', ['GET', 'HEAD']);
    if (this.checkToken) {
      const auth = this.checkToken(header(req, 'authorization'));
      if (!auth.ok) throw new HttpError(auth.status, auth.message, auth.status === 401 ? 'E_UNAUTHORIZED' : 'E_FORBIDDEN', auth.wwwAuthenticate ? { 'www-authenticate': auth.wwwAuthenticate } : {});
    }
    const owner = decodePart(match[1]!);
    const name = decodePart(match[2]!);
    const query = new URLSearchParams(req.url?.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '');
    const branch = query.get('branch') ?? undefined;
    // eslint-disable-next-line no-control-regex
    if (branch !== undefined && (branch.length === 0 || branch.length > 255 || /[\u0000-\u001f\u007f]/.test(branch))) {
      throw new HttpError(400, 'branch must be a branch name (1 to 255 characters)', 'E_INPUT');
    }
    log.fields.repository = `${owner}/${name}`;
    let record: BuildRecord | undefined;
    try {
      record = await this.latestFinal(`${owner}/${name}`, branch);
    } catch {
      sendSvg(res, 503, renderBadge(LABEL, { message: 'unavailable', color: GREY }), { 'retry-after': '5' });
      return true;
    }
    sendSvg(res, 200, renderBadge(LABEL, badgeFor(record)));
    return true;
  }

  /** The newest final build of `repo` (and `branch`): among the recent ones, else the newest of each final status. */
  private async latestFinal(repo: string, branch: string | undefined): Promise<BuildRecord | undefined> {
    const { intake } = this.deps;
    if (intake.health().nats !== 'connected') throw new Error('NATS is not connected');
    const filter = { repo, ...(branch !== undefined ? { branch } : {}) };
    const recent = await intake.list({ ...filter, limit: RECENT });
    const found = newest(recent.filter((r) => isFinalStatus(r.status)));
    if (found || recent.length < RECENT) return found;
    const perStatus = await Promise.all(FINAL_STATUSES.map((status: JobStatus) => intake.list({ ...filter, status, limit: 1 })));
    return newest(perStatus.flat());
  }
}

function newest(records: BuildRecord[]): BuildRecord | undefined {
  return records.reduce<BuildRecord | undefined>((best, r) => (!best || r.createdAt > best.createdAt || (r.createdAt === best.createdAt && r.id > best.id) ? r : best), undefined);
}

function decodePart(segment: string): string {
  let value: string;
  try {
    value = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'The repository in the badge path is not valid URL encoding', 'E_INPUT');
  }
  if (!NAME_PART.test(value) || value === '.' || value === '..') {
    throw new HttpError(400, `${JSON.stringify(value.slice(0, 100))} is not a GitHub owner or repository name`, 'E_INPUT', {}, 'The path is /badge/OWNER/NAME.svg, as in github.com/OWNER/NAME.');
  }
  return value;
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Width of `text` in Verdana 11px, roughly (shields measures each glyph; an average does for our few words). */
function textWidth(text: string): number {
  return Math.round(Array.from(text).length * 6.6 + 10);
}

/** A flat two-part badge: `label` on grey, `message` on its colour. */
export function renderBadge(label: string, badge: Badge): string {
  const lw = textWidth(label);
  const mw = textWidth(badge.message);
  const w = lw + mw;
  const l = escapeXml(label);
  const m = escapeXml(badge.message);
  const color = /^#[0-9a-f]{3,6}$/i.test(badge.color) ? badge.color : GREY;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20" role="img" aria-label="${l}: ${m}">`,
    `<title>${l}: ${m}</title>`,
    '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>',
    `<clipPath id="r"><rect width="${w}" height="20" rx="3" fill="#fff"/></clipPath>`,
    `<g clip-path="url(#r)"><rect width="${lw}" height="20" fill="#555"/><rect x="${lw}" width="${mw}" height="20" fill="${color}"/><rect width="${w}" height="20" fill="url(#s)"/></g>`,
    '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">',
    `<text x="${lw / 2}" y="15" fill="#010101" fill-opacity=".3">${l}</text><text x="${lw / 2}" y="14">${l}</text>`,
    `<text x="${lw + mw / 2}" y="15" fill="#010101" fill-opacity=".3">${m}</text><text x="${lw + mw / 2}" y="14">${m}</text>`,
    '</g></svg>',
  ].join('');
}

function sendSvg(res: ServerResponse, status: number, svg: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'image/svg+xml; charset=utf-8',
    'content-length': Buffer.byteLength(svg),
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    ...headers,
  });
  res.end(res.req?.method === 'HEAD' ? undefined : svg);
}
