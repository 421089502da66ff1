// Usage and analytics: exact totals, the same per agent, sessions and eval runs by status.
import * as A from './api.js';
import { usageChart } from './session.js';
import { field, h, section, table } from './ui.js';

// The stats fields of /api/usage/stats, in the order and words the page shows them.
const COUNTERS = [
  ['totalInputTokens', 'Input tokens'], ['totalOutputTokens', 'Output tokens'],
  ['totalCacheCreationTokens', 'Cache writes (tokens)'], ['totalCacheReadTokens', 'Cache reads (tokens)'],
  ['totalToolCalls', 'Tool calls'], ['totalMessages', 'Messages'],
  ['totalComputeSeconds', 'Compute seconds'],
];
const WINDOWS = [['', 'All time'], ['24', 'Last 24 hours'], ['168', 'Last 7 days'], ['720', 'Last 30 days']];

export const number = (key, v) => (key === 'totalComputeSeconds'
  ? Number(v || 0).toFixed(1) : Number(v || 0).toLocaleString('en-US'));

const stats = (s) => h('dl', { class: 'stats' }, COUNTERS.map(([key, label]) =>
  h('div', {}, h('dt', {}, label), h('dd', { dataset: { counter: key } }, number(key, s[key])))));

const byStatus = (counts) => (Object.keys(counts).length
  ? h('dl', { class: 'stats' }, Object.entries(counts).map(([k, n]) =>
    h('div', {}, h('dt', {}, k), h('dd', {}, String(n)))))
  : h('p', { class: 'muted' }, 'None.'));

export async function usage(main) {
  const agent = h('select', { id: 'usage-agent' }, h('option', { value: '' }, 'all agents'));
  const since = h('select', { id: 'usage-window' },
    WINDOWS.map(([v, label]) => h('option', { value: v }, label)));
  let names = [];
  try {
    names = (await A.get('/api/agents')).agents.map((a) => a.name);
    for (const n of names) agent.append(h('option', { value: n }, n));
  } catch { /* each section says what failed */ }
  const body = h('div');
  const load = () => {
    const after = since.value
      ? new Date(Date.now() - Number(since.value) * 3600e3).toISOString() : undefined;
    const flt = { agentName: agent.value, after };
    const shown = agent.value ? [agent.value] : names;
    const analytics = A.get('/api/analytics', { after }); // one request for both boxes
    body.replaceChildren(
      section('Totals', async () => stats((await A.get('/api/usage/stats', flt)).stats)),
      section('Usage by agent', async () => {
        const rows = await Promise.all(shown.map(async (name) => ({
          name, ...(await A.get('/api/usage/stats', { agentName: name, after })).stats })));
        return table([['Agent', (r) => h('a', { href: `#/agents/${encodeURIComponent(r.name)}` }, r.name)],
          ...COUNTERS.map(([key, label]) => [label, (r) => number(key, r[key])])],
        rows, 'No agents deployed yet.');
      }),
      section('Tokens over time', async () => usageChart(
        (await A.get('/api/usage', { ...flt, limit: 1000 })).events)),
      h('div', { class: 'grid' },
        section('Sessions by status', async () => {
          const a = await analytics;
          return [h('p', {}, `${a.sessions.total} sessions, ${a.agents.total} agents`),
            byStatus(a.sessions.byStatus)];
        }),
        section('Eval runs by status', async () => {
          const a = await analytics;
          return [h('p', {}, `${a.evals.totalRuns} runs`), byStatus(a.evals.byStatus)];
        })));
  };
  agent.addEventListener('change', load);
  since.addEventListener('change', load);
  main.replaceChildren(h('h1', {}, 'Usage'),
    h('div', { class: 'card filters' }, h('form', { class: 'inline', 'aria-label': 'Filter usage' },
      field('Agent', agent), field('Period', since))), body);
  load();
}
