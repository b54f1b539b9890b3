// NATS and JetStream errors by their codes, never by their message text. JetStream API errors
// carry `api_error.err_code` (nats-server's errors.json: the ErrorIdentifier of each kind); the
// JetStreamPublisher's own errors carry it as `errCode`. One table, one predicate.

import { ErrorCode, NatsError } from 'nats';
import { JetStreamPublishError } from './js-publisher.js';

export const JsErrorCode = {
  /** "JetStream system temporarily unavailable": no meta leader yet, or one being elected. */
  ClusterNotAvailable: 10008,
  /** "JetStream cluster can not handle request": asked of a node that is not (or no longer) the leader. */
  ClusterNotLeader: 10009,
  ConsumerExists: 10013,
  ConsumerNotFound: 10014,
  NoMessageFound: 10037,
  StreamNameInUse: 10058,
  StreamNotFound: 10059,
  WrongLastSequence: 10071,
  /** nats-server ≥ 2.10 says this where 2.9 says ConsumerExists. */
  ConsumerAlreadyExists: 10148,
} as const;

export type JsErrorCodeValue = (typeof JsErrorCode)[keyof typeof JsErrorCode];

/** The JetStream API error code of `err` (nats.js NatsError or our publisher's), if it has one. */
export function jsErrorCode(err: unknown): number | undefined {
  if (err instanceof JetStreamPublishError) return err.errCode;
  const apiError = (err as { api_error?: { err_code?: unknown } } | null)?.api_error;
  return typeof apiError?.err_code === 'number' ? apiError.err_code : undefined;
}

/** True when `err` is a JetStream API error with one of `codes`. */
export function isJsError(err: unknown, ...codes: JsErrorCodeValue[]): boolean {
  const code = jsErrorCode(err);
  return code !== undefined && (codes as number[]).includes(code);
}

/**
 * JetStream not answering yet, rather than refusing: no answer in time or no responders (a stream's
 * or the meta group's leader being elected, a node too busy to answer), a dropped connection, or an
 * answer that says the cluster is not ready. Worth asking again a moment later; an answer that
 * refuses the request (replicas a single server cannot hold, a permission) is not.
 */
export function isJetStreamSettling(err: unknown): boolean {
  const code = jsErrorCode(err);
  if (code !== undefined) return code === JsErrorCode.ClusterNotAvailable || code === JsErrorCode.ClusterNotLeader;
  return isNoResponders(err) || (err instanceof NatsError && (err.code === ErrorCode.Timeout || err.code === ErrorCode.Disconnect || err.code === ErrorCode.JetStream408RequestTimeout));
}

/** No server took the request: nobody subscribes to that subject (for the JetStream API, no JetStream yet, or none at all). */
export function isNoResponders(err: unknown): boolean {
  return err instanceof NatsError && err.code === ErrorCode.NoResponders;
}
