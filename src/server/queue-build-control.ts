// BuildControl (build-actions.ts) over NATS: cancel requests in the status bucket
// (queue/cancel-requests.ts) and the workers of the NATS services API (queue/workers.ts), on the
// connection the intake opened.

import { KvCancelRequests } from '../queue/cancel-requests.js';
import type { NatsContext } from '../queue/nats.js';
import { listWorkers } from '../queue/workers.js';
import type { BuildControl } from './build-actions.js';

export function queueBuildControl(ctx: NatsContext): BuildControl {
  const cancels = new KvCancelRequests(ctx);
  return {
    requestCancel: (request) => cancels.request(request),
    cancelQueued: (request) => cancels.cancelQueued(request),
    endLog: (id, line) => cancels.endLog(id, line),
    // Workers answer from memory within milliseconds: a page polling this must not wait 2 s.
    listWorkers: () => listWorkers(ctx, { maxWaitMs: 1_000, quietMs: 150 }),
  };
}
