// What becomes of one delivery of a job ("errors as signals"), decided in one place, with no I/O:
//
//   before the build                                          after the build
//   record already final       → ack (its ack was lost)       shutdown cancelled it   → hand back
//   delivery > maxDeliveries   → final failed (gave up)       superseded, cancelled   → superseded
//   a newer push of the branch → superseded                   transient, below max    → retry, backoff
//   the worker is draining     → hand back                    transient, at max       → final failed
//   otherwise                  → run                          otherwise               → final, as recorded
//
// A hand-back is not a failure: it costs a delivery but says nothing about the job.

import { ServiceUnavailableError } from '../core/errors.js';
import { isFinalStatus, type JobStatus } from '../core/types.js';
import { retryBackoffMs, type RetryBackoff } from './worker-options.js';

export type FinalStatus = Extract<JobStatus, 'succeeded' | 'failed' | 'cancelled' | 'skipped'>;

export interface OutcomeError {
  code: string;
  message: string;
  /** Infrastructure (NATS, network, a registry): worth another delivery. */
  transient: boolean;
}

export interface OutcomeInput {
  /** This delivery: 1 for the first. */
  attempt: number;
  maxDeliveries: number;
  /** false: the delivery has just arrived (build it or not?); true: its build has ended. */
  ran: boolean;
  /** The record's status when the delivery arrived (undefined: none yet). */
  existingStatus?: JobStatus;
  /** The id of the newer push of the same branch that supersedes this job. */
  supersededBy?: string;
  /** The worker is shutting down: before the build, it is draining; after, shutdown cancelled it. */
  handBack: boolean;
  /** After the build: the status its record ended with and the error, if any. */
  result?: { status: JobStatus; error?: OutcomeError };
  backoff: RetryBackoff;
  /** For tests: the jitter's randomness. */
  random?: () => number;
}

export type Outcome =
  /** Already finished by an earlier delivery: acknowledge, never build again. */
  | { kind: 'ack' }
  /** Build it. */
  | { kind: 'run' }
  /** Write the final record, end the log, acknowledge. */
  | { kind: 'final'; status: FinalStatus; error?: { code: string; message: string } }
  /** A final `cancelled` naming the newer build (cancelledBy), acknowledged. */
  | { kind: 'superseded'; by: string }
  /** Back to `queued` with a note; redelivered after `delayMs`. */
  | { kind: 'retry'; delayMs: number }
  /** Back to the queue at once for another worker; not counted as a failure. */
  | { kind: 'handBack' };

export function decideOutcome(input: OutcomeInput): Outcome {
  const { attempt, maxDeliveries } = input;
  if (!input.ran) {
    if (input.existingStatus !== undefined && isFinalStatus(input.existingStatus)) return { kind: 'ack' };
    if (attempt > maxDeliveries) {
      const gone = attempt - 1;
      const error = new ServiceUnavailableError(
        `Gave up after ${gone} ${gone === 1 ? 'delivery' : 'deliveries'}: the workers running this build stopped before it ended`,
      );
      return { kind: 'final', status: 'failed', error: { code: error.code, message: error.message } };
    }
    if (input.supersededBy !== undefined) return { kind: 'superseded', by: input.supersededBy };
    if (input.handBack) return { kind: 'handBack' };
    return { kind: 'run' };
  }

  if (input.handBack) return { kind: 'handBack' };
  const status = input.result?.status ?? 'failed';
  if (input.supersededBy !== undefined && status === 'cancelled') return { kind: 'superseded', by: input.supersededBy };
  const error = input.result?.error;
  if (error?.transient) {
    if (attempt < maxDeliveries) return { kind: 'retry', delayMs: retryBackoffMs(attempt, input.backoff, input.random) };
    return { kind: 'final', status: 'failed', error: { code: error.code, message: `${error.message} (gave up after ${attempt} attempts)` } };
  }
  return {
    kind: 'final',
    status: isFinalStatus(status) ? (status as FinalStatus) : 'failed',
    ...(error ? { error: { code: error.code, message: error.message } } : {}),
  };
}
