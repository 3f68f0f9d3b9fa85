// The client: sign-in, the shell, a hash router and keyboard shortcuts.
import { ApiError, api, config, devToken, loadConfig, session, signIn, signOut } from './api.js';
import { listAccounts, oauthNotice, renderAccounts, stopWatching } from './accounts.js';
import { renderCompose } from './compose.js';
import { h, mount, showError, typing } from './dom.js';
import { liveLabel, onChange, settled, stopFeed } from './events.js';
import { folderMessages, folders, followList, inboxOf, pagedList, renderNav } from './mailbox.js';
import { renderMessage } from './message.js';
import { renderOutbox, stopOutbox } from './outbox.js';
import { renderSearch, SYNTAX_HELP } from './search.js';

const app = document.getElementById('app');
const state = { accounts: [], list: null, reader: null, route: null, composer: null, live: null };

const SHORTCUTS = [
  ['c', 'Compose a new message'],
  ['/', 'Search'],
  ['j / k', 'Next / previous message'],
  ['o or Enter', 'Open the selected message'],
  ['u or Escape', 'Back to the list'],
  ['r', 'Reply'],
  ['a', 'Reply all'],
  ['f', 'Forward'],
  ['s', 'Star or unstar'],
  ['Shift+U', 'Mark unread'],
  ['#', 'Delete'],
  ['g then i', 'Go to the inbox'],
  ['?', 'Show these shortcuts'],
];

// ---- sign-in -------------------------------------------------------------------------
function renderSignIn(message) {
  const error = h('p', { class: 'error-text', role: 'alert' }, message || '');
  const tenant = h('input', { id: 'tenant', name: 'tenant', value: config.default_tenant, required: true, autocomplete: 'off' });
  const token = h('textarea', { id: 'token', name: 'token', rows: '4', required: config.login !== 'dev' });
  const form = h('form', { class: 'card sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in to email-service'),
    h('div', { class: 'field' }, h('label', { for: 'tenant' }, 'Tenant'), tenant),
    config.login === 'dev'
      ? h('p', { class: 'muted' }, 'Development mode: signing in mints a token for this tenant, valid for an hour.')
      : h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), token,
        h('p', { class: 'muted' }, 'A token from your operator, e.g. `email-service token --tenant T`.')),
    error,
    h('button', { type: 'submit', class: 'primary' }, config.login === 'dev' ? 'Sign in (development)' : 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    try {
      const value = config.login === 'dev' ? await devToken(tenant.value.trim()) : token.value.trim();
      signIn(value, tenant.value.trim());
      await api('/api/accounts', { query: { limit: 1 } });
      start();
    } catch (failure) {
      signOut();
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  });
  mount(app, h('main', { id: 'main', class: 'center' }, form));
  tenant.focus();
}

// ---- shell -----------------------------------------------------------------------------
function shell() {
  const searchInput = h('input', { id: 'q', type: 'search', name: 'q', placeholder: 'Search mail', title: SYNTAX_HELP, autocomplete: 'off' });
  const search = h('form', { role: 'search', class: 'search' },
    h('label', { for: 'q', class: 'sr-only' }, 'Search mail'), searchInput,
    h('button', { type: 'submit' }, 'Search'));
  search.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = searchInput.value.trim();
    if (q) go(`#/search/${encodeURIComponent(q)}`);
  });
  const menu = h('button', { type: 'button', class: 'menu', 'aria-expanded': 'false', 'aria-controls': 'nav', 'aria-label': 'Folders' }, '☰');
  menu.addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    menu.setAttribute('aria-expanded', String(open));
  });
  const current = session();
  mount(app,
    h('header', { class: 'top' },
      menu,
      h('h1', { class: 'brand' }, h('a', { href: '#/' }, 'email-service')),
      search,
      h('a', { href: '#/compose', class: 'button primary', 'data-action': 'compose' }, 'Compose'),
      h('span', { class: 'tenant muted' }, `Tenant ${current.tenant}`),
      h('span', { id: 'live', class: 'live muted', title: 'How this page learns about changes' }, liveLabel()),
      h('button', { type: 'button', onclick: () => { endSession(); location.hash = ''; renderSignIn(); } }, 'Sign out'),
      h('button', { type: 'button', class: 'help', 'aria-label': 'Keyboard shortcuts', onclick: showShortcuts }, '?')),
    h('div', { class: 'layout' },
      h('nav', { id: 'nav', 'aria-label': 'Mailboxes' }),
      h('main', { id: 'main', tabindex: '-1' })));
  document.getElementById('nav').addEventListener('click', (event) => {
    if (event.target.closest('a')) document.body.classList.remove('nav-open');
  });
}

