// The console's entry: sign-in and a hash router (#/agents, #/sessions/<id>, ...).
import * as A from './api.js';
import * as admin from './admin.js';
import { evals } from './evals.js';
import * as pages from './pages.js';
import { sessionPage } from './session.js';
import { usage } from './usage.js';
import { field, h } from './ui.js';

const main = document.getElementById('main');
let server = null; // the public /health answer: tells whether a key is needed
let leave = null; // closes the current page's streams

const go = (hash) => { if (location.hash === hash) route(); else location.hash = hash; };

const ROUTES = [
  [/^#?\/?$/, () => pages.overview(main)],
  [/^#\/agents$/, () => pages.agents(main, go)],
  [/^#\/agents\/([^/?]+)$/, (m) => pages.agentPage(main, decodeURIComponent(m[1]), go)],
  [/^#\/sessions(?:\?(.*))?$/, (m) => pages.sessions(main, go, new URLSearchParams(m[1] || ''))],
  [/^#\/sessions\/([0-9a-fA-F-]+)$/, (m) => sessionPage(main, m[1], go)],
  [/^#\/usage$/, () => usage(main)],
  [/^#\/queue$/, () => admin.queue(main)],
  [/^#\/keys$/, () => admin.keys(main)],
  [/^#\/credentials$/, () => admin.credentials(main)],
  [/^#\/evals$/, () => evals(main)],
];

const needsKey = () => server?.auth && !A.apiKey();

function signIn(message) {
  const key = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', required: true,
    spellcheck: 'false' });
  const form = h('form', { class: 'card signin', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API key of this server. It stays in this browser tab only ',
      '(session storage) and is sent with each request.'),
    message ? h('p', { class: 'error', role: 'alert' }, message) : null,
    field('API key', key), h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    A.setApiKey(key.value.trim());
    try {
      await A.get('/api/agents'); // proves the key before showing anything
    } catch (err) {
      A.clearApiKey();
      signIn(err.status === 401 ? 'That key was refused.' : err.message);
      return;
    }
    chrome();
    route();
  });
  main.replaceChildren(form);
  key.focus();
}

function chrome() {
  document.getElementById('signout').hidden = !A.apiKey();
  document.getElementById('server-info').textContent = server
    ? `v${server.version}${server.auth ? '' : ' · auth off'}` : '';
}

async function route() {
  if (leave) { leave(); leave = null; }
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href');
    const here = location.hash || '#/';
    a.toggleAttribute('aria-current', target === '#/' ? here === '#/' : here.startsWith(target));
  }
  closeMenu();
  if (needsKey()) { signIn(); return; }
  const hash = location.hash || '#/';
  for (const [pattern, page] of ROUTES) {
    const m = hash.match(pattern);
    if (m) {
      main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
      leave = (await page(m)) || null;
      return;
    }
  }
  main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Overview')));
}

const toggle = document.getElementById('menu-toggle');
function closeMenu() {
  document.body.classList.remove('menu-open');
  toggle.setAttribute('aria-expanded', 'false');
}
toggle.addEventListener('click', () => {
  const open = document.body.classList.toggle('menu-open');
  toggle.setAttribute('aria-expanded', String(open));
});
document.getElementById('signout').addEventListener('click', () => {
  A.clearApiKey();
  chrome();
  route();
});
window.addEventListener('ash:unauthorized', () => {
  A.clearApiKey();
  chrome();
  signIn('The server refused the key: sign in again.');
});
window.addEventListener('hashchange', route);

(async () => {
  try {
    server = (await A.health()).body;
  } catch (err) {
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Cannot reach the server: ${err.message}`));
    return;
  }
  chrome();
  route();
})();
