// Evals: an agent's cases (add, list), its runs (start, watch) and each run's results.
import * as A from './api.js';
import { act, badge, field, h, section, short, table, when } from './ui.js';

const topics = (text) => text.split(',').map((t) => t.trim()).filter(Boolean);
const score = (x) => (x === null || x === undefined ? '' : Number(x).toFixed(2));

export async function evals(main) {
  const pick = h('select', { id: 'eval-agent' });
  const body = h('div');
  try {
    for (const a of (await A.get('/api/agents')).agents) pick.append(h('option', { value: a.name }, a.name));
  } catch { /* shown by the sections */ }
  pick.addEventListener('change', () => agentEvals(body, pick.value));
  main.replaceChildren(h('h1', {}, 'Evals'), h('div', { class: 'card' }, field('Agent', pick)), body);
  if (pick.value) agentEvals(body, pick.value);
  else body.append(h('p', { class: 'muted' }, 'Deploy an agent first.'));
}

function agentEvals(body, agent) {
  const base = `/api/agents/${encodeURIComponent(agent)}`;
  const results = h('div', { 'aria-live': 'polite' });
  const cases = section('Eval cases', async () => table([
    ['Question', (c) => h('span', { class: 'clip', title: c.question }, c.question)],
    ['Topics', (c) => (c.expectedTopics || []).join(', ')],
    ['Category', (c) => c.category || ''],
    ['Active', (c) => (c.isActive === false ? 'no' : 'yes')],
  ], (await A.get(`${base}/eval-cases`)).cases, 'No cases yet: add one below.'));
  const runs = section('Eval runs', async () => table([
    ['Run', (r) => h('code', {}, short(r.id))], ['Status', (r) => badge(r.status)],
    ['Version', (r) => r.versionNumber ?? ''], ['Cases', (r) => r.totalCases],
    ['Pass rate', (r) => (r.passRate === null ? '' : `${Math.round(r.passRate * 100)} %`)],
    ['Created', (r) => when(r.createdAt)],
    ['', (r) => h('button', {
      type: 'button', 'aria-label': `Results of run ${short(r.id)}`,
      onclick: () => showResults(results, base, r),
    }, 'Results')],
  ], (await A.get(`${base}/eval-runs`)).runs, 'No runs yet.'));
  const start = h('button', {
    type: 'button',
    onclick: (ev) => act(ev.currentTarget, () => A.post(`${base}/eval-runs`, {}),
      (r) => `Run ${short(r.run.id)} started`).then(() => runs.refresh()),
  }, 'Run evals');
  const again = h('button', { type: 'button', onclick: () => runs.refresh() }, 'Refresh runs');
  body.replaceChildren(cases, caseForm(base, () => cases.refresh()), runs,
    h('div', { class: 'card filters' }, start, again), results);
}

function caseForm(base, done) {
  const question = h('textarea', { id: 'eval-question', rows: 2, required: true });
  const expected = h('input', { id: 'eval-topics', placeholder: 'comma, separated' });
  const reference = h('input', { id: 'eval-reference' });
  const add = h('button', { type: 'submit' }, 'Add case');
  const form = h('form', { class: 'card', 'aria-label': 'Add an eval case' },
    h('h2', {}, 'New case'), field('Question', question), field('Expected topics', expected),
    field('Reference answer', reference), add);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await act(add, () => A.post(`${base}/eval-cases`, {
      question: question.value, expectedTopics: topics(expected.value),
      referenceAnswer: reference.value.trim() || undefined,
    }), 'Case added');
    if (!ok) return;
    question.value = '';
    expected.value = '';
    reference.value = '';
    done();
  });
  return form;
}

function showResults(box, base, run) {
  box.replaceChildren(section(`Results of run ${short(run.id)}`, async () => table([
    ['Question', (x) => h('span', { class: 'clip', title: x.question || '' }, x.question || short(x.caseId))],
    ['Status', (x) => badge(x.status)],
    ['Passed', (x) => (x.passed === null || x.passed === undefined ? '' : x.passed ? 'yes' : 'no')],
    ['Topic score', (x) => score(x.topicScore)],
    ['Answer', (x) => h('span', { class: 'clip', title: x.answer || x.error || '' },
      x.error ? `error: ${x.error}` : x.answer || '')],
    ['Latency', (x) => (x.latencyMs ? `${x.latencyMs} ms` : '')],
  ], (await A.get(`${base}/eval-runs/${run.id}/results`)).results, 'No results yet.')));
}