function showShortcuts() {
  const dialog = h('dialog', { class: 'shortcuts', 'aria-labelledby': 'shortcuts-title' },
    h('h2', { id: 'shortcuts-title' }, 'Keyboard shortcuts'),
    h('dl', {}, SHORTCUTS.map(([key, text]) => [h('dt', {}, h('kbd', {}, key)), h('dd', {}, text)])),
    h('form', { method: 'dialog' }, h('button', { type: 'submit' }, 'Close')));
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---- routes ----------------------------------------------------------------------------
// #/accounts, #/mail/ACCOUNT[/FOLDER][?m=MESSAGE], #/search/QUERY[?m=MESSAGE],
// #/compose[/DRAFT][?reply|all|forward=MESSAGE], #/outbox
function parse() {
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || '', parts, query: new URLSearchParams(search || '') };
}

// The side bar; folders are fetched again only when asked (start, a sync settled).
async function refreshNav(fresh = false) {
  const r = state.route || parse();
  await renderNav(document.getElementById('nav'), state.accounts,
    { view: r.view, folderId: r.view === 'mail' ? r.parts[2] : null }, { fresh });
}

function listPage(main, label, load, base, { withHeadline = false, accountId = null } = {}) {
  const id = parse().query.get('m');
  const listPane = h('section', { class: 'list-pane', 'aria-label': label });
  const readerPane = h('section', { class: 'reader-pane', 'aria-label': 'Message' });
  mount(main, h('div', { class: `split${id ? ' reading' : ''}` }, listPane, readerPane));
  const href = (message) => `${base}?m=${message.id}`;
  const paged = typeof load === 'function'
    ? pagedList(label, load, href, { withHeadline })
    : load;
  if (typeof load === 'function') mount(listPane, h('h2', { class: 'list-title', tabindex: '-1' }, label), paged.box);
  if (accountId) {
    const stopLive = followList(paged, accountId, load, href);
    const stopPaging = paged.stop;
    paged.stop = () => { stopLive(); stopPaging(); };
  }
  state.list = { paged, listPane, readerPane, base };
  if (id) openMessage(id);
  else mount(readerPane, h('p', { class: 'muted empty' }, 'Select a message to read it.'));
  return paged;
}

async function openMessage(id) {
  const { readerPane, listPane, base } = state.list;
  for (const row of listPane.querySelectorAll('.message-row')) {
    row.classList.toggle('selected', row.dataset.id === id);
  }
  state.reader = await renderMessage(readerPane, id, {
    back: () => go(base),
    compose: (mode, message) => composeFrom(mode, message),
    link: (message) => `${base}?m=${message.id}`,
    changed: (message) => updateRow(message),
    removed: (message) => {
      listPane.querySelector(`.message-row[data-id="${message.id}"]`)?.remove();
      go(base);
      refreshNav(true);
    },
  });
  readerPane.querySelector('h2')?.focus({ preventScroll: true });
}

function updateRow(message) {
  const row = state.list?.listPane.querySelector(`.message-row[data-id="${message.id}"]`);
  if (row) {
    row.classList.toggle('unread', !message.seen);
    row.classList.toggle('read', message.seen);
    row.classList.toggle('flagged', message.flagged);
  }
  refreshNav(true); // the server counts a read or unread message at once
}

function composeFrom(mode, message) {
  state.pending = message;
  go(`#/compose?${mode}=${message.id}`);
}

async function route() {
  const r = parse();
  const previous = state.route;
  state.route = r;
  const main = document.getElementById('main');
  if (!main) return;
  // Same list, another message: keep the list and its scroll position.
  if (previous && state.list && previous.view === r.view && previous.parts.join('/') === r.parts.join('/') && ['mail', 'search'].includes(r.view)) {
    const id = r.query.get('m');
    main.querySelector('.split')?.classList.toggle('reading', Boolean(id));
    if (id) await openMessage(id);
    else state.list.listPane.querySelector('.selected a')?.focus();
    return;
  }
  stopWatching();
  stopOutbox();
  if (state.list?.paged?.stop) state.list.paged.stop();
  state.list = null;
  state.reader = null;
  if (state.composer) {
    await state.composer.flush();
    state.composer = null;
  }
  try {
    if (r.view === 'accounts' || (!r.view && !state.accounts.length)) {
      const notice = await oauthNotice();
      await renderAccounts(main, { onChange: reloadAccounts, notice });
    } else if (r.view === 'mail' || !r.view) {
      const accountId = r.parts[1] || state.accounts[0].id;
      let folderId = r.parts[2];
      if (!folderId) {
        const inbox = inboxOf(await folders(accountId, { fresh: true }));
        if (!inbox) {
          mount(main, h('h2', {}, 'No folders yet'), h('p', {}, 'The first sync has not listed any folders. '), h('a', { href: '#/accounts' }, 'See the sync state'));
          return;
        }
        location.replace(`#/mail/${accountId}/${inbox.id}`);
        return;
      }
      const folder = (await folders(accountId)).find((f) => f.id === folderId);
      const label = folder ? `${state.accounts.find((a) => a.id === accountId)?.email || ''} — ${folder.role ? folder.role[0].toUpperCase() + folder.role.slice(1) : folder.name}` : 'Messages';
      listPage(main, label, folderMessages(accountId, folderId), `#/mail/${accountId}/${folderId}`, { accountId });
    } else if (r.view === 'search') {
      const q = r.parts.slice(1).join('/');
      document.getElementById('q').value = q;
      const listPane = h('section', { class: 'list-pane', 'aria-label': 'Search results' });
      const base = `#/search/${encodeURIComponent(q)}`;
      const paged = renderSearch(listPane, q, (message) => `${base}?m=${message.id}`);
      const id = r.query.get('m');
      const readerPane = h('section', { class: 'reader-pane', 'aria-label': 'Message' });
      mount(main, h('div', { class: `split${id ? ' reading' : ''}` }, listPane, readerPane));
      state.list = { paged, listPane, readerPane, base };
      if (id) await openMessage(id);
      else mount(readerPane, h('p', { class: 'muted empty' }, 'Select a result to read it.'));
    } else if (r.view === 'compose' && !state.accounts.length) {
      mount(main, h('h2', { tabindex: '-1' }, 'New message'), h('p', {}, 'Add an account to send from first. '), h('a', { href: '#/accounts' }, 'Accounts'));
    } else if (r.view === 'compose') {
      const options = { draftId: r.parts[1] };
      for (const mode of ['reply', 'all', 'forward']) {
        const id = r.query.get(mode);
        if (id) {
          options.mode = mode;
          options.original = state.pending?.id === id ? state.pending : await api(`/api/messages/${id}`);
        }
      }
      state.composer = await renderCompose(main, options, {
        accounts: state.accounts,
        done: () => go('#/outbox'),
      });
    } else if (r.view === 'outbox') {
      await renderOutbox(main);
    } else {
      mount(main, h('h2', {}, 'Not found'), h('a', { href: '#/' }, 'Back to mail'));
    }
  } catch (error) {
    showError(error);
  }
  await refreshNav().catch(showError);
  if (!main.contains(document.activeElement)) main.querySelector('h2[tabindex]')?.focus({ preventScroll: true });
}

