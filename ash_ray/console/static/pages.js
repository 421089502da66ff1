// Overview, agents and sessions pages.
import * as A from './api.js';
import { usageChart } from './session.js';
import { act, badge, field, h, section, short, table, toast, when } from './ui.js';

const enc = encodeURIComponent;

export async function overview(main) {
  main.replaceChildren(
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      section('Health', healthCard),
      section('Sessions', async () => {
        const counts = await Promise.all(['active', 'paused', 'stopped', 'ended', 'error'].map(
          async (status) => [status, (await A.get('/api/sessions', { status, limit: 1000 })).sessions.length]));
        return h('dl', { class: 'stats' }, counts.map(([s, n]) =>
          h('div', {}, h('dt', {}, h('a', { href: `#/sessions?status=${s}` }, s)), h('dd', {}, String(n)))));
      })),
    section('Live sessions by node', async () => {
      const nodes = Object.entries((await A.health()).body.sessionsPerNode || {});
      return table([
        ['Node', ([node]) => h('code', { title: node }, node === 'binding' ? 'binding (no node yet)' : short(node))],
        ['Live sessions', ([, n]) => String(n)],
      ], nodes.sort((a, b) => b[1] - a[1]), 'No live sessions.');
    }),
    section('Usage over time', async () => usageChart((await A.get('/api/usage', { limit: 1000 })).events)),
    h('p', {}, h('a', { href: '#/usage' }, 'Usage and analytics by agent →')));
}

async function healthCard() {
  const { status, body } = await A.health();
  const rows = [
    ['Status', `${body.status}${status === 503 ? ' (draining: not accepting sessions)' : ''}`],
    ['Version', body.version], ['Uptime', `${Math.round(body.uptime)} s`],
    ['Live sessions', body.activeSessions], ['Sandboxes', body.activeSandboxes],
    ['Warm pool ready', body.poolReady], ['Store', body.store],
    ['Sandbox limit mode', body.sandboxLimits], ['Auth', body.auth ? 'API key required' : 'off'],
  ];
  const pool = body.pool && typeof body.pool === 'object' ? Object.entries(body.pool) : [];
  return h('dl', { class: 'stats' },
    [...rows, ...pool.map(([k, v]) => [`Pool ${k}`, typeof v === 'object' ? JSON.stringify(v) : v])]
      .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v ?? '')))));
}

export async function agents(main, go) {
  const list = section('Agents', async () => {
    const { agents: rows } = await A.get('/api/agents');
    return table([
      ['Name', (a) => h('a', { href: `#/agents/${enc(a.name)}` }, a.name)],
      ['Version', (a) => a.version],
      ['Source', (a) => a.path || 'managed'],
      ['Updated', (a) => when(a.updatedAt)],
    ], rows, 'No agents deployed yet: deploy one below.');
  });
  main.replaceChildren(h('h1', {}, 'Agents'), list, deployForm(() => list.refresh(), go));
}

function deployForm(done, go) {
  const name = h('input', { required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*', id: 'deploy-name' });
  const mode = h('select', { id: 'deploy-mode' },
    h('option', { value: 'path' }, 'A folder on the server (path)'),
    h('option', { value: 'prompt' }, 'Write a system prompt'),
    h('option', { value: 'upload' }, 'Upload a folder'));
  const path = h('input', { id: 'deploy-path', placeholder: '/srv/agents/my-agent' });
  const prompt = h('textarea', { id: 'deploy-prompt', rows: 5, placeholder: 'You are …' });
  const folder = h('input', { id: 'deploy-folder', type: 'file', webkitdirectory: true, multiple: true });
  const parts = { path: field('Path on the server', path), prompt: field('System prompt', prompt),
    upload: field('Folder (with CLAUDE.md)', folder) };
  const sync = () => Object.entries(parts).forEach(([k, el]) => { el.hidden = k !== mode.value; });
  mode.addEventListener('change', sync);
  sync();
  const submit = h('button', { type: 'submit' }, 'Deploy');
  const form = h('form', { class: 'card', 'aria-label': 'Deploy an agent' },
    h('h2', {}, 'Deploy an agent'), field('Name', name), field('Source', mode),
    Object.values(parts), h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim() };
    const agent = await act(submit, async () => {
      if (mode.value === 'path') body.path = path.value.trim();
      else if (mode.value === 'prompt') body.systemPrompt = prompt.value;
      else body.files = await folderFiles(folder.files);
      return (await A.post('/api/agents', body)).agent;
    }, (a) => `Deployed ${a.name} v${a.version}`);
    if (agent) { done(); go(`#/agents/${enc(agent.name)}`); }
  });
  return form;
}

