// Accounts: list with sync state and progress, add, verify, sync, delete.
import { api } from './api.js';
import { announce, h, mount, showError, when } from './dom.js';
import { onChange, settled, syncActive, watchSync } from './events.js';

const watchers = new Map();

export function stopWatching() {
  for (const stop of watchers.values()) stop();
  watchers.clear();
}

export async function listAccounts() {
  const items = [];
  let cursor;
  do {
    const page = await api('/api/accounts', { query: { limit: 500, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

function progress(status) {
  let done = 0;
  let total = 0;
  for (const folder of Object.values(status.folders || {})) {
    done += folder.done;
    total += folder.total;
  }
  return { done, total };
}

const STATE_TEXT = {
  idle: 'Not synced yet',
  queued: 'Sync queued',
  running: 'Syncing',
  ok: 'Synced',
  error: 'Sync failed',
  auth_failed: 'Login refused',
};

function renderStatus(box, status, error) {
  if (error) {
    mount(box, h('span', { class: 'badge error' }, error.message));
    return;
  }
  const { done, total } = progress(status);
  const label = STATE_TEXT[status.state] || status.state;
  const children = [h('span', { class: `badge ${status.state}`, dataset: { state: status.state } }, label)];
  if (syncActive(status)) {
    children.push(
      h('progress', { max: String(total || 1), value: String(done), 'aria-label': 'Sync progress' }),
      h('span', { class: 'muted' }, total ? ` ${done} / ${total} messages` : ' listing folders…'),
    );
  } else if (status.state === 'ok') {
    children.push(h('span', { class: 'muted' }, ` ${status.messages_synced} messages · ${when(status.finished_at)}`));
  }
  if (status.last_error && !syncActive(status)) children.push(h('p', { class: 'error-text' }, status.last_error));
  mount(box, children);
}

function follow(account, box, onSettled) {
  watchers.get(account.id)?.();
  let wasActive = false;
  const stop = watchSync(account.id, (status, error) => {
    renderStatus(box, status, error);
    if (status && syncActive(status)) wasActive = true;
    else if (status && wasActive) onSettled(status);
  });
  watchers.set(account.id, stop);
}

function accountCard(account, refresh, onSynced) {
  const statusBox = h('div', { class: 'sync-status', 'aria-live': 'polite' }, 'Loading status…');
  const verifyBox = h('div', { class: 'verify' });
  const verify = async () => {
    mount(verifyBox, 'Checking…');
    try {
      const result = await api(`/api/accounts/${account.id}/verify`, { method: 'POST' });
      mount(
        verifyBox,
        ['imap', 'smtp'].map((kind) =>
          h('p', { class: result[kind].ok ? 'ok-text' : 'error-text' },
            `${kind.toUpperCase()}: ${result[kind].ok ? 'OK' : 'failed'} ${result[kind].detail || ''}`)),
      );
    } catch (error) {
      mount(verifyBox, h('p', { class: 'error-text' }, error.message));
    }
  };
  const sync = async () => {
    try {
      await api(`/api/sync/imap/${account.id}`, { method: 'POST' });
      announce(`Sync of ${account.email} queued`);
      follow(account, statusBox, onSynced);
    } catch (error) {
      showError(error);
    }
  };
  const remove = async () => {
    if (!confirm(`Remove ${account.email} and its stored mail?`)) return;
    try {
      await api(`/api/accounts/${account.id}`, { method: 'DELETE' });
      announce(`${account.email} removed`);
      refresh();
    } catch (error) {
      showError(error);
    }
  };
  follow(account, statusBox, onSynced);
  return h('li', { class: 'card account', dataset: { accountId: account.id } },
    h('h3', {}, account.display_name ? `${account.display_name} — ${account.email}` : account.email),
    h('p', { class: 'muted' }, `IMAP ${account.imap_host}:${account.imap_port} (${account.imap_security}) · SMTP ${account.smtp_host}:${account.smtp_port} (${account.smtp_security})`),
    account.status !== 'active' ? h('p', { class: 'badge' }, account.status) : null,
    statusBox,
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: sync, 'aria-label': `Sync ${account.email} now` }, 'Sync now'),
      h('button', { type: 'button', onclick: verify, 'aria-label': `Verify ${account.email}` }, 'Verify'),
      h('a', { class: 'button', href: `#/mail/${account.id}` }, 'Open mail'),
      h('button', { type: 'button', class: 'danger', onclick: remove, 'aria-label': `Remove ${account.email}` }, 'Remove')),
    verifyBox);
}

function field(label, attrs) {
  const id = `f-${attrs.name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, ...attrs }));
}

function securitySelect(label, name, value) {
  const id = `f-${name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label),
    h('select', { id, name },
      h('option', { value: '' }, 'default'),
      ['ssl', 'starttls', 'none'].map((v) => h('option', { value: v, selected: v === value }, v))));
}

function addForm(onAdded) {
  const error = h('p', { class: 'error-text', role: 'alert' });
  const form = h('form', { class: 'card add-account', 'aria-labelledby': 'add-title' },
    h('h3', { id: 'add-title' }, 'Add an account'),
    field('Email address', { name: 'email', type: 'email', required: true, autocomplete: 'off' }),
    field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' }),
    field('Display name (optional)', { name: 'display_name', type: 'text' }),
    h('details', {},
      h('summary', {}, 'Server settings'),
      field('Login name (if not the address)', { name: 'username', type: 'text' }),
      field('IMAP host', { name: 'imap_host', type: 'text' }),
      field('IMAP port', { name: 'imap_port', type: 'number', min: '1', max: '65535' }),
      securitySelect('IMAP security', 'imap_security'),
      field('SMTP host', { name: 'smtp_host', type: 'text' }),
      field('SMTP port', { name: 'smtp_port', type: 'number', min: '1', max: '65535' }),
      securitySelect('SMTP security', 'smtp_security')),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Add account'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    const body = {};
    for (const [key, value] of new FormData(form).entries()) {
      if (value === '') continue;
      body[key] = key.endsWith('_port') ? Number(value) : value;
    }
    try {
      const account = await api('/api/accounts', { method: 'POST', body });
      form.reset();
      announce(`${account.email} added; first sync started`);
      await api(`/api/sync/imap/${account.id}`, { method: 'POST' }).catch(showError);
      onAdded(account);
    } catch (failure) {
      const fields = (failure.problem?.errors || []).map((e) => `${e.field}: ${e.message}`);
      error.textContent = fields.length ? fields.join('; ') : failure.message;
    }
  });
  return form;
}

