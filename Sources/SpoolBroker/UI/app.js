// Spool dashboard: a single page over the broker's JSON API, with hash routing so the broker only
// serves /ui. Plain ES2020, no build step, nothing from the internet (the broker's CSP forbids it).
'use strict';

// ============================================================================================
// Constants and state
// ============================================================================================

// The broker root, so the API resolves even if /ui sits under a path prefix behind a proxy.
const ROOT = location.pathname.replace(/\/ui(\/.*)?$/, '') + '/';
// sessionStorage only: the key dies with the tab, never reaches a URL, a cookie or localStorage.
const KEY_STORAGE = 'spool.apiKey';
const POLL_MS = 2000;
const JOB_STATUSES = ['pending', 'running', 'done', 'failed', 'canceled'];
const TERMINAL = new Set(['done', 'failed', 'canceled']);
const BATCH_ENDED = new Set(['COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED']);
// Batch statuses drawn with the colour of the job status they resemble.
const BATCH_BADGE = {
  VALIDATING: 'pending', IN_PROGRESS: 'running', COMPLETED: 'done', FAILED: 'failed',
  EXPIRED: 'failed', CANCELLING: 'canceled', CANCELLED: 'canceled',
};
const JOBS_PAGE_SIZE = 50;
// Previews download the whole file into memory, so big files get a download button only.
const PREVIEW_MAX_BYTES = 64 * 1024 * 1024;

const app = {
  open: false,        // the broker answered without a key (an open loopback broker)
  page: null,         // the live Page (its timers and requests stop on navigation)
};

// ============================================================================================
// DOM helpers
// ============================================================================================

const $ = (selector, root = document) => root.querySelector(selector);

// h('a', {href: '#/x', class: 'y', 'data-testid': 'z', onclick: fn}, 'text', child, [more])
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// The same for SVG elements (charts).
function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = value;
    else if (key === 'value' && 'value' in el) el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

// Replaces a node's content only when it differs, so live updates do not disturb selection.
function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

// Keeps `container`'s children in step with `items` by key: existing elements are updated in place
// (tests and users keep their references and focus), new ones created, missing ones removed.
function syncList(container, items, key, create, update) {
  const existing = new Map();
  for (const child of Array.from(container.children)) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
    else child.remove();
  }
  let previous = null;
  for (const item of items) {
    const k = String(key(item));
    let el = existing.get(k);
    if (el) existing.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (wanted !== el) container.insertBefore(el, wanted);
    previous = el;
  }
  for (const el of existing.values()) el.remove();
}

function tableWrap(table) {
  return h('div', { class: 'table-wrap' }, table);
}

function badge(status, kind = status) {
  return h('span', { class: `badge ${kind}` }, status);
}

// A div progress bar: role=progressbar with aria values, data-value as a fraction for tests.
function progressBar(attrs = {}, small = false) {
  const fill = h('div', { class: 'fill' });
  const bar = h('div', {
    class: small ? 'bar small' : 'bar', role: 'progressbar',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0, ...attrs,
  }, fill);
  const label = h('span', { class: 'label' }, '');
  const wrap = h('div', { class: 'progress' }, bar, label);
  wrap.update = (fraction, text, kind = '') => {
    const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    fill.style.width = (f * 100).toFixed(1) + '%';  // a style property from JS is allowed by the CSP
    bar.setAttribute('aria-valuenow', String(Math.round(f * 100)));
    bar.dataset.value = String(Number(f.toFixed(4)));
    bar.className = (small ? 'bar small ' : 'bar ') + kind;
    setText(label, text === undefined ? Math.round(f * 100) + '%' : text);
  };
  return wrap;
}

function jsonBlock(value) {
  let text = JSON.stringify(value, null, 2);
  if (text === undefined) text = String(value);
  if (text.length > 200000) text = text.slice(0, 200000) + '\n… (cut at 200,000 characters)';
  return h('pre', { class: 'json' }, text);
}

function fieldList(pairs) {
  return h('dl', { class: 'fields' },
    pairs.filter(Boolean).map(([label, value, attrs]) => h('div', attrs || {}, h('dt', {}, label), h('dd', {}, value ?? '—'))));
}

// ============================================================================================
// Formatting
// ============================================================================================

// Dates arrive as RFC 3339 strings (jobs) or Unix seconds (files, some batch fields).
function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

const pad = (n) => String(n).padStart(2, '0');

function fmtTime(value) {
  const d = toDate(value);
  if (!d) return '—';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "42 s", "3 m 10 s", "2 h 5 m", "3 d 4 h"
function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return '—';
  let s = Math.max(0, Number(seconds));
  if (s < 10) return (Math.round(s * 10) / 10) + ' s';
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtAgo(value) {
  const d = toDate(value);
  if (!d) return '—';
  const seconds = (Date.now() - d.getTime()) / 1000;
  if (seconds < 1) return 'just now';
  return fmtDuration(seconds) + ' ago';
}

function fmtBetween(from, to) {
  const a = toDate(from);
  const b = toDate(to);
  return a && b ? fmtDuration((b - a) / 1000) : '—';
}

function fmtBytes(n) {
  if (!Number.isFinite(Number(n))) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return (unit === 0 ? value : value.toFixed(1)) + ' ' + units[unit];
}

const fmtCount = (n) => (Number.isFinite(Number(n)) ? Number(n).toLocaleString('en-US') : '—');

function timeCell(value) {
  const d = toDate(value);
  return d ? h('span', { title: fmtTime(value), class: 'nowrap' }, fmtAgo(value)) : '—';
}

// info.progress may be 0..1 or 0..100: anything above 1 is a percentage.
function progressFraction(progress) {
  const p = Number(progress);
  if (progress === null || progress === undefined || progress === '' || !Number.isFinite(p)) return null;
  return Math.min(1, Math.max(0, p > 1 ? p / 100 : p));
}

function jobLink(model, requestId, text = requestId) {
  return h('a', { href: `#/job/${encodeURIComponent(model)}/${encodeURIComponent(requestId)}`, class: 'mono' }, text);
}

function jobsLink(model, text = model) {
  return h('a', { href: '#/jobs?' + new URLSearchParams({ model }).toString() }, text);
}

// ============================================================================================
// API access
// ============================================================================================

class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.message) || fallback || `The broker answered ${status}.`);
    this.status = status;
    this.body = body || {};
    this.code = this.body.code;
  }
}

const storedKey = () => sessionStorage.getItem(KEY_STORAGE);