async function folderFiles(fileList) {
  const skip = /(^|\/)(node_modules|\.git|__pycache__|\.venv|\.cache)(\/|$)/;
  const out = [];
  for (const f of fileList) {
    // "my-agent/CLAUDE.md" -> "CLAUDE.md": paths are relative to the chosen folder.
    const rel = (f.webkitRelativePath || f.name).split('/').slice(1).join('/') || f.name;
    if (!skip.test(rel)) out.push({ path: rel, content: A.toBase64(await f.arrayBuffer()) });
  }
  if (!out.length) throw new Error('choose a folder that holds a CLAUDE.md');
  return out;
}

export async function agentPage(main, name, go) {
  const base = `/api/agents/${enc(name)}`;
  const newSession = h('button', { type: 'button' }, 'New session');
  newSession.addEventListener('click', async () => {
    const r = await act(newSession, () => A.post('/api/sessions', { agent: name }));
    if (r) go(`#/sessions/${r.session.id}`);
  });
  const remove = h('button', { type: 'button', class: 'danger' }, 'Delete agent');
  remove.addEventListener('click', async () => {
    if (!window.confirm(`Delete agent ${name}?`)) return;
    if (await act(remove, () => A.api('DELETE', base), `Deleted ${name}`)) go('#/agents');
  });
  const viewer = h('div', { class: 'viewer' });
  main.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Agent ', h('code', {}, name)),
      h('div', { class: 'actions' }, newSession, remove)),
    section('Details', async () => {
      const { agent } = await A.get(base);
      const env = Object.entries(agent.env || {});
      return h('dl', { class: 'stats' },
        [['Version', agent.version], ['Source', agent.path || 'managed'],
          ['Created', when(agent.createdAt)], ['Updated', when(agent.updatedAt)],
          ['Env', env.length ? env.map(([k, v]) => `${k}=${v}`).join(' ') : 'none']]
          .map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v)))));
    }),
    section('Files', async () => {
      const { files } = await A.get(`${base}/files`);
      return [table([
        ['Path', (f) => h('button', {
          type: 'button', class: 'link', 'aria-label': `View ${f.path}`,
          onclick: async () => {
            const file = await act(null, () => A.get(`${base}/files/${f.path.split('/').map(enc).join('/')}`, { format: 'json' }));
            if (file) viewer.replaceChildren(h('h3', {}, f.path), h('pre', { class: 'file-content' }, file.content));
          },
        }, f.path)],
        ['Size', (f) => `${f.size} B`], ['Modified', (f) => when(f.modifiedAt)],
      ], files), viewer];
    }),
    versionsSection(base),
    section('Config', async () => {
      const { config } = await A.get(`${base}/config`);
      return h('pre', { class: 'json' }, JSON.stringify(config, null, 2));
    }),
    section('Sessions of this agent', async () => sessionTable(
      (await A.get('/api/sessions', { agent: name, limit: 20 })).sessions)));
}

function versionsSection(base) {
  const box = section('Versions', async () => {
    const { versions } = await A.get(`${base}/versions`);
    return [table([
      ['Version', (v) => v.versionNumber ?? v.name], ['Name', (v) => v.name],
      ['Active', (v) => (v.isActive ? badge('active') : h('button', {
        type: 'button', 'aria-label': `Activate version ${v.versionNumber}`,
        onclick: (ev) => act(ev.currentTarget, () => A.post(`${base}/versions/${v.versionNumber}/activate`),
          `Version ${v.versionNumber} is active`).then(() => box.refresh()),
      }, 'Activate'))],
      ['System prompt', (v) => h('span', { class: 'clip', title: v.systemPrompt || '' }, v.systemPrompt || '')],
      ['Notes', (v) => v.releaseNotes || ''], ['Created', (v) => when(v.createdAt)],
    ], versions, 'No versions yet.'), versionForm(base, () => box.refresh())];
  });
  return box;
}

