// A person asked to cancel a build this worker runs (core/cancel-request.ts): abort its pipeline,
// which kills the process group of the command running (exec/run-command.ts), and remember who
// asked, for the record (settlement.ts writes cancelledBy and cancelReason).

import { cancelMessage, type CancelRequest } from '../core/cancel-request.js';
import { CancelledError } from '../core/errors.js';
import type { ActiveJob } from './settlement.js';

/** Cancels `active` on `request` unless it is already ending; true when it did. */
export function cancelOnRequest(active: ActiveJob, request: CancelRequest): boolean {
  if (request.id !== active.job.id || active.controller.signal.aborted) return false;
  active.cancelRequest = request;
  active.logger.info({ cancelledBy: request.by, ...(request.reason ? { reason: request.reason } : {}) }, 'cancel requested: cancelling');
  active.controller.abort(new CancelledError(cancelMessage(request)));
  return true;
}