// Adding a mailbox through a configured OAuth2 provider: the browser goes to the provider
// and comes back to #/accounts (return_to) with the result in the query (js/app.js).
async function providerCard() {
  let items = [];
  try {
    items = (await api('/api/oauth/providers')).items;
  } catch (error) {
    showError(error);
  }
  if (!items.length) return null;
  const hint = h('input', { id: 'f-login_hint', name: 'login_hint', type: 'email', autocomplete: 'off' });
  const error = h('p', { class: 'error-text', role: 'alert' });
  const start = async (provider) => {
    error.textContent = '';
    const body = { return_to: '/#/accounts' };
    if (hint.value.trim()) body.login_hint = hint.value.trim();
    try {
      const answer = await api(`/api/oauth/${encodeURIComponent(provider.name)}/authorize`, { method: 'POST', body });
      if (!/^https?:\/\//i.test(answer.authorization_url)) throw new Error('The provider address is not a web address.');
      announce(`Going to ${provider.label} to sign in…`);
      location.assign(answer.authorization_url);
    } catch (failure) {
      error.textContent = failure.message;
    }
  };
  return h('section', { class: 'card add-oauth', 'aria-labelledby': 'oauth-title' },
    h('h3', { id: 'oauth-title' }, 'Add an account by signing in at its provider'),
    h('p', { class: 'muted' }, 'You sign in at the provider; this service keeps its tokens, never your password.'),
    h('div', { class: 'field' }, h('label', { for: 'f-login_hint' }, 'Address at the provider (optional)'), hint),
    h('div', { class: 'actions' },
      items.map((provider) => h('button', { type: 'button', class: 'primary', dataset: { provider: provider.name }, onclick: () => start(provider) },
        `Sign in with ${provider.label}`))),
    error);
}

// Back from an OAuth2 provider.
// The callback sends the browser to /?oauth_result=created|renewed&oauth_account=ID#/accounts
// or /?oauth_error=CODE#/accounts. Only codes travel, so a crafted link cannot word the
// message; the texts are ours.
const OAUTH_ERRORS = {
  oauth_state_invalid: 'The sign-in at the provider took too long or was already used. Start again.',
  oauth_grant_refused: 'The provider did not grant access to the mailbox.',
  remote_auth_failed: 'The mail server refused the provider’s token.',
  remote_temporary: 'The provider or the mail server did not answer; try again.',
};
const oauthReturn = new URLSearchParams(location.search);
if (oauthReturn.has('oauth_result') || oauthReturn.has('oauth_error')) {
  history.replaceState(null, '', `/${location.hash}`);
}

// The notice for the Accounts screen, once, from the address the callback sent us to.
export async function oauthNotice() {
  const result = oauthReturn.get('oauth_result');
  const code = oauthReturn.get('oauth_error');
  const id = oauthReturn.get('oauth_account');
  oauthReturn.delete('oauth_result');
  oauthReturn.delete('oauth_error');
  if (code) {
    const known = /^[a-z_]{1,40}$/.test(code) ? code : 'unknown';
    return { kind: 'error', text: OAUTH_ERRORS[known] || `Adding the account failed (${known}).` };
  }
  if (!result || !id) return null;
  let email;
  try {
    email = (await api(`/api/accounts/${encodeURIComponent(id)}`)).email;
  } catch {
    // not this tenant's (a link from elsewhere): say nothing about it
    return null;
  }
  return result === 'created'
    ? { kind: 'ok', text: `${email} added; its first sync has started.` }
    : { kind: 'ok', text: `${email} signed in again; its tokens were renewed.` };
}

// `notice`: {kind: 'ok' | 'error', text} to show above the list (an OAuth2 return).
export async function renderAccounts(main, { onChange: changed, notice = null }) {
  stopWatching();
  const list = h('ul', { class: 'cards', 'aria-label': 'Accounts' });
  const refresh = async () => {
    try {
      const accounts = await listAccounts();
      for (const [key, stop] of watchers) {
        if (key !== 'list') { stop(); watchers.delete(key); }
      }
      mount(list, accounts.length
        ? accounts.map((a) => accountCard(a, refresh, changed))
        : h('li', { class: 'muted' }, 'No accounts yet: add one below.'));
      changed();
    } catch (error) {
      showError(error);
    }
  };
  mount(main, h('h2', { tabindex: '-1' }, 'Accounts'),
    notice ? h('p', { class: `notice ${notice.kind}`, role: 'status' }, notice.text) : null,
    list, addForm(refresh));
  providerCard().then((card) => { if (card && list.isConnected) list.after(card); });
  // Accounts added, removed or changed elsewhere (another tab, the API, an OAuth2 return).
  const later = settled(refresh);
  watchers.set('list', onChange((change) => {
    if (change.type === 'account' || change.type === '*') later();
  }));
  await refresh();
}
