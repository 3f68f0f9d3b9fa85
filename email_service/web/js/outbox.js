// The outbox (each send's state, cancel while it waits) and the drafts being written,
// read again when the live feed (js/events.js) reports a send or a draft changed.
import { api } from './api.js';
import { announce, h, mount, showError, when } from './dom.js';
import { onChange, settled } from './events.js';

const CANCELLABLE = new Set(['queued', 'retrying', 'needs_reconciliation']);
let unsubscribe = () => {};

export function stopOutbox() {
  unsubscribe();
  unsubscribe = () => {};
}

function row(item, refresh) {
  const cancel = async () => {
    try {
      await api(`/api/outbox/${item.id}/cancel`, { method: 'POST' });
      announce('Send cancelled; the draft is editable again');
      refresh();
    } catch (error) {
      showError(error);
    }
  };
  return h('li', { class: 'card outbox-item', dataset: { state: item.state, id: item.id } },
    h('h3', {}, item.subject || '(no subject)'),
    h('p', {}, h('span', { class: `badge ${item.state}` }, item.state.replace('_', ' ')), ` to ${item.recipients.join(', ')}`),
    h('p', { class: 'muted' },
      item.sent_at ? `Sent ${when(item.sent_at)}` : item.send_at ? `Scheduled for ${new Date(item.send_at).toLocaleString()}` : `Queued ${when(item.queued_at)}`,
      ` · attempts ${item.attempts}`,
      item.last_smtp_code ? ` · server: ${item.last_smtp_code} ${item.last_smtp_reply || ''}` : '',
      item.last_error ? ` · ${item.last_error}` : ''),
    item.bounces && item.bounces.length
      ? h('p', { class: 'muted' }, `Bounces: ${item.bounces.map((b) => `${b.recipient} ${b.action} ${b.status}`).join(', ')}`)
      : null,
    CANCELLABLE.has(item.state) ? h('button', { type: 'button', onclick: cancel, 'aria-label': `Cancel sending ${item.subject || 'message'}` }, 'Cancel') : null);
}

export async function renderOutbox(main) {
  stopOutbox();
  const sends = h('ul', { class: 'cards', 'aria-label': 'Outbox' });
  const drafts = h('ul', { class: 'cards', 'aria-label': 'Drafts' });
  const refresh = async () => {
    try {
      const [outbox, draftPage] = await Promise.all([api('/api/outbox', { query: { limit: 50 } }), api('/api/compose/drafts', { query: { limit: 50 } })]);
      mount(sends, outbox.items.length ? outbox.items.map((item) => row(item, refresh)) : h('li', { class: 'muted' }, 'Nothing sent yet.'));
      const editing = draftPage.items.filter((d) => d.state === 'editing');
      mount(drafts, editing.length
        ? editing.map((d) => h('li', { class: 'card' }, h('a', { href: `#/compose/${d.id}` }, d.subject || '(no subject)'),
          h('span', { class: 'muted' }, ` to ${d.to.map((a) => a.email).join(', ') || 'nobody yet'} · ${when(d.updated_at)}`)))
        : h('li', { class: 'muted' }, 'No drafts.'));
    } catch (error) {
      showError(error);
    }
  };
  mount(main, h('h2', { tabindex: '-1' }, 'Outbox'), sends, h('h2', {}, 'Drafts'), drafts);
  const later = settled(refresh);
  unsubscribe = onChange((change) => {
    if (['outbox', 'draft', '*'].includes(change.type)) later();
  });
  await refresh();
}
