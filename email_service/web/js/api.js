// The public API, as any client uses it: a bearer token and the tenant header.
const STORE = 'email-service.session';

export const config = { login: 'token', default_tenant: 'default', tenant_header: 'X-Tenant-ID', events_url: '' };

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || 'error';
  }
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || 'null');
  } catch {
    return null;
  }
}

export function signIn(token, tenant) {
  sessionStorage.setItem(STORE, JSON.stringify({ token, tenant }));
}

export function signOut() {
  sessionStorage.removeItem(STORE);
}

export async function loadConfig() {
  const response = await fetch('/web/config');
  Object.assign(config, await response.json());
  return config;
}

export async function devToken(tenant) {
  const response = await fetch('/web/dev-token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ tenant }),
  });
  const body = await response.json();
  if (!response.ok) throw new ApiError(response.status, body);
  return body.token;
}

function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') u.searchParams.set(key, String(value));
  }
  return u.pathname + u.search;
}

// One request; a problem+json answer becomes an ApiError; 401 signs out.
export async function api(path, { method = 'GET', body, query, form, headers = {}, raw = false } = {}) {
  const current = session();
  const sent = { ...headers };
  if (current) {
    sent.Authorization = `Bearer ${current.token}`;
    sent[config.tenant_header] = current.tenant;
  }
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    sent['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), { method, headers: sent, body: payload });
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { detail: response.statusText };
    }
    if (response.status === 429) {
      const wait = response.headers.get('Retry-After');
      problem.detail = `Too many requests${wait ? `; try again in ${wait} s` : ''}.`;
    }
    const error = new ApiError(response.status, problem);
    if (response.status === 401) window.dispatchEvent(new CustomEvent('signed-out', { detail: error }));
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
}
