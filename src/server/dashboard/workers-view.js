// #/workers: the live workers (GET /workers: the NATS services API) and what each runs.

import { json } from './api.js';
import { h, poll, relativeTime } from './dom.js';

export function mountWorkers(container, ctx) {
  const list = h('div', { class: 'workers' });
  container.append(h('h1', {}, 'Workers'), list);
  const stop = poll(async () => {
    try {
      const { workers } = await json('/workers');
      ctx.clear();
      list.replaceChildren(...(workers.length === 0 ? [h('p', { class: 'muted' }, 'No worker is connected.')] : workers.map(workerCard)));
    } catch (err) {
      ctx.report(err);
    }
  }, 3000);
  return stop;
}

function workerCard(worker) {
  const running = worker.running ?? [];
  return h(
    'section',
    { class: 'card worker', dataset: { worker: worker.name } },
    h('h2', {}, worker.name),
    h('p', {}, h('span', { class: 'muted' }, 'state '), worker.state ?? 'unknown', h('span', { class: 'muted' }, ' · running '), `${running.length} of ${worker.concurrency}`),
    running.length === 0
      ? h('p', { class: 'muted' }, 'Idle')
      : h(
          'ul',
          {},
          running.map((job) =>
            h('li', {}, h('a', { href: `#/builds/${encodeURIComponent(job.jobId)}`, class: 'mono' }, job.jobId), ` ${job.repository}${job.branch ? ` @ ${job.branch}` : ''}, started ${relativeTime(job.startedAt)}`),
          ),
        ),
  );
}