function authHeaders(extra = {}, key = storedKey()) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// A request to the broker; throws ApiError for any non-2xx. A 401 signs out, except for `probe`s
// (the login check), which handle it themselves.
async function request(path, { method = 'GET', body, signal, key, probe = false, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(ROOT + path, {
      method, signal, credentials: 'same-origin', cache: 'no-store',
      headers: authHeaders(headers, key === undefined ? storedKey() : key),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, null, 'The broker did not answer (network error).');
  }
  if (response.ok) return response;
  let errorBody = null;
  try { errorBody = await response.json(); } catch (_) { /* not JSON: keep the status line */ }
  const error = new ApiError(response.status, errorBody, `${response.status} ${response.statusText}`.trim());
  if (response.status === 401 && !probe) signOut('Your API key was not accepted (it may have been revoked or expired). Sign in again.');
  throw error;
}

async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

const post = (path, body, options = {}) => api(path, { ...options, method: 'POST', body });

// Downloads need the Authorization header, so a plain link cannot do it: fetch, Blob URL, <a download>.
async function downloadFile(fileId, name) {
  const response = await request(`v1/files/${encodeURIComponent(fileId)}/content`, { accept: '*/*' });
  const url = URL.createObjectURL(await response.blob());
  const a = h('a', { href: url, download: name || fileId });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);  // give the browser time to start the save
}

// ============================================================================================
// Banners and the confirmation dialog
// ============================================================================================

function showError(error) {
  if (error && error.name === 'AbortError') return;
  let message = error instanceof Error ? error.message : String(error);
  if (error && error.code === 'insufficient_scope') message += ' The Jobs and Batches pages need only a client key.';
  let el = $('[data-testid="error-banner"]');
  if (!el) {
    el = h('div', { class: 'banner error', role: 'alert', 'data-testid': 'error-banner' });
    $('#banners').append(el);
  }
  setText(el, message);
}

function clearError() {
  const el = $('[data-testid="error-banner"]');
  if (el) el.remove();
}

// An in-page confirmation (a <dialog>); resolves true when OK is chosen. Buttons close it directly
// rather than through a method=dialog form, which the CSP's form-action 'none' could refuse.
function confirmAction(title, text, okLabel = 'OK') {
  const dialog = $('#confirm');
  setText($('#confirm-title'), title);
  setText($('#confirm-text'), text);
  setText($('[data-testid="confirm-ok"]', dialog), okLabel);
  return new Promise((resolve) => {
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    $('[data-testid="confirm-cancel"]', dialog).focus();  // the safe choice has the focus
  });
}

// The element an action's outcome is written into (success or the API's message).
function actionResult() {
  const el = h('p', { class: 'banner action-result', 'data-testid': 'action-result', hidden: true });
  el.show = (text, kind) => {
    el.className = `banner action-result ${kind}`;
    el.hidden = false;
    setText(el, text);
  };
  return el;
}

// Runs an action behind the dialog and writes what happened into `result`.
async function confirmed({ title, text, okLabel, result, run, done }) {
  if (!(await confirmAction(title, text, okLabel))) return;
  try {
    result.show(await run(), 'ok');
    if (done) done();
  } catch (error) {
    if (error.name !== 'AbortError') result.show(error.message, 'error');
  }
}

// "model X has N waiting jobs and no live worker", kept in step with /v1/models by syncList.
function syncNoWorkerWarnings(container, models) {
  const orphaned = models.filter((m) => m.messages_waiting > 0 && m.live_workers === 0);
  syncList(container, orphaned, (m) => m.model,
    (m) => h('div', { class: 'banner warn', 'data-testid': 'no-worker-warning', 'data-model': m.model }),
    (el, m) => {
      el.replaceChildren(
        h('strong', {}, 'No live worker: '), jobsLink(m.model),
        ` has ${fmtCount(m.messages_waiting)} waiting job${m.messages_waiting === 1 ? '' : 's'} `
        + `(oldest ${fmtDuration(m.oldest_waiting_seconds)}) and no worker serving it.`);
    });
}

// ============================================================================================
// Pages: lifecycle and routing
// ============================================================================================

// One page's lifetime: its requests share an AbortController and its loops stop on navigation.
class Page {
  constructor() {
    this.controller = new AbortController();
    this.cleanups = [];
  }

  get signal() { return this.controller.signal; }

  get alive() { return !this.controller.signal.aborted; }

  onCleanup(fn) { this.cleanups.push(fn); }

  close() {
    this.controller.abort();
    for (const fn of this.cleanups.splice(0)) { try { fn(); } catch (_) { /* keep closing */ } }
  }

  // Resolves after `ms`, or at once when the page closes.
  sleep(ms) {
    return new Promise((resolve) => {
      if (!this.alive) return resolve();
      const onAbort = () => { clearTimeout(timer); resolve(); };
      const timer = setTimeout(() => { this.signal.removeEventListener('abort', onAbort); resolve(); }, ms);
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // Runs `fn` now and again `ms` after each run finishes (never overlapping), until the page
  // closes or `fn` returns false. Errors show in the banner and the loop keeps going.
  async every(ms, fn) {
    while (this.alive) {
      if (!document.hidden) {
        try {
          if ((await fn()) === false) return;
          clearError();
        } catch (error) {
          if (!this.alive || error.name === 'AbortError') return;
          if (error.status === 401) return;  // signed out already
          showError(error);
        }
      }
      await this.sleep(ms);
    }
  }
}

const ROUTES = [
  [/^\/?$/, () => renderOverview],
  [/^\/overview$/, () => renderOverview],
  [/^\/workers$/, () => renderWorkers],
  [/^\/jobs$/, () => renderJobs],
  [/^\/job\/([^/]+)\/([^/]+)$/, () => renderJob],
  [/^\/batches$/, () => renderBatches],
  [/^\/batch\/([^/]+)$/, () => renderBatch],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  return { path, params };
}

function route() {
  if (app.page) app.page.close();
  app.page = null;
  clearError();
  if (!app.open && !storedKey()) return renderLogin();

  const { path, params } = parseHash();
  let render = null;
  let args = [];
  for (const [pattern, pick] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      render = pick();
      args = match.slice(1).map(decodeURIComponent);
      break;
    }
  }
  showNav(true, path.split('/')[1] || 'overview');
  const main = $('#main');
  main.replaceChildren();
  if (!render) {
    main.append(h('p', { class: 'banner warn' }, 'No such page. ', h('a', { href: '#/overview' }, 'Go to the overview.')));
    return;
  }
  const page = new Page();
  app.page = page;
  window.scrollTo(0, 0);
  render(page, main, params, ...args);
}

function showNav(visible, current) {
  const nav = $('#nav');
  nav.hidden = !visible;
  $('#sign-out').hidden = app.open;
  $('#open-note').hidden = !app.open;
  const section = current === 'job' ? 'jobs' : current === 'batch' ? 'batches' : current;
  for (const a of nav.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ============================================================================================
// Access: open broker, login, sign out
// ============================================================================================

// On load: an open broker answers /v1/models without a key; otherwise a stored key is tried, and
// failing that the login form is shown.
async function start() {
  window.addEventListener('hashchange', route);
  for (const button of document.querySelectorAll('#confirm [data-value]')) {
    button.addEventListener('click', () => $('#confirm').close(button.dataset.value));
  }
  $('#sign-out').addEventListener('click', (event) => {
    event.preventDefault();
    signOut('Signed out.');
  });
  try {
    await request('v1/models', { key: null, probe: true });
    app.open = true;
  } catch (error) {
    if (error.status !== 401) {
      // 403 from a keyless call is an open broker refusing us (wrong Host): say so, then offer login.
      if (error.status !== 0 || !storedKey()) showError(error);
    }
  }
  route();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  app.open = false;  // a 401 means the broker wants a key now (a first key closes an open broker)
  if (app.page) app.page.close();
  app.page = null;
  const dialog = $('#confirm');
  if (dialog.open) dialog.close('cancel');
  renderLogin(message);
}

function renderLogin(message) {
  showNav(false);
  const key = h('input', {
    type: 'password', id: 'login-key', 'data-testid': 'login-key', autocomplete: 'off',
    spellcheck: 'false', required: true, placeholder: 'API key',
  });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'login-submit' }, 'Sign in');
  const note = h('p', { class: 'muted', 'aria-live': 'polite' }, message || '');
  const form = h('form', { 'data-testid': 'login-form', autocomplete: 'off' },
    h('label', { for: 'login-key' }, 'API key', key), submit, note,
    h('p', { class: 'muted' }, 'The key is kept in this tab only (sessionStorage) and sent as a Bearer token.'));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = key.value.trim();
    if (!value) return;
    submit.disabled = true;
    note.className = 'muted';
    setText(note, 'Checking…');
    try {
      await request('v1/models', { key: value, probe: true });
    } catch (error) {
      // 403: the key is valid but lacks the admin scope; it can still read jobs and batches.
      if (error.status !== 403) {
        submit.disabled = false;
        note.className = 'login-error';
        setText(note, error.status === 401 ? 'That key was not accepted.' : error.message);
        key.select();
        return;
      }
    }
    sessionStorage.setItem(KEY_STORAGE, value);
    if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/overview';
    else route();
  });