async function reloadAccounts() {
  state.accounts = await listAccounts();
  await refreshNav(true);
}

// ---- keyboard --------------------------------------------------------------------------
let pendingG = false;
function moveSelection(step) {
  if (!state.list) return;
  const rows = [...state.list.listPane.querySelectorAll('.message-row')];
  if (!rows.length) return;
  const index = rows.findIndex((row) => row.classList.contains('selected') || row.contains(document.activeElement));
  const next = rows[Math.max(0, Math.min(rows.length - 1, index + step))] || rows[0];
  rows.forEach((row) => row.classList.toggle('selected', row === next));
  next.querySelector('a').focus();
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event) || !session()) return;
  if (document.querySelector('dialog[open]')) return;
  const key = event.key;
  const message = state.reader?.message;
  if (pendingG) {
    pendingG = false;
    if (key === 'i' && state.accounts.length) go(`#/mail/${state.accounts[0].id}`);
    return;
  }
  const actions = {
    c: () => go('#/compose'),
    '/': () => document.getElementById('q')?.focus(),
    j: () => moveSelection(1),
    k: () => moveSelection(-1),
    o: () => state.list?.listPane.querySelector('.message-row.selected a')?.click(),
    u: () => state.list && go(state.list.base),
    Escape: () => state.list && go(state.list.base),
    r: () => message && composeFrom('reply', message),
    a: () => message && composeFrom('all', message),
    f: () => message && composeFrom('forward', message),
    s: () => state.reader?.star(),
    U: () => state.reader?.unread(),
    '#': () => state.reader?.remove(),
    g: () => { pendingG = true; },
    '?': showShortcuts,
  };
  if (actions[key]) {
    event.preventDefault();
    actions[key]();
  }
}

// ---- live ------------------------------------------------------------------------------
// Folder counts and the account list follow the feed (js/events.js) on every screen.
function followChanges() {
  if (state.live) state.live();
  const nav = settled(() => refreshNav(true).catch(showError), 1000);
  const accounts = settled(() => reloadAccounts().catch(showError));
  state.live = onChange((change) => {
    if (['message', 'folder', '*'].includes(change.type)) nav();
    if (['account', '*'].includes(change.type)) accounts();
  });
}

function endSession() {
  if (state.live) state.live();
  state.live = null;
  stopWatching();
  stopFeed();
  signOut();
}

// ---- start -----------------------------------------------------------------------------
async function start() {
  shell();
  followChanges();
  try {
    state.accounts = await listAccounts();
  } catch (error) {
    showError(error);
    return;
  }
  state.route = null;
  await refreshNav(true).catch(showError);
  await route();
}

window.addEventListener('hashchange', () => { if (session()) route(); });
window.addEventListener('keydown', onKey);
window.addEventListener('signed-out', (event) => {
  endSession();
  renderSignIn(`Signed out: ${event.detail.message}`);
});
window.addEventListener('unhandledrejection', (event) => {
  event.preventDefault();
  showError(event.reason);
});

loadConfig().then(() => {
  if (session()) start();
  else renderSignIn();
}).catch((error) => {
  mount(app, h('p', { class: 'error-text' }, `The service did not answer: ${error.message}`));
});
