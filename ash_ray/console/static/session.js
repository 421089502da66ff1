// The session page: live chat with re-attach, timeline, workspace files, logs, usage.
import * as A from './api.js';
import { Transcript } from './transcript.js';
import {
  act, badge, barChart, field, h, problem, section, short, table, toast, when,
} from './ui.js';

const promptKey = (sid, turn) => `ash-ray.prompt.${sid}.${turn}`;
const filePath = (p) => p.split('/').map(encodeURIComponent).join('/');

export async function sessionPage(main, sid, go) {
  const base = `/api/sessions/${encodeURIComponent(sid)}`;
  const head = h('div', { class: 'page-head' });
  const panels = {
    chat: chatPanel(base, sid),
    timeline: () => section('Timeline', () => timeline(base)),
    files: () => filesPanel(base),
    logs: () => section('Logs', () => logs(base)),
    usage: () => section('Usage', () => usage(sid)),
  };
  const body = h('div', { class: 'tab-panel', role: 'tabpanel', id: 'session-panel' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Session views' });
  const show = (name) => {
    for (const b of tabs.children) b.setAttribute('aria-selected', String(b.dataset.tab === name));
    body.replaceChildren(name === 'chat' ? panels.chat.el : panels[name]());
  };
  for (const name of Object.keys(panels)) {
    tabs.append(h('button', {
      type: 'button', role: 'tab', dataset: { tab: name }, 'aria-controls': 'session-panel',
      onclick: () => show(name),
    }, name[0].toUpperCase() + name.slice(1)));
  }
  main.replaceChildren(head, tabs, body);
  const refreshHead = async () => {
    try {
      const { session } = await A.get(base);
      head.replaceChildren(...header(session, base, go, refreshHead, panels.chat));
      panels.chat.setStatus(session.status);
    } catch (err) {
      head.replaceChildren(problem(err));
    }
  };
  await refreshHead();
  show('chat');
  panels.chat.start(refreshHead);
  return () => panels.chat.close();
}

function header(s, base, go, refresh, chat) {
  const action = (label, fn, done) => {
    const b = h('button', { type: 'button', 'aria-label': `${label} session` }, label);
    b.addEventListener('click', () => act(b, fn, done).then(refresh));
    return b;
  };
  return [
    h('h1', {}, 'Session ', h('code', {}, short(s.id)), ' ', badge(s.status)),
    h('p', { class: 'muted' }, 'Agent ', h('a', { href: `#/agents/${s.agentName}` }, s.agentName),
      ` · created ${when(s.createdAt)} · last active ${when(s.lastActiveAt)}`,
      s.parentSessionId ? h('span', {}, ' · forked from ',
        h('a', { href: `#/sessions/${s.parentSessionId}` }, short(s.parentSessionId))) : null),
    h('div', { class: 'actions' },
      action('Pause', () => A.post(`${base}/pause`), 'Paused'),
      action('Resume', () => A.post(`${base}/resume`), 'Resumed'),
      action('Stop', () => A.post(`${base}/stop`), 'Stopped'),
      action('Fork', async () => {
        const { session } = await A.post(`${base}/fork`);
        go(`#/sessions/${session.id}`);
      }, 'Forked'),
      action('End', () => A.api('DELETE', base), 'Ended'),
      action('Interrupt', () => A.post(`${base}/interrupt`), (r) =>
        (r.interrupted ? 'Interrupted the turn' : 'No turn was running')),
      action('Re-attach', async () => chat.reattach(), null)),
  ];
}

function chatPanel(base, sid) {
  let prompts = [];
  const transcript = new Transcript((turn) =>
    prompts[turn] ?? sessionStorage.getItem(promptKey(sid, turn)));
  const state = h('p', { class: 'muted stream-state', role: 'status' }, '');
  const input = h('textarea', {
    id: 'composer', rows: 3, placeholder: 'Ask the agent… (Ctrl+Enter sends)', required: true,
  });
  const send = h('button', { type: 'submit' }, 'Send');
  const form = h('form', { class: 'composer', 'aria-label': 'Send a message' },
    field('Message', input), h('div', { class: 'actions' }, send));
  const el = h('div', { class: 'chat' }, transcript.el, state, form);
  const controller = new AbortController();
  let attaching = null;
  let status = 'active';

  const consume = async (resp) => {
    for await (const frame of A.sse(resp)) transcript.add(frame);
  };
  // Follow the session's events after the last one shown, until its turn is done.
  const reattach = async () => {
    if (attaching) return attaching;
    attaching = (async () => {
      for (let attempt = 0; attempt < 5; attempt += 1) {
        state.textContent = transcript.running ? 'Re-attaching…' : '';
        try {
          await consume(await A.openStream('GET', `${base}/stream`, {
            params: { after: transcript.lastSeq }, signal: controller.signal,
          }));
        } catch (err) {
          if (controller.signal.aborted) return;
          state.textContent = `Stream interrupted: ${err.message}`;
        }
        if (!transcript.running) break;
      }
      state.textContent = transcript.running ? 'The turn is still running: use Re-attach.' : '';
    })().finally(() => { attaching = null; });
    return attaching;
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    if (status !== 'active') {
      toast(`This session is ${status}: resume it first.`, 'error');
      return;
    }
    await attaching;
    sessionStorage.setItem(promptKey(sid, transcript.turns), content);
    send.disabled = true;
    state.textContent = 'Streaming…';
    try {
      const resp = await A.openStream('POST', `${base}/messages`, {
        body: { content, includePartialMessages: true }, signal: controller.signal,
      });
      input.value = '';
      await consume(resp);
    } catch (err) {
      if (!controller.signal.aborted) toast(err.message, 'error');
    } finally {
      send.disabled = false;
      state.textContent = '';
    }
    if (transcript.running) await reattach(); // the connection dropped mid-turn
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit();
  });

  return {
    el,
    reattach,
    setStatus(value) { status = value; },
    async start(refresh) {
      try {
        const { messages } = await A.get(`${base}/messages`, { limit: 10000 });
        prompts = userPrompts(messages);
      } catch { /* history without prompts is still worth showing */ }
      await reattach();
      refresh();
    },
    close() { controller.abort(); },
  };
}

// The person's prompts in order (tool results are user messages too: skip those).
function userPrompts(messages) {
  const out = [];
  for (const m of messages) {
    if (m.role !== 'user') continue;
    let content = m.content;
    try { content = JSON.parse(content); } catch { /* plain text */ }
    // Ash stores the whole SDK message ({type: 'user', message: {content}}) as content.
    if (content && !Array.isArray(content) && content.message) content = content.message.content;
    if (typeof content === 'string') out.push(content);
    else if (Array.isArray(content) && !content.some((b) => b.type === 'tool_result')) {
      out.push(content.filter((b) => b.type === 'text').map((b) => b.text).join('\n'));
    }
  }
  return out;
}

async function timeline(base) {
  const { events } = await A.get(`${base}/events`, { limit: 1000 });
  return table([
    ['#', (e) => e.sequence],
    ['Type', (e) => e.type],
    ['Event', (e) => JSON.parse(e.data).event || ''],
    ['Time', (e) => when(e.createdAt)],
    ['Data', (e) => h('code', { class: 'clip' }, e.data.slice(0, 160))],
  ], events, 'No events yet.');
}

function filesPanel(base) {
  const viewer = h('div', { class: 'viewer', 'aria-live': 'polite' });
  const upload = h('input', { type: 'file', multiple: true, id: 'upload-files' });
  let box;
  const open = async (path) => {
    try {
      const file = await A.get(`${base}/files/${filePath(path)}`, { format: 'json' });
      viewer.replaceChildren(h('h3', {}, path), h('pre', { class: 'file-content' }, file.content));
    } catch (err) {
      viewer.replaceChildren(problem(err));
    }
  };
  const row = (f) => h('li', { class: 'file' },
    h('span', { class: 'file-name' }, f.path.split('/').pop()),
    h('span', { class: 'muted' }, ` ${f.size} B `),
    h('button', { type: 'button', 'aria-label': `View ${f.path}`, onclick: () => open(f.path) }, 'View'),
    h('button', {
      type: 'button', 'aria-label': `Download ${f.path}`,
      onclick: (ev) => act(ev.currentTarget, () =>
        A.download(`${base}/files/${filePath(f.path)}`, f.path.split('/').pop())),
    }, 'Download'));
  upload.addEventListener('change', () => act(upload, async () => {
    const files = await Promise.all([...upload.files].map(async (f) => ({
      path: f.name, content: A.toBase64(await f.arrayBuffer()),
    })));
    await A.post(`${base}/files`, { files });
    upload.value = '';
    box.refresh();
  }, 'Uploaded'));
  box = section('Workspace', async () => {
    const { files, source } = await A.get(`${base}/files`);
    return [
      h('p', { class: 'muted' }, `${files.length} files${source ? ` (from the ${source})` : ''}`),
      tree(files, row),
      field('Upload files into the workspace', upload),
      viewer,
    ];
  });
  return box;
}

// A folder tree from flat paths: folders fold, files carry their buttons.
function tree(files, row) {
  const root = { dirs: {}, files: [] };
  for (const f of files) {
    const parts = f.path.split('/');
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      node.dirs[dir] ??= { dirs: {}, files: [] };
      node = node.dirs[dir];
    }
    node.files.push(f);
  }
  const render = (node) => h('ul', { class: 'tree' },
    Object.entries(node.dirs).sort().map(([name, sub]) =>
      h('li', {}, h('details', { open: true }, h('summary', {}, `${name}/`), render(sub)))),
    node.files.sort((a, b) => a.path.localeCompare(b.path)).map(row));
  return render(root);
}

