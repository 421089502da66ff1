// Talking to the ash-ray HTTP API: the key, JSON calls and SSE over fetch.
// The key lives in sessionStorage only; the server never writes it into a page.

const KEY = 'ash-ray.api-key';
// The console lives at <server>/dashboard/: the API is the parent folder (works under a prefix).
export const BASE = new URL('../', location.href);

export const apiKey = () => sessionStorage.getItem(KEY) || '';
export const setApiKey = (value) => sessionStorage.setItem(KEY, value);
export const clearApiKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A route this server does not have (yet): FastAPI answers an unknown path 404 "Not Found"
// and a known path with another method 405; a missing resource names itself instead.
export class NotAvailable extends ApiError {}

export function url(path, params) {
  const u = new URL(path.replace(/^\//, ''), BASE);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u;
}

export function headers(extra) {
  const h = { ...(extra || {}) };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

export async function raise(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) message = String(body.error);
  } catch { /* not JSON */ }
  if ((resp.status === 404 && message === 'Not Found') || resp.status === 405) {
    throw new NotAvailable(resp.status, 'not available on this server yet');
  }
  if (resp.status === 401) window.dispatchEvent(new CustomEvent('ash:unauthorized'));
  throw new ApiError(resp.status, message);
}

export async function api(method, path, { params, body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url(path, params), init);
  if (!resp.ok) await raise(resp);
  if (resp.status === 204) return {};
  return resp.json();
}

export const get = (path, params) => api('GET', path, { params });
export const post = (path, body) => api('POST', path, { body: body ?? {} });

// Public: tells whether the server wants a key at all.
export async function health() {
  const resp = await fetch(url('/health'));
  return { status: resp.status, body: await resp.json() };
}

// Raw bytes of a protected file (a link cannot carry the Authorization header).
export async function download(path, filename) {
  const resp = await fetch(url(path), { headers: headers() });
  if (!resp.ok) await raise(resp);
  const blob = await resp.blob();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// Server-Sent Events from a fetch response (EventSource cannot POST nor send headers).
// Yields {id, event, data} per frame; comments (heartbeats) are skipped.
export async function* sse(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = parseFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (frame) yield frame;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(text) {
  let id = null;
  let event = 'message';
  const data = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = Number(value);
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  let parsed;
  try { parsed = JSON.parse(data.join('\n')); } catch { parsed = data.join('\n'); }
  return { id, event, data: parsed };
}

// Open an SSE request; JSON errors before the stream starts become ApiError.
export async function openStream(method, path, { body, params, lastEventId, signal } = {}) {
  const h = headers({ Accept: 'text/event-stream' });
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (lastEventId !== undefined && lastEventId !== null) h['Last-Event-ID'] = String(lastEventId);
  const resp = await fetch(url(path, params), {
    method, headers: h, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) await raise(resp);
  return resp;
}

export function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
