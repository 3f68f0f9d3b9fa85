// Search with the Gmail-style syntax; a query that does not parse shows where.
import { api } from './api.js';
import { h, mount } from './dom.js';
import { pagedList } from './mailbox.js';

export const SYNTAX_HELP = 'from: to: cc: subject: has:attachment filename: in: is:unread is:flagged before: after: newer_than: larger: "phrase" -not OR ( )';

function syntaxError(query, error) {
  const position = error.problem?.position;
  const parts = [h('p', {}, error.message)];
  if (Number.isInteger(position)) {
    parts.push(h('pre', { class: 'query-error', 'aria-label': `Error at character ${position + 1}` },
      query.slice(0, position), h('mark', {}, query.slice(position, position + 1) || ' '), query.slice(position + 1)));
  }
  return h('div', { class: 'search-error', role: 'alert', dataset: { code: error.code } }, parts);
}

export function renderSearch(pane, query, href) {
  const title = h('h2', { tabindex: '-1' }, `Search: ${query}`);
  const errorBox = h('div');
  const paged = pagedList(`Results for ${query}`, (cursor) => api('/api/sync/search', { query: { query, limit: 50, cursor } }), href, {
    withHeadline: true,
    onError: (error) => mount(errorBox, syntaxError(query, error)),
  });
  mount(pane, title, errorBox, paged.box, h('p', { class: 'muted help' }, `Syntax: ${SYNTAX_HELP}`));
  return paged;
}
