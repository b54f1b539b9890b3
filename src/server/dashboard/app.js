// The dashboard served by `oci-build serve` at `/`: hash routes (#/builds, #/builds/<id>,
// #/workers), each a view that polls the JSON API while it is shown. Static: no configuration
// value and no secret is in any file served; the API token is entered here and kept in the tab.

import { describeError, getToken, setToken } from './api.js';
import { mountBuild } from './build-view.js';
import { mountBuilds } from './builds-view.js';
import { mountWorkers } from './workers-view.js';

const view = document.getElementById('view');
const notice = document.getElementById('notice');
const tokenForm = document.getElementById('token-form');
const tokenInput = document.getElementById('token-input');
const tokenToggle = document.getElementById('token-toggle');

/** What every view may do: report, clear a message, go elsewhere. */
const ctx = {
  /** Shows an error (or a message with kind 'info'); auth errors open the token form. */
  report(err, kind = 'error') {
    notice.textContent = typeof err === 'string' ? err : describeError(err);
    notice.className = kind === 'info' ? 'notice info' : 'notice';
    notice.hidden = false;
    if (err?.status === 401) showTokenForm(true);
  },
  clear() {
    notice.hidden = true;
    notice.textContent = '';
  },
  navigate(hash) {
    location.hash = hash;
  },
  hasToken: () => getToken() !== '',
};

function showTokenForm(show) {
  tokenForm.hidden = !show;
  tokenToggle.setAttribute('aria-expanded', String(show));
  if (show) tokenInput.focus();
}

function updateTokenButton() {
  tokenToggle.textContent = getToken() ? 'API token ✓' : 'API token';
}

tokenToggle.addEventListener('click', () => showTokenForm(tokenForm.hidden));
tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  tokenInput.value = '';
  showTokenForm(false);
  updateTokenButton();
  ctx.clear();
  route();
});
document.getElementById('token-forget').addEventListener('click', () => {
  setToken('');
  tokenInput.value = '';
  updateTokenButton();
  route();
});

let unmount;

function parseHash() {
  const hash = location.hash.replace(/^#/, '') || '/builds';
  const [path, query = ''] = hash.split('?');
  return { segments: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function route() {
  unmount?.();
  unmount = undefined;
  ctx.clear();
  view.replaceChildren();
  const { segments, params } = parseHash();
  const section = segments[0] ?? 'builds';
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (section === 'builds' && segments[1]) {
    document.title = `${segments[1]} · oci-build`;
    unmount = mountBuild(view, segments[1], ctx);
  } else if (section === 'workers') {
    document.title = 'Workers · oci-build';
    unmount = mountWorkers(view, ctx);
  } else {
    document.title = 'Builds · oci-build';
    unmount = mountBuilds(view, params, ctx);
  }
}

window.addEventListener('hashchange', route);
updateTokenButton();
route();
