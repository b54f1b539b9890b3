// A smart-HTTP Git server for tests and benchmarks: node:http in front of `git http-backend` run as
// CGI, on 127.0.0.1 and a free port, serving bare repositories from a temp directory.
// Plain ESM JavaScript (typed by git-http-server.d.mts) so the benchmark, which runs compiled code
// outside vitest, can import the very same server as the tests.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * @param {{ token?: string, root?: string }} [options]
 */
export async function startGitServer(options = {}) {
  const ownRoot = options.root === undefined;
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'oci-build-git-server-')));
  /** @type {Array<{ method: string, path: string, status: number, authorization?: string }>} */
  const requests = [];
  /** @type {Set<import('node:net').Socket>} */
  const sockets = new Set();
  let port = 0;

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const entry = { method: req.method ?? 'GET', path: url.pathname + url.search, status: 0, authorization: req.headers.authorization };
    requests.push(entry);
    let remoteUser = '';
    if (options.token !== undefined) {
      const user = authorizedUser(req.headers.authorization, options.token);
      if (user === undefined) {
        entry.status = 401;
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"', 'Content-Type': 'text/plain' });
        res.end('authentication required\n');
        return;
      }
      remoteUser = user;
    }
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: root,
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      REMOTE_USER: remoteUser,
      SERVER_PROTOCOL: 'HTTP/1.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
      ...(req.headers['git-protocol'] ? { HTTP_GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    };
    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    req.pipe(child.stdin);
    child.stdin.on('error', () => {});
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk.toString();
    });
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on('data', (chunk) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const crlf = head.indexOf('\r\n\r\n');
      const lf = head.indexOf('\n\n');
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
      if (end < 0) return;
      const sepLength = end === crlf ? 4 : 2;
      const headerText = head.subarray(0, end).toString('latin1');
      const body = head.subarray(end + sepLength);
      headersDone = true;
      let status = 200;
      /** @type {Record<string, string>} */
      const headers = {};
      for (const line of headerText.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 200;
        else headers[name] = value;
      }
      entry.status = status;
      res.writeHead(status, headers);
      if (body.length > 0) res.write(body);
    });
    child.on('close', (code) => {
      if (!headersDone) {
        entry.status = 500;
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`git http-backend exited with ${code}: ${stderr}`);
        return;
      }
      res.end();
    });
    child.on('error', (err) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(String(err));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  /** @param {number} wanted */
  const listen = (wanted) =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(wanted, '127.0.0.1', () => {
        server.off('error', reject);
        const address = server.address();
        port = typeof address === 'object' && address ? address.port : 0;
        resolve(undefined);
      });
    });
  const close = () =>
    new Promise((resolve) => {
      if (!server.listening) return resolve(undefined);
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve(undefined));
    });

  await listen(0);

  /** @param {string} name */
  const repoPath = (name) => join(root, `${name}.git`);

  return {
    root,
    requests,
    get port() {
      return port;
    },
    /** @param {string} name @param {{ auth?: string }} [opts] */
    url(name, opts = {}) {
      return `http://${opts.auth ? `${opts.auth}@` : ''}127.0.0.1:${port}/${name}.git`;
    },
    repoPath,
    /** @param {string} name @param {string} fromDir */
    async addRepo(name, fromDir) {
      const target = repoPath(name);
      await mkdir(dirname(target), { recursive: true });
      execFileSync('git', ['clone', '--quiet', '--bare', fromDir, target], { env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } });
      // Shallow clients need `uploadpack.allowAnySHA1InWant` to fetch a commit by id; the deepen
      // requests of a mirror do not, but serving like GitHub does keeps the tests honest.
      execFileSync('git', ['-C', target, 'config', 'uploadpack.allowReachableSHA1InWant', 'true']);
      return target;
    },
    async stop() {
      await close();
    },
    async restart() {
      await close();
      await listen(port);
    },
    async dispose() {
      await close();
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}

/**
 * Accepts `Bearer TOKEN` or Basic auth where the user or the password is the token.
 * @param {string | undefined} header
 * @param {string} token
 * @returns {string | undefined} the user name, or undefined when refused
 */
function authorizedUser(header, token) {
  if (!header) return undefined;
  const [scheme, value = ''] = header.split(' ', 2);
  if (scheme?.toLowerCase() === 'bearer') return value === token ? 'token' : undefined;
  if (scheme?.toLowerCase() !== 'basic') return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon < 0 ? decoded : decoded.slice(0, colon);
  const password = colon < 0 ? '' : decoded.slice(colon + 1);
  return password === token || user === token ? user || 'token' : undefined;
}
