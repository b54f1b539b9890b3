// BuildControl (build-actions.ts) over NATS: cancel requests in the status bucket
// (queue/cancel-requests.ts) and the workers of the NATS services API (queue/workers.ts), on the
// connection the intake opened.

import { KvCancelRequests } from '../queue/cancel-requests.js';
import type { NatsContext } from '../queue/nats.js';
import { listWorkers } from '../queue/workers.js';
import type { BuildControl, WorkerView } from './build-actions.js';

/** How long one answer of the workers serves every GET /workers (dashboards poll it; it may be public). */
const WORKERS_FRESH_MS = 1_000;

export function queueBuildControl(ctx: NatsContext): BuildControl {
  const cancels = new KvCancelRequests(ctx);
  let workers: { at: number; list: Promise<WorkerView[]> } | undefined;
  return {
    requestCancel: (request) => cancels.request(request),
    cancelQueued: (request) => cancels.cancelQueued(request),
    endLog: (id, line) => cancels.endLog(id, line),
    listWorkers: () => {
      // One scatter-gather at a time, its answer shared for a second: many open dashboards (or a
      // public one) cost NATS one request a second, not one per page.
      if (!workers || Date.now() - workers.at > WORKERS_FRESH_MS) {
        // Workers answer from memory within milliseconds: a page polling this must not wait 2 s.
        const list = listWorkers(ctx, { maxWaitMs: 1_000, quietMs: 150 });
        workers = { at: Date.now(), list };
        list.catch(() => {
          if (workers?.list === list) workers = undefined;
        });
      }
      return workers.list;
    },
  };
}
