// A person's request to cancel a build (POST /builds/:id/cancel, `oci-build cancel`), and the port
// through which the worker running that build hears of it. The queue's side is
// src/queue/cancel-requests.ts (a key of the status bucket per request, one watch per worker).
//
// Who cancelled is written into the record's `cancelledBy`: a supersede names the newer build's
// id; a person is `api:token#<n>`, the position of the bearer token they used in
// server.apiTokens (from 1), never the token itself.

/** What a cancel request says. */
export interface CancelRequest {
  /** The build to cancel. */
  id: string;
  /** Who asked: `api:token#<n>` (see cancelledByToken). */
  by: string;
  /** Their reason, if they gave one (at most MAX_CANCEL_REASON characters, one line). */
  reason?: string;
  requestedAt: string;
}

/** The longest reason kept; longer ones are cut. */
export const MAX_CANCEL_REASON = 200;

/** The worker's view of cancel requests. */
export interface CancelRequestWatch {
  /**
   * Tells `listener` of every request made from now on, for as long as it runs (one watch per
   * worker, not per build). When the watch starts, and each time it starts again after a failure,
   * the requests of `running()` (the ids being built now) are looked up too, so a request made
   * while it was not watching is not missed. Returns the stop function.
   */
  watch(running: () => string[], listener: (request: CancelRequest) => void): () => void;
  /** The request for this build, if one was made. */
  get(id: string): Promise<CancelRequest | undefined>;
}

/** `cancelledBy` of a person who used the n-th token of server.apiTokens (n from 1). */
export function cancelledByToken(position: number): string {
  return `api:token#${position}`;
}

/** A reason as it is kept: one line, trimmed, cut at MAX_CANCEL_REASON; undefined when empty. */
export function cleanCancelReason(reason: unknown): string | undefined {
  if (typeof reason !== 'string') return undefined;
  // Control characters (newlines, escapes) would let a reason fake lines in a log or a terminal.
  // eslint-disable-next-line no-control-regex
  const line = reason.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return line ? line.slice(0, MAX_CANCEL_REASON) : undefined;
}

/** The message of the build's error once it is cancelled on request. */
export function cancelMessage(request: Pick<CancelRequest, 'by' | 'reason'>): string {
  return `Cancelled by ${request.by}${request.reason ? `: ${request.reason}` : ''}`;
}

/** The record's fields that say who cancelled it. */
export function cancelFields(request: Pick<CancelRequest, 'by' | 'reason'>): { cancelledBy: string; cancelReason?: string } {
  return { cancelledBy: request.by, ...(request.reason ? { cancelReason: request.reason } : {}) };
}
