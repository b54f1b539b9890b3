// #/builds/<id>: one build — status, commit, trigger, the phases on a timeline, the images with
// their tags and digests, warnings and errors, the log (log-view.js), and Cancel / Rebuild.
// The record is read again every 2 s until it is final.

import { json } from './api.js';
import { buildDuration, copyButton, formatDuration, h, htmlUrlOf, poll, relativeTime, statusBadge } from './dom.js';
import { LogView } from './log-view.js';

const FINAL = ['succeeded', 'failed', 'cancelled', 'skipped'];

export function mountBuild(container, id, ctx) {
  const summary = h('div', { class: 'summary' }, h('p', { class: 'muted' }, 'Loading…'));
  const log = new LogView(id, ctx, () => void refresh());
  container.append(summary, log.element);
  let record;
  let stopPoll = () => undefined;
  let gone = false;

  const refresh = async () => {
    try {
      record = await json(`/builds/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 404) {
        summary.replaceChildren(h('h1', {}, id), h('p', {}, 'No such build.'));
        stopPoll();
        return;
      }
      ctx.report(err);
      return;
    }
    if (gone) return;
    summary.replaceChildren(...renderSummary(record, ctx, () => void refresh()).filter(Boolean));
    log.update(record.status);
    if (FINAL.includes(record.status)) stopPoll();
  };
  stopPoll = poll(refresh, 2000);
  return () => {
    gone = true;
    stopPoll();
    log.stop();
  };
}

function renderSummary(record, ctx, refresh) {
  const repo = record.repository ?? {};
  const web = htmlUrlOf(repo.cloneUrl);
  const commit = repo.commit ? (web ? h('a', { href: `${web}/commit/${encodeURIComponent(repo.commit)}`, rel: 'noopener noreferrer', target: '_blank', class: 'mono' }, repo.commit) : h('span', { class: 'mono' }, repo.commit)) : '';
  const facts = [
    ['Repository', web ? h('a', { href: web, rel: 'noopener noreferrer', target: '_blank' }, repo.fullName ?? web) : (repo.fullName ?? '')],
    [repo.tag ? 'Tag' : 'Branch', repo.tag ?? repo.branch ?? repo.ref ?? ''],
    ['Commit', commit],
    ['Trigger', record.trigger + (record.deliveryId ? ` (delivery ${record.deliveryId})` : '')],
    ['Created', `${record.createdAt} (${relativeTime(record.createdAt)})`],
    record.startedAt ? ['Started', record.startedAt] : undefined,
    record.finishedAt ? ['Finished', record.finishedAt] : undefined,
    buildDuration(record) !== undefined ? ['Duration', formatDuration(buildDuration(record))] : undefined,
    record.worker ? ['Worker', record.worker] : undefined,
    record.rebuildOf ? ['Rebuild of', h('a', { href: `#/builds/${encodeURIComponent(record.rebuildOf)}`, class: 'mono' }, record.rebuildOf)] : undefined,
    record.cancelledBy ? ['Cancelled by', record.cancelledBy + (record.cancelReason ? ` — ${record.cancelReason}` : '')] : undefined,
    record.skipReason ? ['Skipped', record.skipReason] : undefined,
    record.waitingFor
      ? [
          'Waiting for',
          h('span', {}, 'build ', h('a', { href: `#/builds/${encodeURIComponent(record.waitingFor.buildId)}`, class: 'mono' }, record.waitingFor.buildId),
            `${record.waitingFor.worker ? ` on ${record.waitingFor.worker}` : ''} to make the image of ${record.waitingFor.project} (same inputs), since ${relativeTime(record.waitingFor.since)}`),
        ]
      : undefined,
    record.notifications?.length ? ['Commit statuses', notifications(record.notifications)] : undefined,
  ].filter(Boolean);
  return [
    h('h1', {}, statusBadge(record.status), ' ', h('span', { class: 'mono' }, record.id)),
    actions(record, ctx, refresh),
    h('section', { class: 'card' }, h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
    problems(record),
    timeline(record),
    images(record),
  ];
}

/** The last state posted (or not) per GitHub status context. */
function notifications(list) {
  const last = new Map();
  for (const n of list) last.set(n.context, n);
  return h('ul', { class: 'messages' }, [...last.values()].map((n) => h('li', { class: n.error ? 'error' : undefined }, `${n.context}: ${n.state}${n.error ? ` (not posted: ${n.error})` : ''}`)));
}

function actions(record, ctx, refresh) {
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel-build' }, 'Cancel build');
  const rebuild = h('button', { type: 'button', class: 'secondary', id: 'rebuild-build' }, 'Rebuild');
  cancel.hidden = FINAL.includes(record.status);
  rebuild.hidden = !(record.repository?.cloneUrl && record.repository?.commit);
  const needToken = () => {
    if (ctx.hasToken()) return false;
    ctx.report('Cancel and rebuild need an API token: enter one of serve\'s server.apiTokens with "API token" above.');
    return true;
  };
  cancel.addEventListener('click', async () => {
    if (needToken() || !confirm(`Cancel build ${record.id}?`)) return;
    cancel.disabled = true;
    try {
      const answer = await json(`/builds/${encodeURIComponent(record.id)}/cancel`, { method: 'POST', body: { reason: 'cancelled from the dashboard' } });
      ctx.report(answer.status === 'cancelled' ? 'Cancelled.' : 'Cancelling: the worker is stopping the build.', 'info');
      refresh();
    } catch (err) {
      cancel.disabled = false;
      ctx.report(err);
    }
  });
  rebuild.addEventListener('click', async () => {
    if (needToken()) return;
    rebuild.disabled = true;
    try {
      const answer = await json(`/builds/${encodeURIComponent(record.id)}/rebuild`, { method: 'POST', headers: { 'idempotency-key': crypto.randomUUID() } });
      ctx.navigate(`#/builds/${encodeURIComponent(answer.jobId)}`);
    } catch (err) {
      rebuild.disabled = false;
      ctx.report(err);
    }
  });
  return h('div', { class: 'actions' }, cancel, rebuild);
}

function problems(record) {
  const errors = [];
  if (record.error) errors.push(`${record.error.phase}: ${record.error.message} (${record.error.code})`);
  for (const p of record.phases ?? []) if (p.error && p.error !== record.error?.message) errors.push(`${p.name}${p.project ? ` ${p.project}` : ''}: ${p.error}`);
  const warnings = [...(record.warnings ?? []), ...(record.phases ?? []).filter((p) => p.warning).map((p) => `${p.name}: ${p.warning}`)];
  if (errors.length === 0 && warnings.length === 0) return null;
  return h(
    'section',
    { class: 'card problems' },
    errors.length ? [h('h2', { class: 'error' }, 'Errors'), h('ul', { class: 'messages error' }, errors.map((e) => h('li', {}, e)))] : null,
    warnings.length ? [h('h2', { class: 'warn' }, 'Warnings'), h('ul', { class: 'messages warn' }, warnings.map((w) => h('li', {}, w)))] : null,
  );
}

/** Phases as bars along the build's time (positions in steps of 2 %: CSS classes, no inline style). */
function timeline(record) {
  const phases = record.phases ?? [];
  if (phases.length === 0) return null;
  const start = Math.min(...phases.map((p) => Date.parse(p.startedAt)).filter((t) => !Number.isNaN(t)));
  const end = Math.max(...phases.map((p) => Date.parse(p.startedAt) + (p.durationMs ?? 0)), Date.parse(record.finishedAt ?? '') || 0);
  const span = Math.max(end - start, 1);
  const step = (fraction) => Math.min(100, Math.max(0, Math.round((fraction * 100) / 2) * 2));
  return h(
    'section',
    {},
    h('h2', {}, 'Phases'),
    h(
      'div',
      { class: 'timeline card' },
      phases.map((p) => {
        const left = step((Date.parse(p.startedAt) - start) / span);
        const width = Math.max(2, Math.min(100 - left, step((p.durationMs ?? 0) / span)));
        return h(
          'div',
          { class: 'phase', dataset: { phase: p.name, status: p.status } },
          h('span', {}, `${p.name}${p.project ? ` · ${p.project}` : ''}${p.cached ? ' (cached)' : ''}`),
          h('span', { class: 'track', title: `${p.status}, ${formatDuration(p.durationMs)}` }, h('span', { class: `fill status-${p.status} l${left} w${width}` })),
          h('span', { class: 'dur' }, p.status === 'running' ? 'running' : formatDuration(p.durationMs)),
        );
      }),
    ),
  );
}

function images(record) {
  const list = record.images ?? [];
  if (list.length === 0) return null;
  return h(
    'section',
    {},
    h('h2', {}, 'Images'),
    h(
      'div',
      { class: 'images' },
      list.map((image) =>
        h(
          'div',
          { class: 'card image' },
          h('div', {}, h('strong', { class: 'mono' }, image.repository), image.project && image.project !== '.' ? h('span', { class: 'muted' }, ` (${image.project})`) : null, h('span', { class: 'muted' }, image.pushed ? ' · pushed' : ' · local')),
          h('div', { class: 'tags' }, (image.tags ?? []).map((tag) => h('span', { class: 'chip mono' }, tag, copyButton(`${image.repository}:${tag}`)))),
          image.digest ? h('div', {}, h('span', { class: 'chip mono digest' }, image.digest, copyButton(`${image.repository}@${image.digest}`, 'Copy reference'))) : null,
        ),
      ),
    ),
  );
}