  clearError();
  $('#main').replaceChildren(h('section', { class: 'panel login' }, h('h1', {}, 'Sign in to Spool'), form));
  key.focus();
}

// ============================================================================================
// Overview: a card per model, polled every 2 s
// ============================================================================================

function renderOverview(page, main) {
  const warnings = h('div', { class: 'warnings' });
  const summary = h('span', { class: 'muted' }, '');
  const result = actionResult();
  const grid = h('div', { class: 'model-grid' });
  const empty = h('p', { class: 'panel muted', hidden: true },
    'No model has waiting or running jobs or live workers right now. Submitted jobs show up here.');
  main.append(h('section', { 'data-testid': 'overview' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), summary), warnings, result, empty, grid));

  page.every(POLL_MS, async () => {
    // One request per endpoint; history and workers are extras, so their failure must not blank the page.
    const [models, history, workers] = await Promise.allSettled([
      api('v1/models', { signal: page.signal }),
      api('v1/stats/history', { signal: page.signal }),
      api('v1/workers', { signal: page.signal }),
    ]);
    if (!page.alive) return;
    if (models.status === 'rejected') throw models.reason;
    const series = new Map();
    if (history.status === 'fulfilled') for (const m of history.value.models || []) series.set(m.model, m);
    const stats = history.status === 'fulfilled' ? history.value : null;
    // Models idle now but busy within the hour still get a card, for their charts.
    const list = (models.value.models || []).slice();
    const listed = new Set(list.map((m) => m.model));
    for (const model of series.keys()) {
      if (!listed.has(model)) {
        list.push({ model, messages_waiting: 0, messages_running: 0, oldest_waiting_seconds: 0, waiting_by_priority: {}, live_workers: 0 });
      }
    }
    list.sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : 0));

    syncNoWorkerWarnings(warnings, list);
    empty.hidden = list.length > 0;
    syncList(grid, list, (m) => m.model, (m) => modelCard(m, result), (el, m) => el.update(m, series.get(m.model), stats));

    if (workers.status === 'fulfilled') {
      const all = workers.value.workers || [];
      const live = all.filter((w) => w.live).length;
      setText(summary, `${list.length} model${list.length === 1 ? '' : 's'} · ${live} live worker${live === 1 ? '' : 's'} of ${all.length} seen`);
    }
    for (const failed of [history, workers]) {
      if (failed.status === 'rejected' && failed.reason.name !== 'AbortError') throw failed.reason;
    }
  });
}

function modelCard(m, result) {
  const waiting = h('dd', { 'data-testid': 'waiting-count' });
  const running = h('dd', { 'data-testid': 'running-count' });
  const oldest = h('dd', { class: 'small' });
  const live = h('dd', { 'data-testid': 'live-workers' });
  const tiers = h('p', { class: 'tiers' });
  const doneChart = sparkline('throughput');
  const failChart = sparkline('failures');
  const clear = h('button', { type: 'button', class: 'link danger', 'data-testid': 'clear-queue' }, 'Clear queue');
  clear.addEventListener('click', () => confirmed({
    title: 'Clear the queue?',
    text: `Cancel every pending job of ${m.model}. Running jobs are left alone.`,
    okLabel: 'Clear queue',
    result,
    run: async () => {
      const answer = await post('v1/queue/clear', { model: m.model });
      return `Cleared ${m.model}: ${fmtCount(answer.canceled_count)} pending job${answer.canceled_count === 1 ? '' : 's'} canceled.`;
    },
  }));

  const card = h('article', { class: 'panel model-card', 'data-testid': 'model-row', 'data-model': m.model },
    h('header', {}, h('a', { class: 'model-name', href: '#/jobs?' + new URLSearchParams({ model: m.model }) }, m.model), clear),
    h('dl', { class: 'stats' },
      h('div', {}, h('dt', {}, 'Waiting'), waiting),
      h('div', {}, h('dt', {}, 'Running'), running),
      h('div', {}, h('dt', {}, 'Oldest wait'), oldest),
      h('div', {}, h('dt', {}, 'Live workers'), live)),
    tiers,
    h('div', { class: 'charts' }, doneChart.figure, failChart.figure));

  card.update = (model, history, stats) => {
    setText(waiting, model.messages_waiting);  // digits only: tests read the number
    setText(running, model.messages_running);
    setText(oldest, model.messages_waiting > 0 ? fmtDuration(model.oldest_waiting_seconds) : '—');
    setText(live, model.live_workers);
    live.className = model.live_workers === 0 && model.messages_waiting > 0 ? 'warn-text' : '';
    const byPriority = Object.entries(model.waiting_by_priority || {})
      .filter(([, n]) => n > 0)
      .sort((a, b) => Number(b[0]) - Number(a[0]));  // highest priority (served first) first
    tiers.replaceChildren(...(byPriority.length
      ? ['Waiting by priority: ', ...byPriority.map(([p, n]) => h('span', { class: 'tier', title: `priority ${p}` }, `p${p.replace('-', '−')}: ${fmtCount(n)}`))]
      : ['Nothing waiting.']));
    doneChart.update(history ? history.completed : [], 'done', stats);
    failChart.update(history ? history.failed : [], 'failed', stats);
  };
  return card;
}

