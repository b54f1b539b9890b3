// The dashboard's files: GET / (the page) and /ui/<file> (its scripts, styles, icon), from memory
// (dashboard-assets.generated.ts, embedded from src/server/dashboard/ by scripts/embed-dashboard.mjs).
// They are static and hold no configuration value and no secret: the data comes from the JSON API,
// with the token the person enters. No token is needed for the files themselves.
//
// Strict headers on every file: scripts and styles from this origin only (no inline script or
// style, no eval), no framing, no referrer, no MIME sniffing.

import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DASHBOARD_ASSETS } from './dashboard-assets.generated.js';
import { allow, header, type RequestLog } from './http-response.js';

export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
};

interface Asset {
  type: string;
  body: Buffer;
  etag: string;
}

const ASSETS = new Map<string, Asset>(
  Object.entries(DASHBOARD_ASSETS).map(([name, { type, body }]) => {
    const bytes = Buffer.from(body, 'utf8');
    return [name, { type, body: bytes, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 22)}"` }];
  }),
);

/** The asset a path names: `/` is the page, `/ui/<name>` a file of it. */
function assetOf(path: string): Asset | undefined {
  if (path === '/' || path === '/index.html') return ASSETS.get('index.html');
  const file = /^\/ui\/([A-Za-z0-9_-]+\.(?:js|css|svg|html))$/.exec(path);
  return file ? ASSETS.get(file[1]!) : undefined;
}

/** Answers the request if `path` is a dashboard file; false when it is not. */
export function serveDashboard(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): boolean {
  const asset = assetOf(path);
  if (!asset) return false;
  log.route = 'dashboard';
  allow(req.method ?? 'GET', ['GET', 'HEAD']);
  // Revalidated on every load (no-cache), so a new serve's files are used at once; unchanged: 304.
  const headers = { ...DASHBOARD_SECURITY_HEADERS, 'cache-control': 'no-cache', etag: asset.etag };
  if (header(req, 'if-none-match') === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, { ...headers, 'content-type': asset.type, 'content-length': asset.body.length });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}
