// Which hosts a URL may name: the one rule behind `server.allowedHosts` (what a webhook may make a
// worker fetch) and `git.tokenHosts` (where the Git token may be sent).
//
// Every comparison is made on what WHATWG URL parsing (Node's `URL`) makes of the URL, never on
// the text: `http://github.com@evil.example/`, `HTTP://GITHUB.COM:443/`, `http://2130706433/`
// (127.0.0.1), `http://0x7f.1/` and `http://[::ffff:127.0.0.1]/` are all read as the host the
// HTTP client would connect to. Entries are exact host names or IP literals, optionally with a
// port; there are no wildcards, so an IP literal, `localhost`, a link-local or a private address
// is allowed only when it is listed as such. A trailing dot makes another host (`github.com.` is
// not `github.com`): it is refused unless listed with it.

export interface HostEntry {
  /** As `URL#hostname` gives it: lowercased, punycode, IPv4 normalised, IPv6 in brackets. */
  hostname: string;
  /** Undefined: the URL scheme's default port only. */
  port?: number;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/** Parses `host` or `host:port` (IPv6 in brackets). Throws TypeError on anything else. */
export function parseHostEntry(entry: string): HostEntry {
  const trimmed = entry.trim();
  if (trimmed === '' || /[/?#@\\\s]/.test(trimmed)) throw new TypeError(`${JSON.stringify(entry)} is not a host or host:port`);
  let url: URL;
  try {
    url = new URL(`http://${trimmed}`);
  } catch {
    throw new TypeError(`${JSON.stringify(entry)} is not a host or host:port`);
  }
  // `URL` drops a port equal to http's default: keep what was written.
  const written = /:(\d+)$/.exec(trimmed)?.[1];
  return { hostname: url.hostname, ...(written !== undefined ? { port: Number(written) } : {}) };
}

/** The port a client connects to for this URL. */
export function effectivePort(url: URL): number | undefined {
  return url.port !== '' ? Number(url.port) : DEFAULT_PORTS[url.protocol];
}

/** True when `url` names one of `entries` (already parsed). */
export function hostAllowed(url: URL, entries: readonly HostEntry[]): boolean {
  return entries.some((entry) =>
    entry.hostname === url.hostname && (entry.port === undefined ? url.port === '' : effectivePort(url) === entry.port),
  );
}

/** Parses a configured list, skipping nothing: a bad entry throws (config validation reports it). */
export function parseHostList(entries: readonly string[]): HostEntry[] {
  return entries.map(parseHostEntry);
}

/** `url`'s host as a configuration entry would name it (`host` or `host:port`), for messages. */
export function hostLabel(url: URL): string {
  return url.port === '' ? url.hostname : `${url.hostname}:${url.port}`;
}

/**
 * 127.0.0.0/8, ::1 (also as an IPv4-mapped address) and `localhost`: traffic that never leaves the
 * machine. Not `*.localhost`: RFC 6761 reserves it, but glibc (nsswitch `files dns`) asks DNS for
 * it, and a DNS answer may name any address.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === 'localhost') return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  return host === '[::1]' || /^\[::ffff:(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|7f[0-9a-f]{2}:[0-9a-f]{1,4})\]$/.test(host);
}
