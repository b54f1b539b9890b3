// #/builds: the newest builds first (GET /builds), filtered by repository, branch and status
// (kept in the hash, so a filtered list can be bookmarked), refreshed every few seconds.

import { json } from './api.js';
import { buildDuration, formatDuration, h, poll, relativeTime, statusBadge } from './dom.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped'];
const LIMIT = 50;

export function mountBuilds(container, params, ctx) {
  const repo = h('input', { type: 'search', name: 'repo', placeholder: 'repository (owner/name)', 'aria-label': 'Repository', value: params.get('repo') ?? '' });
  const branch = h('input', { type: 'search', name: 'branch', placeholder: 'branch', 'aria-label': 'Branch', value: params.get('branch') ?? '' });
  const status = h('select', { name: 'status', 'aria-label': 'Status' }, h('option', { value: '' }, 'any status'), STATUSES.map((s) => h('option', { value: s }, s)));
  status.value = STATUSES.includes(params.get('status')) ? params.get('status') : '';
  const body = h('tbody');
  const summary = h('p', { class: 'muted' });
  container.append(
    h('h1', {}, 'Builds'),
    h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, repo, branch, status),
    h('table', { class: 'builds' }, h('thead', {}, h('tr', {}, ['Status', 'Build', 'Repository', 'Branch', 'Commit', 'Trigger', 'Created', 'Duration'].map((c) => h('th', {}, c)))), body),
    summary,
  );

  const query = () => {
    const q = new URLSearchParams();
    if (repo.value.trim()) q.set('repo', repo.value.trim());
    if (branch.value.trim()) q.set('branch', branch.value.trim());
    if (status.value) q.set('status', status.value);
    return q;
  };
  let generation = 0;
  const refresh = async () => {
    const mine = ++generation;
    const q = query();
    q.set('limit', String(LIMIT));
    try {
      const { builds } = await json(`/builds?${q}`);
      if (mine !== generation) return;
      ctx.clear();
      body.replaceChildren(...builds.map(row));
      summary.textContent = builds.length === 0 ? 'No builds match.' : builds.length === LIMIT ? `The newest ${LIMIT}.` : '';
    } catch (err) {
      if (mine === generation) ctx.report(err);
    }
  };
  let debounce;
  const onFilter = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      const q = query().toString();
      history.replaceState(null, '', `#/builds${q ? `?${q}` : ''}`);
      void refresh();
    }, 250);
  };
  for (const input of [repo, branch]) input.addEventListener('input', onFilter);
  status.addEventListener('change', onFilter);
  const stop = poll(refresh, 3000);
  return () => {
    clearTimeout(debounce);
    stop();
  };
}

function row(record) {
  const href = `#/builds/${encodeURIComponent(record.id)}`;
  const repo = record.repository ?? {};
  return h(
    'tr',
    { dataset: { id: record.id, status: record.status } },
    h('td', { 'data-label': 'Status' }, statusBadge(record.status)),
    h('td', { 'data-label': 'Build' }, h('a', { href, class: 'id' }, record.id), record.rebuildOf ? h('span', { class: 'muted' }, ' (rebuild)') : null),
    h('td', { 'data-label': 'Repository' }, repo.fullName ?? ''),
    h('td', { 'data-label': 'Branch' }, repo.branch ?? repo.tag ?? ''),
    h('td', { 'data-label': 'Commit', class: 'mono' }, (repo.commit ?? '').slice(0, 7)),
    h('td', { 'data-label': 'Trigger' }, record.trigger ?? ''),
    h('td', { 'data-label': 'Created', title: record.createdAt }, relativeTime(record.createdAt)),
    h('td', { 'data-label': 'Duration' }, formatDuration(buildDuration(record))),
  );
}
