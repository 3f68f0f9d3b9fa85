// Compose: new, reply, reply-all, forward; attachments; saved as you type; send or schedule.
import { api, newKey } from './api.js';
import { announce, debounce, h, mount, person, showError, size } from './dom.js';

const SAVE_DELAY_MS = 1200;

export function parseAddresses(text) {
  return text.split(/[,;\n]/).map((s) => s.trim()).filter(Boolean).map((part) => {
    const match = part.match(/^(.*)<([^<>]+)>$/);
    if (!match) return part;
    const name = match[1].trim().replace(/^"|"$/g, '');
    return name ? { email: match[2].trim(), name } : match[2].trim();
  });
}

function formatAddresses(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(', ');
}

function quote(original) {
  const text = (original.text || original.snippet || '').split('\n').map((line) => `> ${line}`).join('\n');
  return `\n\nOn ${new Date(original.received_date).toLocaleString()}, ${person(original.sender)} wrote:\n${text}`;
}

// The draft to start from: a fresh one, one being edited, or one made from `original`.
async function startDraft({ draftId, mode, original, accountId }) {
  if (draftId) return api(`/api/compose/drafts/${draftId}`);
  if (!original) return api('/api/compose/draft', { method: 'POST', body: { account_id: accountId || null } });
  const body = { account_id: original.account_id };
  if (mode === 'forward') {
    body.forward_of = original.id;
    body.forward_mode = 'attachment';
  } else {
    body.in_reply_to = original.id;
    body.body = quote(original);
  }
  const draft = await api('/api/compose/draft', { method: 'POST', body });
  if (mode === 'all') {
    const account = await api(`/api/accounts/${original.account_id}`);
    const mine = new Set([account.email.toLowerCase(), ...draft.to.map((a) => a.email.toLowerCase())]);
    const cc = [...original.to, ...original.cc].filter((a) => !mine.has(a.email.toLowerCase()));
    if (cc.length) return api(`/api/compose/drafts/${draft.id}`, { method: 'PUT', body: { cc } });
  }
  return draft;
}