function versionForm(base, done) {
  const name = h('input', { id: 'version-name', placeholder: 'v<N> when empty' });
  const prompt = h('textarea', { id: 'version-prompt', rows: 3 });
  const notes = h('input', { id: 'version-notes' });
  const add = h('button', { type: 'submit' }, 'Create version');
  const form = h('form', { 'aria-label': 'Create a version' }, h('h3', {}, 'New version'),
    field('Version name', name), field('Version system prompt', prompt), field('Release notes', notes), add);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim() || undefined, systemPrompt: prompt.value || undefined,
      releaseNotes: notes.value || undefined };
    if (await act(add, () => A.post(`${base}/versions`, body), (r) => `Created version ${r.version.versionNumber}`)) done();
  });
  return form;
}

const sessionTable = (rows) => table([
  ['Session', (s) => h('a', { href: `#/sessions/${s.id}` }, h('code', {}, short(s.id)))],
  ['Agent', (s) => s.agentName], ['Status', (s) => badge(s.status)],
  ['Created', (s) => when(s.createdAt)], ['Last active', (s) => when(s.lastActiveAt)],
], rows, 'No sessions.');

export async function sessions(main, go, query) {
  const limit = 20;
  const state = { status: query.get('status') || '', agent: query.get('agent') || '',
    offset: Number(query.get('offset') || 0) };
  const status = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'any'),
    ['starting', 'active', 'paused', 'stopped', 'ended', 'error'].map((s) =>
      h('option', { value: s, selected: s === state.status }, s)));
  const agent = h('select', { id: 'filter-agent' }, h('option', { value: '' }, 'any'));
  const newAgent = h('select', { id: 'new-session-agent' });
  try {
    for (const a of (await A.get('/api/agents')).agents) {
      agent.append(h('option', { value: a.name, selected: a.name === state.agent }, a.name));
      newAgent.append(h('option', { value: a.name }, a.name));
    }
  } catch (err) { toast(err.message, 'error'); }
  const nav = (patch) => {
    const q = new URLSearchParams(Object.entries({ ...state, ...patch }).filter(([, v]) => v));
    go(`#/sessions?${q}`);
  };
  status.addEventListener('change', () => nav({ status: status.value, offset: 0 }));
  agent.addEventListener('change', () => nav({ agent: agent.value, offset: 0 }));
  const create = h('button', { type: 'submit' }, 'Create session');
  const createForm = h('form', { class: 'inline', 'aria-label': 'Create a session' },
    field('Agent of a new session', newAgent), create);
  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await act(create, () => A.post('/api/sessions', { agent: newAgent.value }));
    if (r) go(`#/sessions/${r.session.id}`);
  });
  const list = section('Sessions', async () => {
    const { sessions: rows } = await A.get('/api/sessions', {
      status: state.status, agent: state.agent, limit: limit + 1, offset: state.offset });
    const prev = h('button', { type: 'button', disabled: state.offset === 0,
      onclick: () => nav({ offset: Math.max(0, state.offset - limit) }) }, '← Newer');
    const next = h('button', { type: 'button', disabled: rows.length <= limit,
      onclick: () => nav({ offset: state.offset + limit }) }, 'Older →');
    return [sessionTable(rows.slice(0, limit)), h('nav', { class: 'pager', 'aria-label': 'Pages' },
      prev, h('span', { class: 'muted' }, `${state.offset + 1}–${state.offset + Math.min(rows.length, limit)}`), next)];
  });
  main.replaceChildren(h('h1', {}, 'Sessions'),
    h('div', { class: 'card filters' }, h('form', { class: 'inline', 'aria-label': 'Filter sessions' },
      field('Status', status), field('Agent', agent)), createForm), list);
}
