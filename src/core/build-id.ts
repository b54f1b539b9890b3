// The build-id grammar, one for every place an id arrives or becomes something: a file name in
// the local store, a NATS KV key and Nats-Msg-Id, a path segment of the status API. A letter or
// digit, then letters, digits, `.`, `_` and `-`; at most 128 characters (so no `..`-only name, no
// separator, nothing a KV key or a file system refuses). Local ids (20261129-080102-ab12cd) and
// webhook ids (gh-<delivery uuid>) both fit.

export const BUILD_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isBuildId(id: unknown): id is string {
  return typeof id === 'string' && BUILD_ID_PATTERN.test(id);
}