// A 60-bar chart of per-minute counts (oldest first), drawn as one SVG path.
function sparkline(kind) {
  const width = 240;
  const height = 36;
  const bars = svg('path', { class: 'bars', d: '' });
  const title = svg('title', {}, '');
  const chart = svg('svg', {
    class: `spark ${kind}`, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img',
    'data-testid': `chart-${kind}`,
  }, title, svg('line', { class: 'base', x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }), bars);
  const caption = h('figcaption', {}, '');
  const figure = h('figure', {}, caption, chart);

  const update = (values, label, stats) => {
    const counts = (values || []).map((v) => Number(v) || 0);
    const max = Math.max(1, ...counts);
    const step = width / Math.max(60, counts.length);
    let d = '';
    counts.forEach((v, i) => {
      if (v <= 0) return;
      const barHeight = Math.max(1.5, (v / max) * (height - 2));
      d += `M${(i * step).toFixed(2)} ${height}v${(-barHeight).toFixed(2)}h${Math.max(1, step - 1).toFixed(2)}v${barHeight.toFixed(2)}z`;
    });
    bars.setAttribute('d', d);
    const total = counts.reduce((a, b) => a + b, 0);
    const capped = stats && stats.capped ? '≥ ' : '';
    const last = counts.length ? counts[counts.length - 1] : 0;
    setText(caption, `${label} ${capped}${fmtCount(total)} in 1 h · ${fmtCount(last)}/min`);
    setText(title, `${label} per minute over the last hour (peak ${fmtCount(max === 1 && total === 0 ? 0 : max)}/min)`);
  };
  return { figure, update };
}

// ============================================================================================
// Workers
// ============================================================================================

function renderWorkers(page, main) {
  const warnings = h('div', { class: 'warnings' });
  const summary = h('span', { class: 'muted' }, '');
  const tbody = h('tbody');
  const empty = h('p', { class: 'panel muted', hidden: true }, 'No worker has been seen in the last day.');
  const table = h('table', { 'data-testid': 'workers-table' },
    h('thead', {}, h('tr', {}, ['Worker', 'State', 'Host', 'Models', 'Jobs in hand', 'Last heartbeat', 'First seen']
      .map((t) => h('th', { class: t === 'Jobs in hand' ? 'num' : '' }, t)))),
    tbody);
  main.append(h('section', { 'data-testid': 'workers-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Workers'), summary), warnings, empty, tableWrap(table)));

  page.every(POLL_MS, async () => {
    const [workers, models] = await Promise.all([
      api('v1/workers', { signal: page.signal }),
      api('v1/models', { signal: page.signal }),
    ]);
    if (!page.alive) return;
    syncNoWorkerWarnings(warnings, models.models || []);
    // Live ones first, then the most recently seen.
    const list = (workers.workers || []).slice().sort((a, b) =>
      (b.live - a.live) || ((toDate(b.last_seen_at) || 0) - (toDate(a.last_seen_at) || 0)));
    empty.hidden = list.length > 0;
    const live = list.filter((w) => w.live).length;
    setText(summary, `${live} live · ${list.length - live} gone`);
    syncList(tbody, list, (w) => w.id, workerRow, (tr, w) => tr.update(w));
  });
}

function workerRow(w) {
  const cells = {
    state: h('td'), host: h('td', { class: 'wrap' }), models: h('td', { class: 'wrap' }),
    jobs: h('td', { class: 'num' }), last: h('td'), first: h('td'),
  };
  const tr = h('tr', { 'data-testid': 'worker-row', 'data-worker-id': w.id },
    h('td', { class: 'id' }, w.id), cells.state, cells.host, cells.models, cells.jobs, cells.last, cells.first);
  tr.update = (worker) => {
    const what = worker.live ? (worker.jobs_in_hand > 0 ? 'busy' : worker.waiting ? 'waiting for work' : 'idle') : '';
    cells.state.replaceChildren(badge(worker.live ? 'Live' : 'Gone', worker.live ? 'live' : 'gone'), what ? ' ' + what : '');
    setText(cells.host, worker.host || '—');
    cells.models.replaceChildren(...(worker.models || []).flatMap((m, i) => [i ? ', ' : '', jobsLink(m)]));
    setText(cells.jobs, worker.jobs_in_hand ?? 0);
    cells.last.replaceChildren(timeCell(worker.last_seen_at));
    cells.first.replaceChildren(timeCell(worker.first_seen_at));
    tr.dataset.live = String(!!worker.live);
  };
  return tr;
}

// ============================================================================================
// Jobs: filters in the hash, pages by cursor
// ============================================================================================

// The filters the hash may carry, and how each goes to the API.
const JOB_FILTERS = ['model', 'status', 'priority', 'created_after', 'created_before', 'request_id'];

function jobsApiQuery(filters, cursor) {
  const q = new URLSearchParams();
  for (const name of JOB_FILTERS) {
    const value = filters.get(name);
    if (!value) continue;
    if (name === 'created_after' || name === 'created_before') {
      const d = new Date(value);  // a datetime-local value: the browser's time zone
      if (!Number.isNaN(d.getTime())) q.set(name, d.toISOString());
    } else q.set(name, value.trim());
  }
  if (cursor) q.set('cursor', cursor);
  q.set('limit', String(JOBS_PAGE_SIZE));
  return q;
}

