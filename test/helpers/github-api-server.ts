// A recording stand-in for GitHub's REST API: a real node:http server on loopback that checks each
// request against GitHub's published description (@octokit/openapi, api.github.com.json) — the
// operation found by method and path template, its required path parameters, the JSON body
// validated with ajv against the operation's requestBody schema (unknown properties refused, which
// GitHub ignores silently, so a typo cannot pass), and the headers a client must send (auth,
// accept, content type, user agent) — then answers as GitHub does: 201 with the status object,
// 403 with x-ratelimit-* headers, a 5xx, or 422 for a request GitHub would refuse.
//
// Auth: a personal token (`token <t>`), or a GitHub App: `POST /app/installations/{id}/access_tokens`
// with an RS256 JWT (verified with the App's public key: iss = the App id, a lifetime of at most
// 10 minutes) answers an installation token, which is then accepted for statuses.

import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Schema = Record<string, unknown>;
interface Operation {
  method: string;
  template: string;
  pattern: RegExp;
  names: string[];
  parameters: Array<{ name: string; in: string; required?: boolean; schema?: Schema }>;
  bodySchema?: Schema;
  bodyRequired: boolean;
}

interface Spec {
  paths: Record<string, Record<string, { parameters?: Array<Schema>; requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> } }>>;
  components: { parameters: Record<string, Schema>; schemas: Record<string, Schema> };
}

let spec: Spec | undefined;
let operations: Operation[] | undefined;
type Validate = ((data: unknown) => boolean) & { errors?: Array<{ instancePath: string; message?: string }> | null };
let ajv: { compile(schema: Schema): Validate } | undefined;

