// Folders (roles, unread counts) and message lists paged by cursor as the list scrolls,
// kept current by the live feed (js/events.js).
import { api } from './api.js';
import { onChange, settled } from './events.js';
import { announce, h, headline, mount, showError, shortPerson, when } from './dom.js';

const ROLE_ORDER = ['inbox', 'drafts', 'sent', 'archive', 'junk', 'trash'];
const ROLE_NAMES = { inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', archive: 'Archive', junk: 'Junk', trash: 'Trash', all: 'All mail', flagged: 'Starred' };
const folderCache = new Map();

export async function folders(accountId, { fresh = false } = {}) {
  if (fresh || !folderCache.has(accountId)) {
    const list = await api(`/api/accounts/${accountId}/folders`);
    folderCache.set(accountId, list.items);
  }
  return folderCache.get(accountId);
}

export function folderLabel(folder) {
  return (folder.role && ROLE_NAMES[folder.role]) || folder.name;
}

export function sortFolders(items) {
  const rank = (f) => {
    const i = ROLE_ORDER.indexOf(f.role);
    return i === -1 ? ROLE_ORDER.length : i;
  };
  return [...items].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}

export function inboxOf(items) {
  return items.find((f) => f.role === 'inbox') || items.find((f) => f.name.toUpperCase() === 'INBOX') || items[0];
}

// The navigation: every account and, for each, its folders.
export async function renderNav(nav, accounts, current, { fresh = false } = {}) {
  const groups = [];
  for (const account of accounts) {
    let items = [];
    try {
      items = sortFolders(await folders(account.id, { fresh }));
    } catch (error) {
      showError(error);
    }
    groups.push(h('li', {},
      h('h2', { class: 'nav-account', id: `nav-${account.id}` }, account.email),
      h('ul', { 'aria-labelledby': `nav-${account.id}` },
        items.length ? items.map((f) => {
          const active = current.folderId === f.id;
          return h('li', {},
            h('a', { href: `#/mail/${account.id}/${f.id}`, class: active ? 'active' : '', 'aria-current': active ? 'page' : false, dataset: { role: f.role || '' } },
              h('span', { class: 'folder-name' }, folderLabel(f)),
              f.unread_count ? h('span', { class: 'count', 'aria-label': `${f.unread_count} unread` }, String(f.unread_count)) : null));
        }) : h('li', { class: 'muted' }, 'No folders yet'))));
  }
  mount(nav,
    h('ul', { class: 'nav-links' },
      h('li', {}, h('a', { href: '#/accounts', class: current.view === 'accounts' ? 'active' : '' }, 'Accounts')),
      h('li', {}, h('a', { href: '#/outbox', class: current.view === 'outbox' ? 'active' : '' }, 'Outbox & drafts'))),
    h('ul', { class: 'nav-folders' }, groups));
}

// One row of a list: a link to the message.
export function messageRow(message, href, { withHeadline = false } = {}) {
  const classes = ['message-row', message.seen ? 'read' : 'unread', message.flagged ? 'flagged' : ''].join(' ');
  return h('li', { class: classes, dataset: { id: message.id } },
    h('a', { href, 'aria-label': `${message.seen ? '' : 'Unread. '}${message.flagged ? 'Starred. ' : ''}From ${shortPerson(message.sender)}: ${message.subject || '(no subject)'}` },
      h('span', { class: 'from' }, shortPerson(message.sender)),
      h('span', { class: 'date' }, when(message.received_date)),
      h('span', { class: 'subject' },
        message.flagged ? h('span', { class: 'star', 'aria-hidden': 'true' }, '★ ') : null,
        message.subject || '(no subject)',
        message.has_attachments ? h('span', { class: 'clip', 'aria-hidden': 'true' }, ' 📎') : null),
      h('span', { class: 'snippet' }, withHeadline && message.headline ? headline(message.headline) : message.snippet)));
}

// A list that loads the next page when its end scrolls into view. `load(cursor)` returns
// {items, next_cursor}; `href(message)` is each row's link.
export function pagedList(label, load, href, options = {}) {
  const list = h('ul', { class: 'messages', 'aria-label': label });
  const more = h('button', { type: 'button', class: 'more' }, 'Load more');
  const end = h('p', { class: 'list-end muted', 'aria-live': 'polite' });
  let cursor = null;
  let loading = false;
  let done = false;
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) next();
  });
  async function next() {
    if (loading || done) return;
    loading = true;
    end.textContent = 'Loading…';
    try {
      const page = await load(cursor);
      for (const message of page.items) list.append(messageRow(message, href(message), options));
      cursor = page.next_cursor;
      done = !cursor;
      end.textContent = done ? (list.children.length ? `${list.children.length} messages` : 'No messages') : '';
      more.hidden = done;
      if (options.onPage) options.onPage(page);
      if (!done) {
        observer.unobserve(more); // observing again reports at once if the end is still in view
        observer.observe(more);
      }
    } catch (error) {
      end.textContent = '';
      if (options.onError) options.onError(error);
      else showError(error);
      done = true;
      more.hidden = true;
    } finally {
      loading = false;
    }
  }
  more.addEventListener('click', next);
  const box = h('div', { class: 'list-box' }, list, end, more);
  observer.observe(more);
  next();
  // After rows came or went without paging (the live feed): the count under a full list.
  const recount = () => {
    if (done && !loading) end.textContent = list.children.length ? `${list.children.length} messages` : 'No messages';
  };
  return { box, list, recount, stop: () => observer.disconnect() };
}

export function folderMessages(accountId, folderId) {
  return (cursor) => api('/api/messages', { query: { account_id: accountId, folder_id: folderId, limit: 50, cursor } });
}

// Keeps an open list current from the live feed: new messages appear on top, changed ones
// are redrawn, deleted and moved-away ones leave. Returns stop().
export function followList(paged, accountId, load, href) {
  const refresh = settled(async () => {
    try {
      mergeTop(paged.list, await load(null), href);
      paged.recount();
    } catch {
      // the next change looks again
    }
  });
  const stop = onChange((change) => {
    if (change.type === '*') refresh();
    if (change.type !== 'message' || (change.account_id && change.account_id !== accountId)) return;
    if (change.op === 'destroyed') paged.list.querySelector(`.message-row[data-id="${change.id}"]`)?.remove();
    refresh();
    paged.recount();
  });
  return () => {
    stop();
    refresh.cancel();
  };
}

// Merges the newest page into the list: rows in page order, new ones inserted where they
// belong; a row above the page's end that the page no longer has moved away or is gone.
function mergeTop(list, page, href) {
  const rows = new Map([...list.querySelectorAll('.message-row')].map((row) => [row.dataset.id, row]));
  const ids = new Set(page.items.map((m) => m.id));
  const lastRow = rows.get(page.items.at(-1)?.id);
  for (const [id, row] of rows) {
    const above = !page.next_cursor || (lastRow && (row.compareDocumentPosition(lastRow) & Node.DOCUMENT_POSITION_FOLLOWING));
    if (!ids.has(id) && above) row.remove();
  }
  let previous = null;
  let added = 0;
  for (const message of page.items) {
    const old = rows.get(message.id);
    const row = messageRow(message, href(message));
    if (old && old.contains(document.activeElement)) { // keep the focus where it is
      previous = old;
      continue;
    }
    if (old) {
      row.classList.toggle('selected', old.classList.contains('selected'));
      old.replaceWith(row);
    } else {
      if (previous) previous.after(row);
      else list.prepend(row);
      added += 1;
    }
    previous = row;
  }
  if (added) announce(`${added} new message${added > 1 ? 's' : ''}`);
}