function renderJobs(page, main, params) {
  const filters = new URLSearchParams();
  for (const name of JOB_FILTERS) if (params.get(name)) filters.set(name, params.get(name));

  // ---- the filter form (its values go to the hash, so a reload keeps them)
  const models = h('datalist', { id: 'job-models' });
  const input = (name, attrs) => h('input', { name, value: filters.get(name) || '', ...attrs });
  const fields = {
    model: input('model', { list: 'job-models', placeholder: 'any model', 'data-testid': 'jobs-filter-model', autocomplete: 'off' }),
    status: h('select', { name: 'status', 'data-testid': 'jobs-filter-status' },
      h('option', { value: '' }, 'any status'), JOB_STATUSES.map((s) => h('option', { value: s }, s))),
    priority: input('priority', { type: 'number', step: 1, placeholder: 'any', 'data-testid': 'jobs-filter-priority' }),
    created_after: input('created_after', { type: 'datetime-local', step: 1, 'data-testid': 'jobs-filter-after' }),
    created_before: input('created_before', { type: 'datetime-local', step: 1, 'data-testid': 'jobs-filter-before' }),
    request_id: input('request_id', { placeholder: 'hex prefix', spellcheck: 'false', autocomplete: 'off', 'data-testid': 'jobs-filter-request-id' }),
  };
  fields.status.value = filters.get('status') || '';
  const label = (text, field) => h('label', {}, text, field);
  const form = h('form', { class: 'filters', 'data-testid': 'jobs-filter' },
    label('Model', fields.model), label('Status', fields.status), label('Priority', fields.priority),
    label('Created after', fields.created_after), label('Created before', fields.created_before),
    label('Request id prefix', fields.request_id),
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', class: 'primary', 'data-testid': 'jobs-filter-apply' }, 'Apply'),
      h('a', { href: '#/jobs' }, 'Reset')),
    models);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of JOB_FILTERS) {
      const value = fields[name].value.trim();
      if (value) next.set(name, value);
    }
    const hash = '#/jobs' + (next.toString() ? '?' + next : '');
    if (location.hash === hash) route();  // the same filters again: reload page one
    else location.hash = hash;
  });

  // ---- the table and pager
  const tbody = h('tbody');
  const table = h('table', { 'data-testid': 'jobs-table', 'data-state': 'loading', 'data-page': '0' },
    h('thead', {}, h('tr', {}, ['Request id', 'Model', 'Status', 'Progress', 'Priority', 'Retries', 'Created', 'Waited', 'Ran', 'Worker', 'Error']
      .map((t) => h('th', { class: ['Priority', 'Retries'].includes(t) ? 'num' : '' }, t)))),
    tbody);
  const prev = h('button', { type: 'button', 'data-testid': 'jobs-prev', disabled: true }, '‹ Newer');
  const next = h('button', { type: 'button', 'data-testid': 'jobs-next', disabled: true }, 'Older ›');
  const refresh = h('button', { type: 'button', class: 'link' }, 'Refresh');
  const info = h('span', { class: 'info', 'data-testid': 'jobs-info' }, '');
  const order = filters.get('request_id') ? 'in request-id order' : 'newest first';

  // Folded on a phone unless filters are set, so the table is on the first screen.
  const active = Array.from(filters.entries()).map(([k, v]) => `${k.replace('_', ' ')} ${v}`).join(' · ');
  const box = h('details', { class: 'panel filters-box', open: !!active || !matchMedia('(max-width: 600px)').matches },
    h('summary', {}, 'Filters', active ? [': ', h('span', { class: 'active' }, active)] : ''), form);
  main.append(h('section', { 'data-testid': 'jobs-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'), h('span', { class: 'muted' }, order)),
    box,
    h('div', { class: 'pager' }, prev, next, refresh, info),
    tableWrap(table)));

  // Cursors of the pages before the current one, for "‹ Newer"; null is page one.
  const state = { stack: [], cursor: null, nextCursor: null, seq: 0 };

  async function load(cursor) {
    const seq = ++state.seq;  // a slow answer for a page the user already left is dropped
    table.dataset.state = 'loading';
    prev.disabled = next.disabled = true;
    const started = performance.now();
    try {
      const answer = await api('v1/jobs?' + jobsApiQuery(filters, cursor), { signal: page.signal });
      if (seq !== state.seq || !page.alive) return;
      state.cursor = cursor;
      state.nextCursor = answer.next_cursor || null;
      drawRows(answer.data || []);
      const ms = Math.round(performance.now() - started);  // request, parse and draw
      const scanned = answer.scanned != null ? ` · ${fmtCount(answer.scanned)} index entries read` : '';
      setText(info, `Page ${state.stack.length + 1} · ${(answer.data || []).length} jobs${scanned} · ${ms} ms`);
      table.dataset.page = String(state.stack.length);
      table.dataset.ms = String(ms);
      clearError();
    } catch (error) {
      if (seq !== state.seq || error.name === 'AbortError') return;
      showError(error);
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 11, class: 'empty-row' }, error.message)));
    } finally {
      if (seq === state.seq) {
        prev.disabled = state.stack.length === 0;
        next.disabled = !state.nextCursor;
        table.dataset.state = 'ready';
      }
    }
  }

  function drawRows(rows) {
    if (rows.length === 0) {
      const text = state.nextCursor
        ? ['No matching jobs in this stretch; ', h('button', { type: 'button', class: 'link', onclick: older }, 'Older ›')]
        : [state.stack.length ? 'No older matching jobs.' : 'No matching jobs.'];
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 11, class: 'empty-row', 'data-testid': 'jobs-empty' }, text)));
      return;
    }
    tbody.replaceChildren(...rows.map(jobRow));
  }

  function older() {
    if (!state.nextCursor) return;
    state.stack.push(state.cursor);
    load(state.nextCursor);
  }

  function newer() {
    if (state.stack.length === 0) return;
    load(state.stack.pop());
  }

  next.addEventListener('click', older);
  prev.addEventListener('click', newer);
  refresh.addEventListener('click', () => load(state.cursor));

  // The model list for the filter's suggestions (admin keys only; without it the field still works).
  api('v1/models', { signal: page.signal })
    .then((answer) => models.replaceChildren(...(answer.models || []).map((m) => h('option', { value: m.model }))))
    .catch(() => {});
  load(null);
}

function jobRow(job) {
  const fraction = progressFraction(job.progress);
  let progress = '—';
  if (fraction !== null || job.status === 'done') {
    progress = progressBar({}, true);
    progress.update(fraction ?? 1, undefined, job.status);
  }
  return h('tr', { 'data-testid': 'job-row', 'data-request-id': job.request_id, 'data-status': job.status },
    h('td', { class: 'id' }, jobLink(job.model, job.request_id)),
    h('td', { class: 'nowrap' }, job.model),
    h('td', {}, badge(job.status)),
    h('td', {}, progress),
    h('td', { class: 'num' }, job.priority ?? 0),
    h('td', { class: 'num' }, job.retries ?? 0),
    h('td', {}, timeCell(job.created_at)),
    h('td', { class: 'nowrap' }, job.claimed_at ? fmtBetween(job.created_at, job.claimed_at) : '—'),
    h('td', { class: 'nowrap' }, job.claimed_at && job.done_at ? fmtBetween(job.claimed_at, job.done_at) : '—'),
    h('td', { class: 'id' }, job.worker_id || '—'),
    h('td', {}, job.error_type || ''));
}

// ============================================================================================
// One job: live through the status stream while it is not terminal
// ============================================================================================

