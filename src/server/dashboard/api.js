// The dashboard's calls to serve's JSON API, with the API token of this tab (sessionStorage: it
// goes when the tab closes; it is never put in a URL or in the page).

const TOKEN_KEY = 'oci-build.apiToken';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message, code, hint) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }

  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

/** A request to serve; network failures become ApiError(0). Resolves with the Response, whatever its status. */
export async function request(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const h = { accept: 'application/json', ...headers };
  const token = getToken();
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  try {
    return await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store', credentials: 'omit' });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(0, `serve cannot be reached (${err.message})`, 'E_NETWORK');
  }
}

export async function errorOf(response) {
  let data;
  try {
    data = await response.json();
  } catch {
    data = undefined;
  }
  return new ApiError(response.status, data?.error ?? `HTTP ${response.status}`, data?.code, data?.hint);
}

/** GET/POST and parse the JSON answer; ApiError for any non-2xx. */
export async function json(path, options) {
  const response = await request(path, options);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** What the page says about an error: auth errors say what to do about the token. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err?.message ?? err);
  if (err.status === 401) {
    return getToken()
      ? `The server refused the API token (${err.message}). Enter a valid one: one of serve's server.apiTokens.`
      : `This server needs an API token: enter one of serve's server.apiTokens with "API token" above.`;
  }
  if (err.status === 403) return `The server refused the request: ${err.message}`;
  return `${err.message}${err.hint ? ` — ${err.hint}` : ''}`;
}