function loadSpec(): { spec: Spec; operations: Operation[] } {
  if (spec && operations) return { spec, operations };
  spec = JSON.parse(readFileSync(require.resolve('@octokit/openapi/generated/api.github.com.json'), 'utf8')) as Spec;
  const ops: Operation[] = [];
  for (const [template, methods] of Object.entries(spec.paths)) {
    const names: string[] = [];
    const pattern = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_, name: string) => (names.push(name), '([^/]+)'))}$`);
    for (const [method, op] of Object.entries(methods)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const parameters = (op.parameters ?? []).map((p) => resolveRef(p) as Operation['parameters'][number]);
      const body = op.requestBody?.content?.['application/json']?.schema;
      ops.push({ method: method.toUpperCase(), template, pattern, names, parameters, bodyRequired: op.requestBody?.required === true, ...(body ? { bodySchema: body } : {}) });
    }
  }
  // A literal segment beats a parameter (/app/installations/x vs /app/{something}): fewer parameters first.
  operations = ops.sort((a, b) => a.names.length - b.names.length);
  return { spec, operations };
}

function resolveRef(node: Schema): Schema {
  const ref = node.$ref;
  if (typeof ref !== 'string') return node;
  let target: unknown = spec;
  for (const part of ref.replace(/^#\//, '').split('/')) target = (target as Record<string, unknown>)[part];
  return resolveRef(target as Schema);
}

function validator(schema: Schema): Validate {
  if (!ajv) {
    const Ajv = require('ajv').default as new (options: object) => { compile(schema: Schema): Validate };
    ajv = new Ajv({ allErrors: true, strict: false });
  }
  // The body's own object closed to unknown keys; refs resolve against the description's components.
  return ajv.compile({ ...schema, additionalProperties: false, components: spec!.components });
}

export interface RecordedRequest {
  /** Order of arrival, from 1. */
  seq: number;
  method: string;
  path: string;
  /** The operation's path template, e.g. /repos/{owner}/{repo}/statuses/{sha}. */
  operation?: string;
  params: Record<string, string>;
  headers: IncomingMessage['headers'];
  body: unknown;
  /** What the server answered. */
  status: number;
}

export type Fault = { status: 500 | 502 | 503 } | { rateLimitResetInMs: number } | { retryAfterSeconds: number } | { status: 404 | 422 };

export interface GithubApiServerOptions {
  /** A personal access token the API accepts. */
  token?: string;
  /** A GitHub App: its id and public key (PEM or KeyObject), and the installation `GET /repos/{owner}/{repo}/installation` names. */
  app?: { appId: number; publicKey: string | KeyObject; installationId?: number };
}

export interface PostedStatus {
  owner: string;
  repo: string;
  sha: string;
  state: string;
  context: string;
  description?: string;
  target_url?: string;
  /** The Authorization header it came with. */
  authorization: string;
  seq: number;
}

export interface GithubApiServer {
  /** github.apiUrl for this server. */
  url: string;
  requests: RecordedRequest[];
  /** Requests that did not conform to the description or the auth rules; a passing test has none. */
  problems: string[];
  /** Statuses answered 201, in order. */
  statuses(): PostedStatus[];
  /** Installation tokens issued, by installation id. */
  issuedTokens: Map<number, string>;
  /** The next status posts are answered with these faults, one each, in order. */
  failNextStatuses(...faults: Fault[]): void;
  close(): Promise<void>;
}

export async function startGithubApiServer(options: GithubApiServerOptions): Promise<GithubApiServer> {
  const { operations } = loadSpec();
  const requests: RecordedRequest[] = [];
  const problems: string[] = [];
  const faults: Fault[] = [];
  const issuedTokens = new Map<number, string>();
  const posted: PostedStatus[] = [];
  const publicKey = options.app ? (typeof options.app.publicKey === 'string' ? createPublicKey(options.app.publicKey) : options.app.publicKey) : undefined;
  const validators = new Map<Operation, Validate>();

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seq = requests.length + 1;
      const url = new URL(req.url ?? '/', 'http://github.invalid');
      const record: RecordedRequest = { seq, method: req.method ?? '', path: url.pathname, params: {}, headers: req.headers, body: undefined, status: 0 };
      requests.push(record);
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        record.status = status;
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-github-media-type': 'github.v3; format=json', ...headers });
        res.end(text);
      };
      const refuse = (status: number, message: string) => {
        problems.push(`${record.method} ${record.path}: ${message}`);
        answer(status, { message, documentation_url: 'https://docs.github.com/rest' });
      };

      const op = operations.find((o) => o.method === record.method && o.pattern.test(record.path));
      if (!op) return refuse(404, 'no such operation in GitHub\'s REST description');
      record.operation = op.template;
      const values = op.pattern.exec(record.path)!.slice(1).map((v) => decodeURIComponent(v));
      op.names.forEach((name, i) => (record.params[name] = values[i]!));
      for (const p of op.parameters.filter((p) => p.in === 'path')) {
        const value = record.params[p.name];
        if (p.required && !value) return refuse(422, `path parameter ${p.name} is required`);
        if (p.schema?.type === 'integer' && !/^\d+$/.test(value ?? '')) return refuse(422, `path parameter ${p.name} must be an integer`);
      }
      // Headers every client must send.
      const ua = req.headers['user-agent'] ?? '';
      if (!/^oci-build\/\d+\.\d+\.\d+/.test(ua)) return refuse(403, `user-agent ${JSON.stringify(ua)} is not oci-build/<version> (GitHub refuses requests without one)`);
      const accept = req.headers.accept ?? '';
      if (!/^application\/vnd\.github(\.[a-z-]+)?(\.v3)?\+json$/.test(accept)) return refuse(415, `accept ${JSON.stringify(accept)} is not a GitHub media type`);
      const raw = Buffer.concat(chunks).toString('utf8');
      if (raw.length > 0) {
        if (!/^application\/json(;\s*charset=utf-8)?$/i.test(req.headers['content-type'] ?? '')) return refuse(415, `content-type ${JSON.stringify(req.headers['content-type'])} is not application/json`);
        try {
          record.body = JSON.parse(raw);
        } catch {
          return refuse(400, 'Problems parsing JSON');
        }
      }
      if (op.bodyRequired && record.body === undefined) return refuse(422, 'a JSON body is required');
      if (op.bodySchema && record.body !== undefined) {
        let validate = validators.get(op);
        if (!validate) validators.set(op, (validate = validator(op.bodySchema)));
        if (!validate(record.body)) return refuse(422, `body does not match the description: ${(validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ')}`);
      }
      const authorization = req.headers.authorization ?? '';

      if (op.template === '/app/installations/{installation_id}/access_tokens') {
        const jwtProblem = checkJwt(authorization, options.app?.appId, publicKey);
        if (jwtProblem) return refuse(401, jwtProblem);
        const id = Number(record.params.installation_id);
        const token = `ghs_${randomBytes(18).toString('hex')}`;
        issuedTokens.set(id, token);
        return answer(201, { token, expires_at: new Date(Date.now() + 3600_000).toISOString(), permissions: { statuses: 'write' }, repository_selection: 'all' });
      }
      if (op.template === '/repos/{owner}/{repo}/installation') {
        const jwtProblem = checkJwt(authorization, options.app?.appId, publicKey);
        if (jwtProblem) return refuse(401, jwtProblem);
        return answer(200, { id: options.app!.installationId ?? 1, app_id: options.app!.appId, target_type: 'Organization', account: { login: record.params.owner }, permissions: { statuses: 'write' }, events: ['push'] });
      }
      if (op.template === '/repos/{owner}/{repo}/statuses/{sha}') {
        const accepted = [options.token, ...issuedTokens.values()].filter(Boolean).map((t) => `token ${t}`);
        if (!accepted.includes(authorization)) return refuse(401, 'Bad credentials');
        if (req.headers['x-github-api-version'] !== '2022-11-28') return refuse(400, `x-github-api-version ${JSON.stringify(req.headers['x-github-api-version'])} is not a supported API version`);
        if (!/^[0-9a-f]{40}$/.test(record.params.sha ?? '')) return refuse(422, 'No commit found for SHA');
        const body = record.body as { state: string; context?: string; description?: string; target_url?: string };
        if ((body.description ?? '').length > 140) return refuse(422, 'Validation Failed: description is too long (maximum is 140 characters)');
        const fault = faults.shift();
        if (fault) {
          if ('rateLimitResetInMs' in fault) {
            record.status = 403;
            return answer(403, { message: 'API rate limit exceeded for installation.', documentation_url: 'https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting' }, {
              'x-ratelimit-limit': '5000',
              'x-ratelimit-remaining': '0',
              'x-ratelimit-used': '5000',
              'x-ratelimit-resource': 'core',
              'x-ratelimit-reset': String(Math.ceil((Date.now() + fault.rateLimitResetInMs) / 1000)),
            });
          }
          if ('retryAfterSeconds' in fault) return answer(403, { message: 'You have exceeded a secondary rate limit.' }, { 'retry-after': String(fault.retryAfterSeconds) });
          return answer(fault.status, { message: fault.status >= 500 ? 'Server Error' : 'Not Found' });
        }
        const { owner, repo, sha } = record.params as { owner: string; repo: string; sha: string };
        posted.push({ owner, repo, sha, state: body.state, context: body.context ?? 'default', ...(body.description !== undefined ? { description: body.description } : {}), ...(body.target_url !== undefined ? { target_url: body.target_url } : {}), authorization, seq });
        const now = new Date().toISOString();
        return answer(201, {
          url: `${serverUrl}/repos/${owner}/${repo}/statuses/${sha}`,
          id: posted.length,
          node_id: `SC_${posted.length}`,
          state: body.state,
          description: body.description ?? null,
          target_url: body.target_url ?? null,
          context: body.context ?? 'default',
          created_at: now,
          updated_at: now,
          creator: { login: 'oci-build', id: 1, type: 'Bot' },
        }, { location: `${serverUrl}/repos/${owner}/${repo}/statuses/${sha}` });
      }
      return refuse(404, `${op.template} is not served by this fake`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: serverUrl,
    requests,
    problems,
    issuedTokens,
    statuses: () => [...posted],
    failNextStatuses: (...next) => void faults.push(...next),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Why an App's JWT is not acceptable (undefined: it is): RS256, signed by the App's key, iss = the App id, at most 10 minutes. */
function checkJwt(authorization: string, appId: number | undefined, publicKey: KeyObject | undefined): string | undefined {
  if (!publicKey || appId === undefined) return 'this server has no GitHub App';
  const match = /^bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/i.exec(authorization);
  if (!match) return 'A JSON web token could not be decoded';
  const [, head, payload, signature] = match as unknown as [string, string, string, string];
  const header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8')) as { alg?: string };
  if (header.alg !== 'RS256') return `the JWT's alg is ${header.alg}, not RS256`;
  if (!verify('sha256', Buffer.from(`${head}.${payload}`), publicKey, Buffer.from(signature, 'base64url'))) return 'the JWT is not signed by the App\'s key';
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iss?: unknown; iat?: number; exp?: number };
  if (String(claims.iss) !== String(appId)) return `the JWT's iss ${JSON.stringify(claims.iss)} is not the App id ${appId}`;
  const now = Date.now() / 1000;
  if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.exp <= now || claims.exp - claims.iat > 660 || claims.iat > now + 60) {
    return `the JWT's iat/exp (${claims.iat}/${claims.exp}) are not a lifetime of at most 10 minutes around now`;
  }
  return undefined;
}