function renderJob(page, main, params, model, requestId) {
  const query = new URLSearchParams({ model, request_id: requestId, logs: '1' }).toString();
  const previews = new Map();  // file id -> preview element, loaded once per page

  // ---- the fixed skeleton; `draw` fills it from each status
  const status = h('span', { 'data-testid': 'job-status', class: 'badge big' }, '…');
  const cancel = h('button', { type: 'button', class: 'danger', 'data-testid': 'job-cancel', hidden: true }, 'Cancel');
  const requeue = h('button', { type: 'button', 'data-testid': 'job-requeue', hidden: true }, 'Requeue');
  const live = h('span', { class: 'muted', 'data-testid': 'job-live' }, '');
  const result = actionResult();
  const progress = progressBar({ 'data-testid': 'job-progress', 'data-value': '0' });
  const progressNote = h('span', { class: 'muted' }, '');
  const summary = h('div');
  const warnings = h('div');
  const errorBox = h('div', { hidden: true });
  const outputs = h('div');
  const retries = h('div');
  const webhook = h('div');
  const payload = h('div');
  const infoBox = h('div');
  const logs = h('div', { class: 'logs', 'data-testid': 'job-logs', tabindex: 0 });
  const logCount = h('span', { class: 'muted' }, '');
  const root = h('section', { 'data-testid': 'job-page', 'data-status': '', 'data-request-id': requestId, 'data-model': model },
    h('p', { class: 'muted' }, '‹ ', jobsLink(model, `Jobs of ${model}`)),
    h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, requestId), status, h('span', { class: 'spacer' }),
      h('div', { class: 'actions' }, cancel, requeue)),
    result, warnings,
    h('div', { class: 'panel' }, h('div', { class: 'progress-row' }, progress), h('p', { class: 'muted' }, progressNote, ' ', live), summary),
    errorBox,
    h('h2', {}, 'Outputs'), outputs,
    h('h2', {}, 'Logs ', logCount), logs,
    retries, webhook,
    h('h2', {}, 'Payload'), payload,
    h('h2', {}, 'Info'), infoBox);
  main.append(root);

  let job = null;
  let drawnLogs = '';
  // Restarted after an action (a requeued job is live again); aborted with the page.
  let follow = null;

  function draw(next) {
    job = next;
    root.dataset.status = job.status;
    setText(status, job.status);
    status.className = `badge big ${job.status}`;
    cancel.hidden = !['pending', 'running'].includes(job.status);
    requeue.hidden = job.status !== 'failed';

    const info = job.info || {};
    const fraction = progressFraction(info.progress);
    const shown = fraction ?? (job.status === 'done' ? 1 : 0);
    progress.update(shown, fraction === null && job.status !== 'done' ? 'no progress reported' : undefined, job.status);
    setText(progressNote, job.status === 'pending'
      ? `Waiting: position ${job.queue_position ?? '—'}, estimated wait ${job.estimated_wait_seconds == null ? 'unknown' : fmtDuration(job.estimated_wait_seconds)}.`
      : job.status === 'running' ? `Running for ${fmtBetween(job.claimed_at, new Date().toISOString())}.` : '');

    summary.replaceChildren(fieldList([
      ['Model', jobsLink(job.model)],
      ['Request id', h('span', { class: 'mono' }, job.request_id)],
      ['Priority', String(job.priority ?? 0)],
      ['Retries', String(job.retries ?? 0)],
      ['Created', fmtTime(job.created_at)],
      ['Claimed', job.claimed_at ? `${fmtTime(job.claimed_at)} (after ${fmtBetween(job.created_at, job.claimed_at)})` : '—'],
      ['Ended', job.done_at ? `${fmtTime(job.done_at)} (ran ${fmtBetween(job.claimed_at, job.done_at)})` : '—'],
      job.status === 'pending' && ['Queue position', job.queue_position == null ? '—' : fmtCount(job.queue_position)],
      job.status === 'pending' && ['Estimated wait', job.estimated_wait_seconds == null ? 'unknown (nothing finished lately)' : fmtDuration(job.estimated_wait_seconds)],
      info.custom_id && ['Batch line', String(info.custom_id)],
    ]));

    warnings.replaceChildren(...(job.warnings || []).map((w) => h('p', { class: 'banner warn' }, w)));

    errorBox.hidden = !(job.error || job.error_type);
    if (!errorBox.hidden) {
      errorBox.replaceChildren(h('h2', {}, 'Error'),
        h('div', { class: 'banner error', 'data-testid': 'job-error' },
          job.error_type ? h('strong', {}, job.error_type + ': ') : '', job.error || ''));
    }

    drawOutputs(job.outputs);
    drawRetries(Array.isArray(info.retry_history) ? info.retry_history : []);
    drawWebhook(job.webhook);
    drawLogs(job.logs || []);
    if (payload.dataset.drawn !== JSON.stringify(job.inputs ?? null)) {
      payload.dataset.drawn = JSON.stringify(job.inputs ?? null);
      payload.replaceChildren(jsonBlock(job.inputs ?? null));
    }
    const shownInfo = { ...info };
    delete shownInfo.retry_history;  // it has its own table
    infoBox.replaceChildren(jsonBlock(shownInfo));
  }

  function drawOutputs(value) {
    const key = JSON.stringify(value ?? null);
    if (outputs.dataset.drawn === key) return;
    outputs.dataset.drawn = key;
    if (value === null || value === undefined) {
      outputs.replaceChildren(h('p', { class: 'muted' }, TERMINAL.has(job.status) ? 'No outputs.' : 'Not yet.'));
      return;
    }
    const files = findFileOutputs(value);
    outputs.replaceChildren(
      files.length ? h('div', { class: 'files', 'data-testid': 'job-files' }, files.map(fileCard)) : '',
      h('details', { open: files.length === 0 }, h('summary', {}, 'Outputs JSON'), jsonBlock(value)));
  }

  function fileCard(file) {
    const name = file.name || file.id;
    const download = h('button', { type: 'button', 'data-testid': 'file-download', 'data-file-id': file.id }, 'Download');
    download.addEventListener('click', () => downloadFile(file.id, name).catch((error) => result.show(error.message, 'error')));
    const type = file.contentType || '';
    let preview = previews.get(file.id);
    if (!preview && (type.startsWith('image/') || type.startsWith('video/'))) {
      preview = h('div', { class: 'preview' });
      previews.set(file.id, preview);
      if (file.bytes > PREVIEW_MAX_BYTES) preview.append(h('p', { class: 'muted' }, `No preview: ${fmtBytes(file.bytes)} is large.`));
      else loadPreview(file, preview);
    }
    return h('div', { class: 'file', 'data-testid': 'file-output', 'data-file-id': file.id },
      h('div', { class: 'name' }, name),
      h('div', { class: 'meta' }, [file.path, type, file.bytes !== undefined ? fmtBytes(file.bytes) : ''].filter(Boolean).join(' · ')),
      file.sha256 ? h('div', { class: 'meta mono', title: 'SHA-256' }, file.sha256) : '',
      preview || '',
      h('div', { class: 'buttons' }, download));
  }

  async function loadPreview(file, into) {
    try {
      const response = await request(`v1/files/${encodeURIComponent(file.id)}/content`, { signal: page.signal, accept: '*/*' });
      const url = URL.createObjectURL(await response.blob());
      page.onCleanup(() => URL.revokeObjectURL(url));
      into.replaceChildren(file.contentType.startsWith('image/')
        ? h('img', { src: url, alt: file.name || file.id, 'data-testid': 'file-preview' })
        : h('video', { src: url, controls: true, preload: 'metadata', 'data-testid': 'file-preview' }));
    } catch (error) {
      if (error.name !== 'AbortError') into.replaceChildren(h('p', { class: 'muted' }, `No preview: ${error.message}`));
    }
  }

  function drawRetries(history) {
    if (history.length === 0) { retries.replaceChildren(); return; }
    retries.replaceChildren(h('h2', {}, 'Retry history'), tableWrap(h('table', { 'data-testid': 'retry-history' },
      h('thead', {}, h('tr', {}, ['Attempt', 'Reason', 'Error', 'Worker', 'At'].map((t) => h('th', {}, t)))),
      h('tbody', {}, history.map((r) => h('tr', { 'data-testid': 'retry-row' },
        h('td', { class: 'num' }, r.attempt ?? '—'), h('td', { class: 'nowrap' }, r.reason || '—', r.by ? h('span', { class: 'muted' }, ` by ${r.by}`) : ''),
        h('td', { class: 'wrap' }, r.error || '—'), h('td', { class: 'id' }, r.worker_id || '—'),
        h('td', { class: 'nowrap' }, fmtTime(r.at))))))));
  }

  function drawWebhook(w) {
    if (!w) { webhook.replaceChildren(); return; }
    webhook.replaceChildren(h('h2', {}, 'Webhook'), h('div', { class: 'panel', 'data-testid': 'job-webhook' }, fieldList([
      ['State', badge(w.state, { delivered: 'done', failed: 'failed', gone: 'canceled', pending: 'running' }[w.state] || 'pending')],
      ['URL', h('span', { class: 'mono' }, w.url)],
      ['Attempts', String(w.attempts ?? 0)],
      ['Last status code', w.last_status_code == null ? '—' : String(w.last_status_code)],
      ['Last attempt', fmtTime(w.last_attempt_at)],
      ['Next attempt', fmtTime(w.next_attempt_at)],
      w.last_error && ['Last error', w.last_error],
      w.webhook_id && ['Webhook id', h('span', { class: 'mono' }, w.webhook_id)],
    ])));
  }

  function drawLogs(lines) {
    const signature = lines.length + '|' + (lines.length ? JSON.stringify(lines[lines.length - 1]) : '');
    if (signature === drawnLogs) return;
    drawnLogs = signature;
    // Follow the tail only if the reader was already at the bottom (do not yank them while reading).
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
    logs.replaceChildren(...(lines.length
      ? lines.map((l) => h('div', { class: `log-line ${(l.level || '').toLowerCase()}`, 'data-testid': 'log-line' },
        h('span', { class: 't' }, fmtTime(l.timestamp).slice(11)),
        h('span', { class: 'lv' }, l.level || l.source || ''),
        l.message))
      : [h('div', { class: 'none' }, 'No log lines.')]));
    setText(logCount, lines.length ? `(${lines.length}${lines.length >= 1000 ? ', the newest' : ''})` : '');
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  }

  // Status once, then the stream while the job can still change, then polling if the stream dies.
  async function followJob(signal) {
    try {
      draw(await api('v1/queue/status?' + query, { signal }));
      clearError();
    } catch (error) {
      if (error.name === 'AbortError' || error.status === 401) return;
      showError(error.status === 404 ? `No job ${requestId} of model ${model} (or it is another tenant's).` : error);
      if (error.status === 404) return;
    }
    while (!signal.aborted && !(job && TERMINAL.has(job.status))) {
      setText(live, '· live');
      try {
        await streamStatus(query, signal, (next) => { draw(next); clearError(); });
      } catch (error) {
        if (error.name === 'AbortError' || error.status === 401 || signal.aborted) return;
      }
      if (signal.aborted || (job && TERMINAL.has(job.status))) break;
      // The stream ended early or failed: poll every 2 s until the job ends (or the page closes).
      setText(live, '· polling');
      while (!signal.aborted && !(job && TERMINAL.has(job.status))) {
        await page.sleep(POLL_MS);
        if (signal.aborted) return;
        try {
          draw(await api('v1/queue/status?' + query, { signal }));
          clearError();
        } catch (error) {
          if (error.name === 'AbortError' || error.status === 401) return;
          showError(error);
        }
      }
    }
    setText(live, '');
  }

  function restartFollow() {
    if (follow) follow.abort();
    follow = new AbortController();
    page.signal.addEventListener('abort', () => follow.abort(), { once: true });
    followJob(follow.signal);
  }

  cancel.addEventListener('click', () => confirmed({
    title: 'Cancel this job?',
    text: job && job.status === 'running'
      ? 'The job is running: its worker is asked to stop at its next heartbeat.'
      : 'The job is pending: it will be canceled and never run.',
    okLabel: 'Cancel job',
    result,
    run: async () => {
      const answer = await post('v1/queue/cancel', { model, request_id: requestId, cancel_running: true });
      return answer.cancel_requested
        ? 'Cancel requested: the worker stops the job at its next heartbeat.'
        : `The job is ${answer.status}.`;
    },
    done: restartFollow,
  }));

  requeue.addEventListener('click', () => confirmed({
    title: 'Requeue this job?',
    text: 'The failed job goes back to the queue and runs again.',
    okLabel: 'Requeue',
    result,
    run: async () => {
      const answer = await post('v1/queue/requeue', { model, request_id: requestId });
      return `Requeued: the job is ${answer.status || 'pending'} again.`;
    },
    done: restartFollow,
  }));

  restartFollow();
}

