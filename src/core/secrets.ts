// Every secret the process knows (the Git token, the webhook secret, API tokens, NATS credentials,
// credentials found in a remote URL), and the one function that removes them from text before it
// is written anywhere: build logs, the daemons' JSON lines, records' error messages, the CLI's
// errors. Secrets are registered once, where they enter the process (the compiled config, a
// remote URL), so that a sink needs no list of its own.
//
// Each secret is masked in the forms a tool may print it in: as it is; URL-encoded
// (encodeURIComponent, and the form encoding where a space is `+`); JSON-escaped (a daemon's log
// line is JSON); and base64, standard and URL-safe. A secret inside a longer base64 string —
// `Authorization: Basic base64("x-access-token:" + token)` — is encoded differently depending on
// where its first byte falls in a 3-byte group, so for each of the three alignments the
// characters that depend on the secret's bytes alone (the stable middle) are masked: whatever
// surrounds it, no base64 run left in the text decodes to the secret.

/**
 * Shorter values are not registered: a 1–3 character "secret" (an empty password, `ci`, `git`)
 * would turn that string into *** everywhere in every log while protecting nothing (it is
 * guessable anyway), and its base64 middles would be 1–3 characters long, matching by chance in
 * any base64 text. Four was already the rule of runCommand's `secrets` option.
 */
export const MIN_SECRET_LENGTH = 4;

export const MASK = '***';

type Mask = (text: string) => string;

const identity: Mask = (text) => text;

/** A set of secrets and the compiled masker of them. The process has one (see below); tests make their own. */
export class SecretRegistry {
  private readonly values = new Set<string>();
  /** Undefined until first needed after a change; `identity` while the set is empty. */
  private compiled: Mask | undefined = identity;

  /** Adds a secret; empty, missing and too short values are ignored. */
  register(value: string | undefined | null): void {
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH || this.values.has(value)) return;
    this.values.add(value);
    this.compiled = undefined;
  }

  registerAll(values: Iterable<string | undefined | null>): void {
    for (const value of values) this.register(value);
  }

  get size(): number {
    return this.values.size;
  }

  /** `text` with every registered secret, in each of its encodings, replaced by `***`. */
  mask(text: string): string {
    return (this.compiled ??= compile(this.values))(text);
  }

  /**
   * A masker for the registered secrets plus `extra` (per-use secrets, such as runCommand's
   * `secrets` option). It follows later registrations too.
   */
  maskerWith(extra: ReadonlyArray<string | undefined> | undefined): Mask {
    const own = [...new Set((extra ?? []).filter((s): s is string => typeof s === 'string' && s.length >= MIN_SECRET_LENGTH))];
    if (own.length === 0) return (text) => this.mask(text);
    const ownMask = compile(own);
    // Registered and extra secrets may contain each other: mask with one list, longest first.
    let combined: { size: number; mask: Mask } | undefined;
    return (text) => {
      if (this.values.size === 0) return ownMask(text);
      if (combined?.size !== this.values.size) combined = { size: this.values.size, mask: compile([...this.values, ...own]) };
      return combined.mask(text);
    };
  }
}

/** The forms of `secret` that are masked (see the file's comment), each at least 4 characters. */
export function encodedForms(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set<string>([
    secret,
    encodeURIComponent(secret),
    new URLSearchParams([['', secret]]).toString().slice(1),
    JSON.stringify(secret).slice(1, -1),
    bytes.toString('base64'),
    bytes.toString('base64url'),
  ]);
  for (const middle of base64Middles(bytes)) {
    forms.add(middle);
    forms.add(toBase64Url(middle));
  }
  return [...forms].filter((form) => form.length >= MIN_SECRET_LENGTH);
}

/**
 * For each alignment a (0, 1, 2: the secret's first byte is byte a of a 3-byte group), the
 * standard-base64 characters whose 6 bits all come from the secret: characters
 * ceil(8a/6) … floor(8(a+n)/6)-1 of base64(a filler bytes + secret).
 */
export function base64Middles(bytes: Buffer): string[] {
  const middles: string[] = [];
  for (let align = 0; align < 3; align++) {
    const encoded = Buffer.concat([Buffer.alloc(align), bytes]).toString('base64');
    const first = Math.ceil((8 * align) / 6);
    const end = Math.floor((8 * (align + bytes.length)) / 6);
    if (end > first) middles.push(encoded.slice(first, end));
  }
  return middles;
}

function toBase64Url(base64: string): string {
  return base64.replace(/\+/g, '-').replace(/\//g, '_');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * One regular expression of every form of every secret, longest first: at each position the
 * longest form wins, so a secret that contains another is masked whole, and one pass leaves no
 * form in the text (what it replaced is `***`, which no token-like form contains).
 */
function compile(secrets: Iterable<string>): Mask {
  const forms = [...new Set([...secrets].flatMap(encodedForms))].sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  if (forms.length === 0) return identity;
  const pattern = new RegExp(forms.map(escapeRegExp).join('|'), 'g');
  return (text) => text.replace(pattern, MASK);
}

/** The process's secrets: everything that writes a line masks these. */
const processSecrets = new SecretRegistry();

/** Registers a secret of this process (ignored when missing or shorter than 4 characters). */
export function registerSecret(value: string | undefined | null): void {
  processSecrets.register(value);
}

export function registerSecrets(values: Iterable<string | undefined | null>): void {
  processSecrets.registerAll(values);
}

/** True once a secret is registered (sinks may skip masking before that). */
export function hasSecrets(): boolean {
  return processSecrets.size > 0;
}

/** `text` without any secret of this process, in any of its encodings. Identity when none is registered. */
export function maskSecrets(text: string): string {
  return processSecrets.mask(text);
}

/** A masker for this process's secrets plus `extra` ones (only for this use). */
export function secretMasker(extra?: ReadonlyArray<string | undefined>): (text: string) => string {
  return processSecrets.maskerWith(extra);
}

/**
 * The secrets a URL carries: its password, or its username when it has none (`https://TOKEN@host/`,
 * `nats://token@host`); a username beside a password is a name. Decoded and as written.
 */
export function urlSecrets(text: string): string[] {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return [];
  }
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  if (url.password !== '') return [decode(url.password), url.password];
  return url.username !== '' ? [decode(url.username), url.username] : [];
}
