// ANSI colours of a build log line → HTML: text escaped, SGR colours and styles as <span> classes
// (the page's Content-Security-Policy allows no inline style). Other escape sequences (cursor
// moves, OSC titles, hyperlinks) are dropped; a carriage return keeps what a terminal would show.
// A module of its own, without imports: the unit test imports the very text the page is served.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// CSI (ESC [ … final byte), OSC (ESC ] … BEL or ESC \), other two-byte escapes, and C1 CSI (0x9b).
// eslint-disable-next-line no-control-regex
const SEQUENCE = /\u001b\[([0-?]*)([ -/]*)([@-~])|\u009b([0-?]*)([ -/]*)([@-~])|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-Z\\-_]?/g;

function emptyStyle() {
  return { fg: undefined, bg: undefined, bold: false, dim: false, italic: false, underline: false };
}

/** 256-colour palette index → one of the 16 classes (the cube and greys approximated). */
function paletteToBasic(n) {
  if (n < 16) return n;
  if (n >= 232) return n < 244 ? 8 : 7;
  const i = n - 16;
  const r = Math.floor(i / 36) > 2 ? 1 : 0;
  const g = Math.floor(i / 6) % 6 > 2 ? 1 : 0;
  const b = i % 6 > 2 ? 1 : 0;
  return r + g * 2 + b * 4 + (r + g + b > 1 ? 8 : 0);
}

function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(style, emptyStyle());
    else if (c === 1) style.bold = true;
    else if (c === 2) style.dim = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 22) style.bold = style.dim = false;
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c >= 30 && c <= 37) style.fg = c - 30;
    else if (c >= 90 && c <= 97) style.fg = c - 90 + 8;
    else if (c === 39) style.fg = undefined;
    else if (c >= 40 && c <= 47) style.bg = c - 40;
    else if (c >= 100 && c <= 107) style.bg = c - 100 + 8;
    else if (c === 49) style.bg = undefined;
    else if (c === 38 || c === 48) {
      let colour;
      if (codes[i + 1] === 5) {
        colour = Number.isInteger(codes[i + 2]) && codes[i + 2] >= 0 && codes[i + 2] <= 255 ? paletteToBasic(codes[i + 2]) : undefined;
        i += 2;
      } else if (codes[i + 1] === 2) {
        i += 4; // 24-bit colour: no class for it; the text keeps the current colour
      }
      if (colour !== undefined) style[c === 38 ? 'fg' : 'bg'] = colour;
    }
  }
}

function classesOf(style) {
  const classes = [];
  if (style.fg !== undefined) classes.push(`ansi-fg-${style.fg}`);
  if (style.bg !== undefined) classes.push(`ansi-bg-${style.bg}`);
  if (style.bold) classes.push('ansi-bold');
  if (style.dim) classes.push('ansi-dim');
  if (style.italic) classes.push('ansi-italic');
  if (style.underline) classes.push('ansi-underline');
  return classes.join(' ');
}

/** One log line (no newline) → HTML safe to insert. */
export function renderAnsi(line) {
  let text = String(line);
  // A terminal overwrites the line at each carriage return: show what it would end with.
  const cr = text.lastIndexOf('\r', text.length - 2);
  if (cr !== -1) text = text.slice(cr + 1);
  text = text.replace(/\r$/, '');
  const style = emptyStyle();
  let html = '';
  let last = 0;
  const emit = (chunk) => {
    // Other control characters (BEL, backspace, stray ESC) are not shown.
    // eslint-disable-next-line no-control-regex
    const visible = chunk.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '');
    if (!visible) return;
    const classes = classesOf(style);
    html += classes ? `<span class="${classes}">${escapeHtml(visible)}</span>` : escapeHtml(visible);
  };
  SEQUENCE.lastIndex = 0;
  for (let m = SEQUENCE.exec(text); m !== null; m = SEQUENCE.exec(text)) {
    emit(text.slice(last, m.index));
    last = SEQUENCE.lastIndex;
    const params = m[1] ?? m[4];
    const final = m[3] ?? m[6];
    if (final === 'm' && params !== undefined && /^[0-9;:]*$/.test(params)) applySgr(style, params);
  }
  emit(text.slice(last));
  return html;
}