// Reads a Server-Sent Events stream with fetch (EventSource cannot send the Authorization header)
// and calls onData with each `data:` event's JSON. Resolves when the broker ends the stream.
async function streamStatus(query, signal, onData) {
  const response = await request('v1/queue/status/stream?' + query, { signal, accept: 'text/event-stream' });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        let line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {  // a blank line ends an event
          if (data.length) onData(JSON.parse(data.join('\n')));
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        }  // ": keep-alive" comments and other fields are ignored
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// File outputs anywhere in a job's outputs: objects whose `url` ends in /v1/files/<id>/content.
// The exec worker lists each file twice (in `files` and where it was named), so ids are deduplicated.
function findFileOutputs(value) {
  const found = new Map();
  const walk = (node, path) => {
    if (Array.isArray(node)) node.forEach((child, i) => walk(child, `${path}[${i}]`));
    else if (node && typeof node === 'object') {
      const match = typeof node.url === 'string' && node.url.match(/\/v1\/files\/([^/?#]+)\/content(?:[?#].*)?$/);
      if (match) {
        const id = decodeURIComponent(match[1]);
        const known = found.get(id);
        // Prefer the name the handler gave it over its place in the `files` list.
        if (!known || (known.path.startsWith('files[') && !path.startsWith('files['))) {
          found.set(id, {
            id, path,
            name: node.file_name || node.filename || node.name || '',
            contentType: node.content_type || '',
            bytes: node.file_size ?? node.bytes,
            sha256: node.sha256 || '',
          });
        }
        return;
      }
      for (const [key, child] of Object.entries(node)) walk(child, path ? `${path}.${key}` : key);
    }
  };
  walk(value, '');
  return Array.from(found.values());
}

// ============================================================================================
// Batches
// ============================================================================================

// completed / total from request_counts, else the broker's 0–100 progress.
function batchProgress(batch) {
  const counts = batch.request_counts || {};
  if (counts.total > 0) return (counts.completed || 0) / counts.total;
  if (BATCH_ENDED.has(batch.status) && batch.status === 'COMPLETED') return 1;
  return (Number(batch.progress) || 0) / 100;
}

function batchCounts(batch) {
  const c = batch.request_counts;
  if (!c) return '—';
  return `${fmtCount(c.completed ?? 0)} / ${fmtCount(c.total ?? 0)} ended` + (c.failed ? ` · ${fmtCount(c.failed)} failed` : '');
}

function renderBatches(page, main) {
  const tbody = h('tbody');
  const table = h('table', { 'data-testid': 'batches-table' },
    h('thead', {}, h('tr', {}, ['Batch', 'Status', 'Model', 'Endpoint', 'Progress', 'Lines', 'Created', 'Ended']
      .map((t) => h('th', {}, t)))),
    tbody);
  const empty = h('p', { class: 'panel muted', hidden: true }, 'No batches yet.');
  main.append(h('section', { 'data-testid': 'batches-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Batches'), h('span', { class: 'muted' }, 'the newest 100')),
    empty, tableWrap(table)));

  page.every(POLL_MS * 2, async () => {
    const answer = await api('v1/batches?limit=100', { signal: page.signal });
    if (!page.alive) return;
    const list = Array.isArray(answer) ? answer : answer.data || [];
    empty.hidden = list.length > 0;
    syncList(tbody, list, (b) => b.id, batchRow, (tr, b) => tr.update(b));
  });
}

function batchRow(b) {
  const cells = { status: h('td'), progress: h('td'), counts: h('td', { class: 'nowrap' }), created: h('td'), ended: h('td') };
  const bar = progressBar({}, true);
  cells.progress.append(bar);
  const tr = h('tr', { 'data-testid': 'batch-row', 'data-batch-id': b.id },
    h('td', { class: 'id' }, h('a', { href: `#/batch/${encodeURIComponent(b.id)}` }, b.id)),
    cells.status, h('td', { class: 'nowrap' }, b.model_id || '—'), h('td', { class: 'nowrap mono' }, b.endpoint || '—'),
    cells.progress, cells.counts, cells.created, cells.ended);
  tr.update = (batch) => {
    tr.dataset.status = batch.status;
    cells.status.replaceChildren(badge(batch.status, BATCH_BADGE[batch.status] || ''));
    bar.update(batchProgress(batch), undefined, BATCH_BADGE[batch.status] || '');
    setText(cells.counts, batchCounts(batch));
    cells.created.replaceChildren(timeCell(batch.created_at));
    cells.ended.replaceChildren(batch.completed_at ? timeCell(batch.completed_at) : '—');
  };
  return tr;
}

function renderBatch(page, main, params, batchId) {
  const status = h('span', { class: 'badge big', 'data-testid': 'batch-status' }, '…');
  const progress = progressBar({ 'data-testid': 'batch-progress' });
  const fields = h('div');
  const files = h('div', { class: 'actions' });
  const errorBox = h('div');
  const result = actionResult();
  const root = h('section', { 'data-testid': 'batch-page', 'data-batch-id': batchId, 'data-status': '' },
    h('p', { class: 'muted' }, '‹ ', h('a', { href: '#/batches' }, 'Batches')),
    h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, batchId), status),
    result, errorBox,
    h('div', { class: 'panel' }, progress, fields),
    h('h2', {}, 'Files'), h('div', { class: 'panel' }, files));
  main.append(root);

  let drawnFiles = '';
  page.every(POLL_MS, async () => {
    const batch = await api(`v1/batches/${encodeURIComponent(batchId)}`, { signal: page.signal });
    if (!page.alive) return false;
    root.dataset.status = batch.status;
    setText(status, batch.status);
    status.className = `badge big ${BATCH_BADGE[batch.status] || ''}`;
    const c = batch.request_counts || {};
    progress.update(batchProgress(batch), c.total ? `${fmtCount(c.completed ?? 0)} / ${fmtCount(c.total)}` : undefined,
      BATCH_BADGE[batch.status] || '');
    fields.replaceChildren(fieldList([
      ['Model', batch.model_id ? jobsLink(batch.model_id) : '—'],
      ['Endpoint', h('span', { class: 'mono' }, batch.endpoint || '—')],
      ['Lines', c.total === undefined ? '—' : fmtCount(c.total)],
      ['Ended', c.completed === undefined ? '—' : fmtCount(c.completed), { 'data-testid': 'batch-completed' }],
      ['Failed', c.failed === undefined ? '—' : fmtCount(c.failed)],
      ['Progress', batch.progress === undefined ? '—' : `${Math.round(Number(batch.progress) || 0)}%`],
      ['Priority', batch.priority === undefined ? '—' : String(batch.priority)],
      ['Created', fmtTime(batch.created_at)],
      ['Ended at', fmtTime(batch.completed_at)],
      ['Deadline', fmtTime(batch.job_deadline)],
      ['Window', batch.completion_window || '—'],
      ['Input size', batch.file_size_bytes === undefined ? '—' : fmtBytes(batch.file_size_bytes)],
      batch.user_id && ['User', batch.user_id],
    ]));
    errorBox.replaceChildren(...(batch.error ? [h('p', { class: 'banner error', 'data-testid': 'batch-error' }, batch.error)] : []));

    const ids = [['Input', batch.input_file_id], ['Output', batch.output_file_id], ['Errors', batch.error_file_id]];
    const signature = JSON.stringify(ids);
    if (signature !== drawnFiles) {  // redraw only when a file appears, so a click is never lost
      drawnFiles = signature;
      files.replaceChildren(...ids.map(([label, id]) => {
        if (!id) return h('button', { type: 'button', disabled: true, title: 'Not there (yet)' }, `${label} file`);
        const button = h('button', { type: 'button', 'data-testid': `batch-download-${label.toLowerCase()}`, 'data-file-id': id },
          `Download ${label.toLowerCase()} file`);
        button.addEventListener('click', () => downloadFile(id, `${batchId}-${label.toLowerCase()}.jsonl`)
          .catch((error) => result.show(error.message, 'error')));
        return button;
      }));
    }
    return !BATCH_ENDED.has(batch.status);  // stop polling once it has ended
  });
}

// ============================================================================================

document.addEventListener('DOMContentLoaded', start);
