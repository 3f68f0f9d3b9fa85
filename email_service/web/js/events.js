// Live state: the one place that watches the service for changes.
//
// One feed per signed-in tab. Where the service has a change stream (GET /api/events at
// `config.events_url`: this origin behind nginx, or EVENTS_PORT with `make run`), it is
// read with fetch, since EventSource cannot send the token and tenant headers; a dropped
// stream reconnects with Last-Event-ID and misses nothing. Where the stream cannot be
// opened, the feed polls GET /api/changes instead. Either way listeners get
// {type, op, id, account_id} ("message", "folder", "draft", "outbox", "account", "sync";
// account_id is null when polled: /api/changes lists ids only), or {type: '*'} when the
// position was lost (410) and everything should be read again.
import { api, config, session } from './api.js';

const ACTIVE = new Set(['queued', 'running']);
// Each poll is a request counted by the rate limits (RATE_LIMIT_REQUESTS_PER_MINUTE).
export const POLL_MS = 2000; // sync progress while a run is active and no stream tells us
export const CHANGES_POLL_MS = 5000; // GET /api/changes when there is no stream
const STREAM_CHECK_MS = 10000; // a running sync's status, between the stream's changes
const RETRY_MS = 3000; // the stream's own retry (api/events.py RETRY_MS)
const STREAM_FAILURES = 3; // attempts in a row before polling for the rest of the tab
const SETTLE_MS = 400; // changes come in bursts (a sync stores 50 at once): one look after

const listeners = new Set();
let feed = null;

export function syncActive(status) {
  return Boolean(status) && ACTIVE.has(status.state);
}

// 'stream', 'reconnecting', 'poll', 'connecting' or 'off'; also on <body data-live>.
export function liveMode() {
  return feed ? feed.mode : 'off';
}

// Calls listener(change) for every change until the returned function is called.
export function onChange(listener) {
  listeners.add(listener);
  if (!feed && session()) startFeed();
  return () => listeners.delete(listener);
}

// Signing out ends the feed (it reads with the session's token).
export function stopFeed() {
  if (feed) feed.stop();
  feed = null;
  delete document.body.dataset.live;
}

// fn() once, SETTLE_MS after the first of a burst of calls; cancel() drops a pending call.
export function settled(fn, ms = SETTLE_MS) {
  let timer = null;
  const call = () => {
    if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
  call.cancel = () => { clearTimeout(timer); timer = null; };
  return call;
}

function emit(change) {
  for (const listener of [...listeners]) {
    try {
      listener(change);
    } catch (error) {
      window.dispatchEvent(new CustomEvent('live-error', { detail: error }));
    }
  }
}

const MODE_TEXT = {
  connecting: 'Connecting…',
  stream: 'Live',
  reconnecting: 'Reconnecting…',
  poll: `Updates every ${CHANGES_POLL_MS / 1000} s`,
  off: '',
};

// What the header says about the feed.
export function liveLabel() {
  return MODE_TEXT[liveMode()];
}

function setMode(state, mode) {
  state.mode = mode;
  if (feed !== state) return;
  document.body.dataset.live = mode;
  const label = document.getElementById('live');
  if (label) label.textContent = MODE_TEXT[mode];
}

function pause(state, ms) {
  return new Promise((resolve) => { state.timer = setTimeout(resolve, ms); });
}

function startFeed() {
  const state = { mode: 'connecting', lastId: null, since: null, stopped: false, timer: null, abort: null };
  state.stop = () => {
    state.stopped = true;
    clearTimeout(state.timer);
    if (state.abort) state.abort.abort();
  };
  feed = state;
  setMode(state, 'connecting');
  run(state);
}

class NoStream extends Error {}

// The stream while it can be had: reconnects (with Last-Event-ID) after it was open, up to
// STREAM_FAILURES failures in a row; one that never opened is not tried again.
async function run(state) {
  let failures = 0;
  while (!state.stopped && config.events_url && failures < STREAM_FAILURES) {
    try {
      if (await readStream(state)) failures = 0; // it was open: reconnect where it ended
      else failures += 1;
    } catch (error) {
      if (error instanceof NoStream) break;
      failures += 1; // not reachable, refused by CORS or CSP, or it broke off
    }
    if (state.mode !== 'stream' && state.mode !== 'reconnecting') break; // never had it
    setMode(state, 'reconnecting');
    if (!state.stopped && failures < STREAM_FAILURES) await pause(state, RETRY_MS);
  }
  if (state.stopped) return;
  if (state.lastId) emit({ type: '*', op: 'reset' }); // what happened since it broke off
  await poll(state);
}

// One connection; true when the stream was open (then it ended), false when refused.
async function readStream(state) {
  const current = session();
  if (!current) return false;
  const headers = { Authorization: `Bearer ${current.token}`, [config.tenant_header]: current.tenant };
  if (state.lastId) headers['Last-Event-ID'] = state.lastId;
  state.abort = new AbortController();
  const response = await fetch(config.events_url, { headers, signal: state.abort.signal, cache: 'no-store' });
  if (response.status === 410) { // the change log no longer reaches back there
    state.lastId = null;
    emit({ type: '*', op: 'reset' });
    return true;
  }
  if (response.status === 204) { // the API itself: no stream is served at this address
    state.abort.abort();
    throw new NoStream();
  }
  if (!response.ok || !response.body) return false;
  setMode(state, 'stream');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done || state.stopped) return true;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n\r\n|\n\n|\r\r/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^(\r\n\r\n|\n\n|\r\r)/, '');
      dispatchBlock(state, block);
    }
  }
}

