// One message: headers, its conversation, the sanitized HTML in a sandboxed frame
// (remote images blocked until asked for), attachments, flags, move and delete.
import { api } from './api.js';
import { announce, h, mount, person, shortPerson, showError, size, when } from './dom.js';
import { folderLabel, folders, sortFolders } from './mailbox.js';

// The frame's own policy, inside the page's: nothing loads but inline styles and data:
// images (inline cid: parts are turned into data: URLs here), plus remote images once the
// reader asks for them. Scripts cannot run: the sandbox has no allow-scripts.
function framePolicy(remote) {
  const images = remote ? "data: https: http:" : 'data:';
  return `default-src 'none'; style-src 'unsafe-inline'; img-src ${images}; font-src data:`;
}

const FRAME_STYLE = 'body{font:15px/1.5 system-ui,sans-serif;color:#1f1f1f;margin:12px;overflow-wrap:anywhere}'
  + 'img{max-width:100%;height:auto}pre{white-space:pre-wrap}blockquote{margin-left:0;padding-left:12px;border-left:3px solid #ccc}';

function escapeText(text) {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

async function dataUrl(path) {
  const response = await api(path, { raw: true });
  const blob = await response.blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// Inline images point at the API's attachment URLs, which need the token: fetch them here.
async function inlineImages(html, messageId) {
  const doc = new DOMParser().parseFromString(html, 'text/html');
  const prefix = `/api/messages/${messageId}/attachments/`;
  for (const img of doc.querySelectorAll('img[src]')) {
    const src = img.getAttribute('src');
    const path = src.startsWith('http') ? new URL(src).pathname : src;
    if (path.startsWith(prefix)) {
      try {
        img.setAttribute('src', await dataUrl(path));
      } catch {
        img.removeAttribute('src');
      }
    }
  }
  return doc.body.innerHTML;
}

export async function frameDocument(message, remote) {
  const body = message.html
    ? await inlineImages(message.html, message.id)
    : `<pre>${escapeText(message.text || '')}</pre>`;
  return '<!doctype html><html><head><meta charset="utf-8">'
    + `<meta http-equiv="Content-Security-Policy" content="${framePolicy(remote)}">`
    + `<base target="_blank"><style>${FRAME_STYLE}</style></head><body>${body}</body></html>`;
}

async function download(attachment) {
  try {
    const response = await api(new URL(attachment.url, location.origin).pathname, { raw: true });
    const blob = await response.blob();
    const link = h('a', { href: URL.createObjectURL(blob), download: attachment.filename || `attachment-${attachment.index}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    showError(error);
  }
}

export async function change(message, fields) {
  const result = await api(`/api/messages/${message.id}`, { method: 'PATCH', body: fields });
  const updated = result.items?.[0];
  if (updated) Object.assign(message, updated);
  return message;
}

// Renders message `id` into `pane`; `actions` has back(), compose(mode, message),
// changed(message) and removed(message).
export async function renderMessage(pane, id, actions) {
  mount(pane, h('p', { class: 'muted' }, 'Loading message…'));
  let message;
  try {
    message = await api(`/api/messages/${id}`);
  } catch (error) {
    mount(pane, h('p', { class: 'error-text', role: 'alert' }, error.message));
    return null;
  }
  if (!message.seen) {
    change(message, { seen: true }).then(() => actions.changed(message)).catch(showError);
  }
  let remote = false;
  const frame = h('iframe', {
    class: 'mail-frame',
    title: `Message body: ${message.subject || '(no subject)'}`,
    sandbox: 'allow-popups allow-popups-to-escape-sandbox',
    referrerpolicy: 'no-referrer',
  });
  const showImages = async () => {
    try {
      message = { ...(await api(`/api/messages/${id}`, { query: { remote_images: 'true' } })), seen: message.seen };
      remote = true;
      frame.srcdoc = await frameDocument(message, remote);
      imagesBar.remove();
    } catch (error) {
      showError(error);
    }
  };
  const imagesBar = message.remote_images_blocked
    ? h('div', { class: 'notice' },
      `${message.remote_images_blocked} remote image${message.remote_images_blocked > 1 ? 's' : ''} blocked to protect your privacy. `,
      h('button', { type: 'button', onclick: showImages }, 'Show images'))
    : '';
  frame.srcdoc = await frameDocument(message, remote);

  const starButton = h('button', { type: 'button', 'aria-pressed': String(message.flagged), 'data-action': 'star' }, message.flagged ? 'Unstar' : 'Star');
  starButton.addEventListener('click', async () => {
    try {
      await change(message, { flagged: !message.flagged });
      starButton.textContent = message.flagged ? 'Unstar' : 'Star';
      starButton.setAttribute('aria-pressed', String(message.flagged));
      actions.changed(message);
    } catch (error) {
      showError(error);
    }
  });
  const unreadButton = h('button', { type: 'button', 'data-action': 'unread' }, 'Mark unread');
  unreadButton.addEventListener('click', async () => {
    try {
      await change(message, { seen: false });
      actions.changed(message);
      announce('Marked unread');
    } catch (error) {
      showError(error);
    }
  });
  const remove = async () => {
    try {
      await api(`/api/messages/${message.id}`, { method: 'DELETE' });
      announce('Message deleted');
      actions.removed(message);
    } catch (error) {
      showError(error);
    }
  };
  const moveSelect = h('select', { id: 'move-to', 'aria-label': 'Move to folder' }, h('option', { value: '' }, 'Move to…'));
  folders(message.account_id).then((items) => {
    for (const f of sortFolders(items)) {
      if (f.id !== message.folder_id) moveSelect.append(h('option', { value: f.id }, folderLabel(f)));
    }
  }).catch(showError);
  moveSelect.addEventListener('change', async () => {
    if (!moveSelect.value) return;
    try {
      await change(message, { folder_id: moveSelect.value });
      announce(`Moved to ${moveSelect.selectedOptions[0].textContent}`);
      actions.removed(message);
    } catch (error) {
      showError(error);
    }
  });

  const thread = h('div', { class: 'thread' });
  if (message.thread_id) {
    api(`/api/threads/${encodeURIComponent(message.thread_id)}`).then((result) => {
      if (result.items.length < 2) return;
      mount(thread, h('h3', { class: 'thread-title' }, `Conversation (${result.items.length})`),
        h('ol', { class: 'thread-list' }, result.items.map((item) => h('li', { class: item.id === message.id ? 'current' : '' },
          item.id === message.id
            ? h('span', { 'aria-current': 'true' }, `${shortPerson(item.sender)} · ${when(item.received_date)} · ${item.snippet}`)
            : h('a', { href: actions.link(item) }, `${shortPerson(item.sender)} · ${when(item.received_date)} · ${item.snippet}`)))));
    }).catch(showError);
  }

  const addresses = (label, list) => (list && list.length
    ? h('div', { class: 'addr' }, h('span', { class: 'muted' }, `${label}: `), list.map(person).join(', '))
    : null);
  mount(pane,
    h('article', { class: 'message', 'aria-labelledby': 'message-subject', dataset: { id: message.id } },
      h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Message actions' },
        h('button', { type: 'button', class: 'back', onclick: actions.back, 'aria-label': 'Back to list' }, '← Back'),
        h('button', { type: 'button', 'data-action': 'reply', onclick: () => actions.compose('reply', message) }, 'Reply'),
        h('button', { type: 'button', 'data-action': 'reply-all', onclick: () => actions.compose('all', message) }, 'Reply all'),
        h('button', { type: 'button', 'data-action': 'forward', onclick: () => actions.compose('forward', message) }, 'Forward'),
        starButton, unreadButton, moveSelect,
        h('button', { type: 'button', class: 'danger', 'data-action': 'delete', onclick: remove }, 'Delete')),
      h('h2', { id: 'message-subject', tabindex: '-1' }, message.subject || '(no subject)'),
      h('div', { class: 'headers' },
        addresses('From', message.sender ? [message.sender] : []),
        addresses('To', message.to),
        addresses('Cc', message.cc),
        h('div', { class: 'addr muted' }, new Date(message.received_date).toLocaleString(), ` · ${message.folder}`)),
      message.parse_error ? h('p', { class: 'error-text' }, `Could not read all of this message: ${message.parse_error}`) : null,
      imagesBar,
      frame,
      message.attachments.length
        ? h('section', { class: 'attachments', 'aria-label': 'Attachments' },
          h('h3', {}, `Attachments (${message.attachments.length})`),
          h('ul', {}, message.attachments.map((a) => h('li', {},
            h('button', { type: 'button', class: 'attachment', onclick: () => download(a), 'aria-label': `Download ${a.filename || 'attachment'} (${size(a.size)})` },
              `⬇ ${a.filename || `attachment ${a.index}`}`),
            h('span', { class: 'muted' }, ` ${a.content_type} · ${size(a.size)}`)))))
        : null,
      thread));
  return { message, star: () => starButton.click(), unread: () => unreadButton.click(), remove };
}
