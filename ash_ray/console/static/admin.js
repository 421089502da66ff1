// Queue, API keys and credentials: shown as far as the server has those routes.
import * as A from './api.js';
import { act, badge, field, h, section, short, table, when } from './ui.js';

const QUEUE_STATUSES = ['pending', 'processing', 'completed', 'failed', 'cancelled'];

export async function queue(main) {
  const status = h('select', { id: 'queue-status' }, h('option', { value: '' }, 'any'),
    QUEUE_STATUSES.map((s) => h('option', { value: s }, s)));
  const counts = section('Queue stats', async () => {
    const { stats } = await A.get('/api/queue/stats');
    return h('dl', { class: 'stats' }, Object.entries(stats).map(([k, v]) =>
      h('div', {}, h('dt', {}, k), h('dd', { dataset: { status: k } }, String(v)))));
  });
  const cancel = (i) => h('button', {
    type: 'button', class: 'danger', 'aria-label': `Cancel item ${short(i.id)}`,
    onclick: (ev) => act(ev.currentTarget, () => A.api('DELETE', `/api/queue/${i.id}`), 'Cancelled')
      .then(refresh),
  }, 'Cancel');
  const items = section('Items', async () => table([
    ['Item', (i) => h('code', {}, short(i.id))], ['Agent', (i) => i.agentName],
    ['Status', (i) => badge(i.status)], ['Priority', (i) => i.priority],
    ['Prompt', (i) => h('span', { class: 'clip', title: i.prompt }, i.prompt)],
    ['Session', (i) => (i.sessionId
      ? h('a', { href: `#/sessions/${i.sessionId}` }, h('code', {}, short(i.sessionId))) : '')],
    ['Outcome', (i) => h('span', { class: 'clip', title: i.error || i.result || '' },
      i.error ? `error: ${i.error}` : i.result || '')],
    ['Created', (i) => when(i.createdAt)],
    ['', (i) => (i.status === 'pending' ? cancel(i) : '')],
  ], (await A.get('/api/queue', { status: status.value, limit: 100 })).items,
  status.value ? `No ${status.value} items.` : 'The queue is empty.'));
  function refresh() { counts.refresh(); items.refresh(); }
  status.addEventListener('change', () => items.refresh());
  const again = h('button', { type: 'button', onclick: refresh }, 'Refresh');
  main.replaceChildren(h('h1', {}, 'Queue'), counts,
    h('div', { class: 'card filters' }, h('form', { class: 'inline', 'aria-label': 'Filter items' },
      field('Status', status)), again),
    items, await enqueueForm(refresh));
}

async function enqueueForm(done) {
  const agent = h('select', { id: 'queue-agent', required: true });
  try {
    for (const a of (await A.get('/api/agents')).agents) agent.append(h('option', { value: a.name }, a.name));
  } catch { /* the submit says why */ }
  const prompt = h('textarea', { id: 'queue-prompt', rows: 3, required: true });
  const priority = h('input', { id: 'queue-priority', type: 'number', min: 0, value: 0 });
  const session = h('input', { id: 'queue-session', placeholder: 'a new session when empty' });
  const add = h('button', { type: 'submit' }, 'Enqueue');
  const form = h('form', { class: 'card', 'aria-label': 'Enqueue a prompt' },
    h('h2', {}, 'Enqueue a prompt'), field('Agent', agent), field('Prompt', prompt),
    field('Priority', priority), field('Session id', session), add);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await act(add, () => A.post('/api/queue', {
      agentName: agent.value, prompt: prompt.value, priority: Number(priority.value || 0),
      sessionId: session.value.trim() || undefined,
    }), (x) => `Queued ${short(x.item.id)}`);
    if (!r) return;
    prompt.value = '';
    done();
  });
  return form;
}

export async function keys(main) {
  const shown = h('div', { 'aria-live': 'polite' });
  const list = section('API keys', async () => table([
    ['Label', (k) => k.label || ''], ['Key', (k) => h('code', {}, k.keyPrefix || '')],
    ['Created', (k) => when(k.createdAt)],
    ['', (k) => (k.id === 'env' ? '' : h('button', {
      type: 'button', 'aria-label': `Revoke key ${k.label || k.id}`,
      onclick: (ev) => act(ev.currentTarget, () => A.api('DELETE', `/api/api-keys/${k.id}`),
        'Revoked').then(() => list.refresh()),
    }, 'Revoke'))],
  ], keyRows(await A.get('/api/api-keys'))));
  const label = h('input', { id: 'key-label' });
  const create = h('button', { type: 'submit' }, 'Create key');
  const form = h('form', { class: 'card', 'aria-label': 'Create an API key' },
    h('h2', {}, 'New key'), field('Label', label), create, shown);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await act(create, () => A.post('/api/api-keys', { label: label.value }));
    if (!r) return;
    // Shown once, in this page only: the console never stores a created key.
    shown.replaceChildren(h('p', {}, 'Copy the key now; it is not shown again: '),
      h('code', { class: 'secret' }, r.key));
    list.refresh();
  });
  main.replaceChildren(h('h1', {}, 'API keys'), list, form);
}

const keyRows = (body) => (Array.isArray(body) ? body : body.keys || body.apiKeys || []);

export async function credentials(main) {
  const list = section('Credentials', async () => table([
    ['Id', (c) => h('code', {}, short(c.id))], ['Type', (c) => c.type], ['Label', (c) => c.label || ''],
    ['Endpoint', (c) => c.baseUrl || ''],
    ['Active', (c) => (c.active ? 'yes' : 'no')], ['Last used', (c) => when(c.lastUsedAt)],
    ['', (c) => h('button', {
      type: 'button', 'aria-label': `Delete credential ${c.label || c.id}`,
      onclick: (ev) => act(ev.currentTarget, () => A.api('DELETE', `/api/credentials/${c.id}`),
        'Deleted').then(() => list.refresh()),
    }, 'Delete')],
  ], (await A.get('/api/credentials')).credentials));
  const type = h('select', { id: 'cred-type' },
    ['anthropic', 'bedrock', 'custom', 'openai'].map((t) => h('option', { value: t }, t)));
  const key = h('input', { id: 'cred-key', type: 'password', autocomplete: 'off', required: true });
  const label = h('input', { id: 'cred-label' });
  // A custom endpoint (an Anthropic-compatible gateway) for this key; the API's default if empty.
  const baseUrl = h('input', { id: 'cred-base-url', type: 'url', placeholder: 'https://…' });
  const add = h('button', { type: 'submit' }, 'Store credential');
  const form = h('form', { class: 'card', 'aria-label': 'Store a credential' },
    h('h2', {}, 'New credential'), field('Type', type), field('Key', key), field('Label', label),
    field('Base URL', baseUrl), add);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await act(add, () => A.post('/api/credentials', {
      type: type.value, key: key.value, label: label.value || undefined,
      baseUrl: baseUrl.value.trim() || undefined,
    }), 'Stored');
    key.value = '';
    if (ok) list.refresh();
  });
  main.replaceChildren(h('h1', {}, 'Credentials'), list, form);
}