// One SSE event (text/event-stream framing): id, event and data lines; comments skipped.
function dispatchBlock(state, block) {
  let id = null;
  const data = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (name === 'id') id = value;
    else if (name === 'data') data.push(value);
  }
  if (id) state.lastId = id;
  if (!data.length) return;
  try {
    emit(JSON.parse(data.join('\n')));
  } catch {
    // not a change of ours: ignore it
  }
}

// No stream: GET /api/changes every CHANGES_POLL_MS, each id announced like a streamed one.
async function poll(state) {
  setMode(state, 'poll');
  while (!state.stopped) {
    try {
      const page = await api('/api/changes', { query: { since: state.since } });
      if (state.since) emitChanges(page.changes);
      state.since = page.new_state;
      if (page.has_more_changes) continue;
    } catch (error) {
      if (error.status === 410) {
        state.since = null;
        emit({ type: '*', op: 'reset' });
      } // anything else: the next round asks again
    }
    await pause(state, CHANGES_POLL_MS);
  }
}

function emitChanges(changes) {
  for (const [type, lists] of Object.entries(changes || {})) {
    for (const op of ['created', 'updated', 'destroyed']) {
      for (const id of lists[op] || []) emit({ type, op, id, account_id: null });
    }
  }
}

// Does `change` (maybe) concern this account? Polled changes do not say: maybe.
export function concerns(change, accountId) {
  if (change.type === '*') return true;
  if (change.type === 'sync' || change.type === 'account') return change.id === accountId;
  return !change.account_id || change.account_id === accountId;
}

// Calls onStatus(status) now and whenever the account's sync may have moved, until stop()
// (returned) is called: on its changes from the feed, and, while a run is active, every
// POLL_MS without a stream (its progress) or STREAM_CHECK_MS with one.
export function watchSync(accountId, onStatus, { follow = true } = {}) {
  let stopped = false;
  let busy = false;
  let timer;
  const look = async () => {
    if (stopped) return;
    if (busy) { again(); return; }
    busy = true;
    clearTimeout(timer);
    let active = false;
    try {
      const status = await api(`/api/sync/status/${accountId}`);
      if (stopped) return;
      active = syncActive(status);
      onStatus(status);
    } catch (error) {
      if (!stopped) onStatus(null, error);
    } finally {
      busy = false;
    }
    if (!stopped && follow && active) {
      timer = setTimeout(look, liveMode() === 'stream' ? STREAM_CHECK_MS : POLL_MS);
    }
  };
  const again = settled(look);
  const unsubscribe = follow
    ? onChange((change) => {
      if (['sync', 'message', 'folder', 'account', '*'].includes(change.type) && concerns(change, accountId)) again();
    })
    : () => {};
  look();
  return () => {
    stopped = true;
    clearTimeout(timer);
    again.cancel();
    unsubscribe();
  };
}
