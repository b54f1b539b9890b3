// The log of one build: followed live while the build runs (GET /builds/:id/logs?follow=1, a
// chunked stream), its last 256 KiB when it has ended (?tail=), with "Load all". ANSI colours are
// rendered by ansi.js. While following, at most MAX_SHOWN_BYTES stay on the page (the oldest
// lines go first).

import { renderAnsi } from './ansi.js';
import { errorOf, request } from './api.js';
import { formatBytes, h } from './dom.js';

const TAIL_BYTES = 256 * 1024;
const MAX_SHOWN_BYTES = 1024 * 1024;
const FINAL = ['succeeded', 'failed', 'cancelled', 'skipped'];

export class LogView {
  constructor(id, ctx, onEnded) {
    this.id = id;
    this.ctx = ctx;
    this.onEnded = onEnded;
    this.pre = h('pre', { class: 'log', tabindex: '0', 'aria-label': 'Build log' });
    this.state = h('span', { class: 'muted log-state' });
    this.skipped = h('p', { class: 'log-skipped', hidden: true });
    this.element = h('section', { class: 'log-section' }, h('div', { class: 'log-head' }, h('h2', {}, 'Log'), this.state), this.skipped, this.pre);
    this.mode = undefined;
    this.controller = undefined;
    this.shownBytes = 0;
    this.sizes = [];
  }

  /** The record's status changed (or was read): follow a running build, show a finished one's tail. */
  update(status) {
    const final = FINAL.includes(status);
    // The stream ended (or failed) while the build still runs: serve restarted, the network
    // dropped. Follow again, from the start.
    if (!final && (this.mode === 'ended' || this.mode === 'failed')) {
      this.pre.replaceChildren();
      this.shownBytes = 0;
      this.sizes = [];
      this.droppedWhileFollowing = 0;
      this.skipped.hidden = true;
      void this.follow();
      return;
    }
    // Otherwise once: a followed log runs to its end marker; a loaded one is complete.
    if (this.mode !== undefined) return;
    if (final) void this.load(TAIL_BYTES);
    else void this.follow();
  }

  stop() {
    this.controller?.abort();
  }

  async follow() {
    this.mode = 'follow';
    this.state.textContent = 'following…';
    this.controller = new AbortController();
    let response;
    try {
      response = await request(`/builds/${encodeURIComponent(this.id)}/logs?follow=1`, { signal: this.controller.signal, headers: { accept: 'text/plain' } });
      if (!response.ok) throw await errorOf(response);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let rest = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const text = rest + decoder.decode(value, { stream: true });
        const lines = text.split('\n');
        rest = lines.pop();
        this.append(lines, true);
      }
      if (rest) this.append([rest], true);
    } catch (err) {
      if (this.controller.signal.aborted) return;
      this.state.textContent = '';
      this.ctx.report(err);
      this.mode = 'failed';
      return;
    }
    // The log ended: the build has ended (its record says how).
    this.mode = 'ended';
    this.state.textContent = 'ended';
    if (this.droppedWhileFollowing) this.showSkipped(this.droppedWhileFollowing, true);
    this.onEnded();
  }

  async load(tail) {
    this.mode = tail ? 'tail' : 'all';
    this.state.textContent = 'loading…';
    const query = tail ? `?tail=${tail}` : '';
    try {
      const response = await request(`/builds/${encodeURIComponent(this.id)}/logs${query}`, { headers: { accept: 'text/plain' } });
      if (!response.ok) throw await errorOf(response);
      const text = await response.text();
      const skipped = Number(response.headers.get('x-log-skipped-bytes') ?? 0);
      this.pre.replaceChildren();
      this.shownBytes = 0;
      this.sizes = [];
      const lines = text.split('\n');
      if (lines.at(-1) === '') lines.pop();
      this.append(lines, false);
      this.showSkipped(skipped, true);
      this.state.textContent = '';
    } catch (err) {
      this.state.textContent = '';
      this.mode = undefined;
      this.ctx.report(err);
    }
  }

  append(lines, trim) {
    if (lines.length === 0) return;
    const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 24;
    let html = '';
    for (const line of lines) {
      html += `<div class="line">${renderAnsi(line)}</div>`;
      const size = line.length + 1;
      this.sizes.push(size);
      this.shownBytes += size;
    }
    this.pre.insertAdjacentHTML('beforeend', html);
    if (trim && this.shownBytes > MAX_SHOWN_BYTES) {
      let dropped = 0;
      while (this.shownBytes > MAX_SHOWN_BYTES && this.pre.firstChild) {
        this.pre.firstChild.remove();
        const size = this.sizes.shift() ?? 0;
        this.shownBytes -= size;
        dropped += size;
      }
      this.droppedWhileFollowing = (this.droppedWhileFollowing ?? 0) + dropped;
      this.showSkipped(this.droppedWhileFollowing, false);
    }
    if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
  }

  showSkipped(bytes, canLoadAll) {
    if (!bytes) {
      this.skipped.hidden = true;
      return;
    }
    const text = `${formatBytes(bytes)} of earlier output not shown.`;
    if (!canLoadAll) {
      this.skipped.replaceChildren(`${text} The whole log can be loaded once the build has ended.`);
    } else {
      const link = h('a', { href: '#', class: 'load-all' }, 'Load all');
      link.addEventListener('click', (event) => {
        event.preventDefault();
        void this.load(undefined);
      });
      this.skipped.replaceChildren(`${text} `, link);
    }
    this.skipped.hidden = false;
  }
}