function input(label, name, attrs = {}) {
  const id = `c-${name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name, ...attrs }));
}

export async function renderCompose(main, options, { accounts, done }) {
  mount(main, h('p', { class: 'muted' }, 'Preparing draft…'));
  let draft;
  try {
    draft = await startDraft(options);
  } catch (error) {
    mount(main, h('p', { class: 'error-text', role: 'alert' }, error.message));
    return;
  }
  let attachments = [...draft.attachments];
  const state = h('p', { class: 'save-state muted', 'aria-live': 'polite' }, 'Draft saved');
  const error = h('p', { class: 'error-text', role: 'alert' });
  const from = h('select', { id: 'c-from', name: 'account_id' },
    accounts.map((a) => h('option', { value: a.id, selected: a.id === draft.account_id }, a.display_name ? `${a.display_name} <${a.email}>` : a.email)));
  const body = h('textarea', { id: 'c-body', name: 'body', rows: '14' });
  body.value = draft.body || '';
  const attachList = h('ul', { class: 'attach-list', 'aria-label': 'Attached files' });
  const fileInput = h('input', { id: 'c-files', type: 'file', multiple: true });
  const when = h('input', { id: 'c-send-at', type: 'datetime-local', name: 'send_at' });
  const form = h('form', { class: 'compose', 'aria-labelledby': 'compose-title' },
    h('h2', { id: 'compose-title', tabindex: '-1' }, options.mode === 'forward' ? 'Forward' : options.original ? 'Reply' : 'New message'),
    h('div', { class: 'field' }, h('label', { for: 'c-from' }, 'From'), from),
    input('To', 'to', { value: formatAddresses(draft.to), autocomplete: 'off' }),
    input('Cc', 'cc', { value: formatAddresses(draft.cc), autocomplete: 'off' }),
    input('Bcc', 'bcc', { value: formatAddresses(draft.bcc), autocomplete: 'off' }),
    input('Subject', 'subject', { value: draft.subject || '' }),
    draft.forward_of ? h('p', { class: 'muted' }, 'The original message is attached.') : null,
    h('div', { class: 'field' }, h('label', { for: 'c-body' }, 'Message'), body),
    h('div', { class: 'field' }, h('label', { for: 'c-files' }, 'Attach files'), fileInput),
    attachList,
    h('div', { class: 'field' }, h('label', { for: 'c-send-at' }, 'Send later (optional)'), when),
    error,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', 'data-action': 'send' }, 'Send'),
      h('button', { type: 'button', 'data-action': 'schedule', onclick: () => send(true) }, 'Schedule'),
      h('button', { type: 'button', class: 'danger', 'data-action': 'discard', onclick: discard }, 'Discard')),
    state);

  const fields = () => {
    const data = new FormData(form);
    return {
      account_id: data.get('account_id'),
      to: parseAddresses(data.get('to')),
      cc: parseAddresses(data.get('cc')),
      bcc: parseAddresses(data.get('bcc')),
      subject: data.get('subject'),
      body: data.get('body'),
      attachments: attachments.map((a) => a.id),
    };
  };
  let saving = Promise.resolve();
  let finished = false; // sent or discarded: nothing more to save
  const save = () => {
    if (finished) return Promise.resolve(false);
    saving = saving.then(async () => {
      state.textContent = 'Saving…';
      try {
        draft = await api(`/api/compose/drafts/${draft.id}`, { method: 'PUT', body: fields() });
        state.textContent = `Draft saved ${new Date().toLocaleTimeString()}`;
        error.textContent = '';
        return true;
      } catch (failure) {
        state.textContent = 'Not saved';
        error.textContent = failure.message;
        return false;
      }
    });
    return saving;
  };
  const autosave = debounce(save, SAVE_DELAY_MS);
  form.addEventListener('input', (event) => {
    if (event.target !== fileInput && event.target !== when) autosave();
  });
  from.addEventListener('change', autosave);

  function renderAttachments() {
    mount(attachList, attachments.map((a) => h('li', {},
      `${a.filename} (${size(a.size)}) `,
      h('button', {
        type: 'button',
        'aria-label': `Remove ${a.filename}`,
        onclick: async () => {
          attachments = attachments.filter((x) => x.id !== a.id);
          renderAttachments();
          await save();
        },
      }, 'Remove'))));
  }
  renderAttachments();
  fileInput.addEventListener('change', async () => {
    for (const file of fileInput.files) {
      const data = new FormData();
      data.append('file', file, file.name);
      try {
        state.textContent = `Uploading ${file.name}…`;
        attachments.push(await api('/api/compose/attachments', { method: 'POST', form: data }));
        renderAttachments();
      } catch (failure) {
        error.textContent = `${file.name}: ${failure.message}`;
      }
    }
    fileInput.value = '';
    await save();
  });

  async function send(scheduled) {
    autosave.cancel();
    if (scheduled) {
      if (!when.value) {
        error.textContent = 'Choose when to send it.';
        when.focus();
        return;
      }
      try {
        draft = await api(`/api/compose/drafts/${draft.id}`, { method: 'PUT', body: { ...fields(), send_at: new Date(when.value).toISOString() } });
      } catch (failure) {
        error.textContent = failure.message;
        return;
      }
    } else if (!(await save())) {
      return;
    }
    try {
      await api(`/api/compose/send/${draft.id}`, { method: 'POST', headers: { 'Idempotency-Key': newKey() } });
      finished = true;
      announce(scheduled ? `Scheduled for ${new Date(when.value).toLocaleString()}` : 'Sending…');
      done('sent');
    } catch (failure) {
      error.textContent = failure.message;
    }
  }
  async function discard() {
    autosave.cancel();
    try {
      await saving;
      finished = true;
      await api(`/api/compose/drafts/${draft.id}`, { method: 'DELETE' });
      announce('Draft discarded');
      done('discarded');
    } catch (failure) {
      showError(failure);
    }
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    send(false);
  });
  mount(main, form);
  (options.original && options.mode !== 'forward' ? body : form.querySelector('#c-to')).focus();
  if (options.original && options.mode !== 'forward') body.setSelectionRange(0, 0);
  return { flush: () => { autosave.cancel(); return save(); } };
}
