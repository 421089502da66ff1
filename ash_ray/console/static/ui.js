// Small DOM helpers: every text goes in through textContent, never innerHTML.
import { NotAvailable } from './api.js';

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return el;
}

export function toast(message, kind = 'info') {
  const box = document.getElementById('toast');
  box.replaceChildren(h('div', { class: `toast ${kind}` }, message));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.replaceChildren(), 5000);
}

export const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
export const short = (id) => (id ? String(id).slice(0, 8) : '');

export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

export function table(columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
    h('tbody', {}, rows.map((row) => h('tr', {},
      columns.map(([label, cell]) => h('td', { 'data-label': label }, cell(row))))))));
}

// A titled box whose body comes from `load`; a missing route says so instead of failing.
export function section(title, load, { id } = {}) {
  const body = h('div', { class: 'section-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const box = h('section', { class: 'card', id, 'aria-label': title }, h('h2', {}, title), body);
  // Only the newest refresh shows: an older answer arriving late (a filter changed while it
  // was on its way) must not replace it.
  let latest = 0;
  const refresh = async () => {
    const mine = ++latest;
    let shown;
    try {
      shown = [await load()].flat().filter(Boolean);
    } catch (err) {
      shown = [problem(err)];
    }
    if (mine === latest) body.replaceChildren(...shown);
  };
  box.refresh = refresh;
  refresh();
  return box;
}

export function problem(err) {
  if (err instanceof NotAvailable) {
    return h('p', { class: 'unavailable' }, 'Not available on this server yet.');
  }
  return h('p', { class: 'error', role: 'alert' }, `Error: ${err.message || err}`);
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

// Run an action from a button: disabled while it runs, the error shown as a toast.
export async function act(button, fn, done) {
  if (button) button.disabled = true;
  try {
    const result = await fn();
    if (done) toast(typeof done === 'function' ? done(result) : done);
    return result;
  } catch (err) {
    toast(err instanceof NotAvailable ? 'Not available on this server yet.' : err.message, 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// Bars of `points` [{label, value}] as inline SVG, with a text table for screen readers.
export function barChart(points, { title, unit = '' }) {
  const width = 640;
  const height = 180;
  const pad = 28;
  const max = Math.max(1, ...points.map((p) => p.value));
  const step = (width - pad * 2) / Math.max(1, points.length);
  const bars = points.map((p, i) => {
    const bh = ((height - pad * 2) * p.value) / max;
    return svg('rect', {
      x: pad + i * step + step * 0.1, y: height - pad - bh,
      width: Math.max(1, step * 0.8), height: bh, class: 'bar',
    }, svg('title', {}, `${p.label}: ${p.value}${unit}`));
  });
  const labels = points.length ? [
    svg('text', { x: pad, y: height - 8, class: 'axis' }, points[0].label),
    svg('text', { x: width - pad, y: height - 8, class: 'axis', 'text-anchor': 'end' },
      points[points.length - 1].label),
  ] : [];
  return h('figure', { class: 'chart' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
      svg('line', { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: 'axis-line' }),
      svg('text', { x: pad, y: pad - 10, class: 'axis' }, `max ${max}${unit}`),
      bars, labels),
    h('figcaption', {}, title));
}

// Minimal, safe markdown: fenced code, inline code, bold; everything else as text.
export function markdown(text) {
  const out = h('div', { class: 'md' });
  const parts = text.split(/```[^\n]*\n?/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      out.append(h('pre', {}, h('code', {}, part.replace(/\n$/, ''))));
      return;
    }
    for (const para of part.split(/\n{2,}/)) {
      if (!para.trim()) continue;
      const p = h('p');
      for (const piece of para.split(/(`[^`\n]+`|\*\*[^*\n]+\*\*)/)) {
        if (/^`[^`]+`$/.test(piece)) p.append(h('code', {}, piece.slice(1, -1)));
        else if (/^\*\*[^*]+\*\*$/.test(piece)) p.append(h('strong', {}, piece.slice(2, -2)));
        else if (piece) p.append(document.createTextNode(piece));
      }
      out.append(p);
    }
  });
  return out;
}