async function logs(base) {
  const { logs: lines } = await A.get(`${base}/logs`);
  if (!lines.length) return h('p', { class: 'muted' }, 'No log lines.');
  return h('pre', { class: 'logs' }, lines.map((l) =>
    h('span', { class: `log-${l.level}` }, `${l.ts || ''} [${l.level}] ${l.text}\n`)));
}

export async function usage(sessionId, agentName) {
  const params = { sessionId, agentName };
  const { stats } = await A.get('/api/usage/stats', params);
  const { events } = await A.get('/api/usage', { ...params, limit: 1000 });
  return [
    h('dl', { class: 'stats' }, Object.entries(stats).map(([k, v]) =>
      h('div', {}, h('dt', {}, k.replace(/^total/, '').replace(/([A-Z])/g, ' $1').trim()),
        h('dd', {}, String(v))))),
    usageChart(events),
  ];
}

// Tokens per hour from usage events.
export function usageChart(events) {
  const buckets = new Map();
  for (const e of events) {
    if (!/token/i.test(e.eventType)) continue;
    const hour = new Date(e.createdAt);
    hour.setMinutes(0, 0, 0);
    const label = hour.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit' });
    buckets.set(hour.getTime(), { label, value: (buckets.get(hour.getTime())?.value || 0) + e.value });
  }
  const points = [...buckets.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p);
  if (!points.length) return h('p', { class: 'muted' }, 'No usage recorded yet.');
  return barChart(points, { title: 'Tokens per hour' });
}
