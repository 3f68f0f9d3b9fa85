// Live state of accounts. Today: polling GET /api/sync/status/{id} while a sync is
// queued or running. The seam: when the service has a change stream (GET /api/events),
// `watchSync` subscribes to it instead and calls `onStatus` with the same status objects;
// nothing else in the client changes.
import { api } from './api.js';

const ACTIVE = new Set(['queued', 'running']);
// Each poll is a request counted by the rate limits (RATE_LIMIT_REQUESTS_PER_MINUTE).
export const POLL_MS = 2000;

export function syncActive(status) {
  return Boolean(status) && ACTIVE.has(status.state);
}

// Calls onStatus(status) now and after every change until the sync settles or stop() is
// called. Returns stop().
export function watchSync(accountId, onStatus, { follow = true } = {}) {
  let stopped = false;
  let timer;
  const tick = async () => {
    if (stopped) return;
    try {
      const status = await api(`/api/sync/status/${accountId}`);
      if (stopped) return;
      onStatus(status);
      if (follow && syncActive(status)) {
        timer = setTimeout(tick, POLL_MS);
      }
    } catch (error) {
      if (!stopped) onStatus(null, error);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
