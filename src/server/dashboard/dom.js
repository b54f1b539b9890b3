// Small DOM and formatting helpers of the dashboard. Every text goes in as a text node, never as
// HTML (the log's HTML comes from ansi.js, which escapes it).

/** An element: h('a', { href, class: 'x', dataset: { id } }, 'text', child, …). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function statusBadge(status) {
  return h('span', { class: `status status-${status}`, dataset: { status } }, status);
}

export function formatDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((now - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 16).replace('T', ' ');
}

/** The build's duration: finished − started, or so far. */
export function buildDuration(record, now = Date.now()) {
  const start = Date.parse(record.startedAt ?? '');
  if (Number.isNaN(start)) return undefined;
  const end = Date.parse(record.finishedAt ?? '');
  return (Number.isNaN(end) ? now : end) - start;
}

/** The repository's web page from its clone URL (http(s) only), for commit links. */
export function htmlUrlOf(cloneUrl) {
  if (typeof cloneUrl !== 'string') return undefined;
  try {
    const url = new URL(cloneUrl);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
    url.username = '';
    url.password = '';
    url.pathname = url.pathname.replace(/\.git$/, '');
    url.search = '';
    url.hash = '';
    return url.toString().replace(/\/$/, '');
  } catch {
    return undefined;
  }
}

/** A copy button for `text` (the clipboard API where the page is a secure context, else a selection). */
export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'secondary small', title: `Copy ${text}`, 'aria-label': `Copy ${text}` }, label);
  button.addEventListener('click', async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      const area = h('textarea', { readonly: true, class: 'offscreen' });
      area.value = text;
      document.body.append(area);
      area.select();
      ok = document.execCommand('copy');
      area.remove();
    }
    button.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => (button.textContent = label), 1500);
  });
  return button;
}

/** Runs `tick` now and every `ms` while the view lives, skipping ticks while the tab is hidden. */
export function poll(tick, ms) {
  let timer;
  let stopped = false;
  const loop = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await tick();
      } catch {
        // tick reports its own errors
      }
    }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  void loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
