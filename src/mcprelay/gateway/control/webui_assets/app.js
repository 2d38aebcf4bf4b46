// The mcprelay gateway page. Plain JavaScript, no framework, no build step: everything comes from
// this gateway's REST API (/api/v1) with the browser session that `mcprelay ui` opened, and stays
// live on the /api/v1/events stream (server-sent events, read with fetch so the request can carry
// the session's header secret). Text from servers is only ever inserted as text, never as markup.
'use strict';

// The session's header secret, put into this tab's sessionStorage (per origin, port included) by the
// page the one-time link opened (open.js).
const SECRET = 'mcprelay.session';
const API = '/api/v1';

const view = {
  state: null,          // the last `state` event
  version: null,        // the catalogue version the tool lists were fetched at
  activitySeen: null,   // the activity counter the log was fetched at
  held: [],
  tools: [],
  logins: {},           // server name -> {phase, url, message}
  ended: false,
};

// ------------------------------------------------------------------ small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function headers(extra) {
  const all = Object.assign({ Accept: 'application/json' }, extra || {});
  const secret = sessionStorage.getItem(SECRET);
  if (secret) all['X-Mcprelay-Csrf'] = secret;
  return all;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `the gateway answered ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, options) {
  const opts = Object.assign({ cache: 'no-store', credentials: 'same-origin' }, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(API + path, opts);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) sessionEnded();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function announce(text) {
  const el = document.getElementById('announce');
  el.textContent = '';
  window.setTimeout(() => { el.textContent = text; }, 50);
}

function showProblem(text) {
  const el = document.getElementById('problem');
  el.hidden = !text;
  el.textContent = text || '';
}

function sessionEnded() {
  if (view.ended) return;
  view.ended = true;
  setLive('down', 'Not connected');
  showProblem('This page has no session with the gateway (the link was used up, the session ended, or the ' +
    'gateway restarted). Run `mcprelay ui` again to open it.');
}

function setLive(state, text) {
  const el = document.getElementById('live');
  el.dataset.state = state;
  el.textContent = text;
}

function ago(seconds) {
  const s = Math.round(Math.abs(seconds));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function expiryText(expiresAt) {
  if (expiresAt === null || expiresAt === undefined) return 'no token in use';
  const left = expiresAt - Date.now() / 1000;
  return left > 0 ? `in ${ago(left)}` : `expired ${ago(left)} ago`;
}

const STATE_CLASS = { ready: 'ok', connecting: 'warn', login_required: 'bad', error: 'bad', disabled: '' };
const AUTH_TEXT = {
  authenticated: 'logged in', login_required: 'login needed', none: 'no login needed', unknown: 'login unknown',
};
const AUTH_CLASS = { authenticated: 'ok', login_required: 'bad', none: '', unknown: 'warn' };

// ------------------------------------------------------------------ servers

function renderServers() {
  const list = document.getElementById('server-list');
  const servers = (view.state && view.state.servers) || [];
  // Re-rendering must not take the keyboard focus away from the button someone is on.
  const focused = document.activeElement;
  const refocus = focused && focused.dataset && focused.dataset.action && list.contains(focused)
    ? [focused.closest('[data-server]').dataset.server, focused.dataset.action] : null;
  list.replaceChildren();
  if (!servers.length) {
    list.append(h('p', { class: 'empty', text: 'No servers are configured. Add one with `mcprelay upstream add`.' }));
    return;
  }
  for (const server of servers) list.append(serverCard(server));
  if (refocus) {
    const again = Array.from(list.querySelectorAll(`[data-action="${refocus[1]}"]`))
      .find((el) => el.closest('[data-server]').dataset.server === refocus[0]);
    if (again) again.focus();
  }
  const select = document.getElementById('activity-server');
  const chosen = select.value;
  const names = servers.map((s) => s.name);
  const current = Array.from(select.options).slice(1).map((o) => o.value);
  if (names.join('\n') !== current.join('\n')) {
    select.replaceChildren(h('option', { value: '' }, 'All servers'), ...names.map((n) => h('option', { value: n }, n)));
    select.value = names.includes(chosen) ? chosen : '';
  }
  const badge = document.getElementById('held-badge');
  const held = view.state.held || 0;
  badge.hidden = !held;
  badge.textContent = String(held);
  badge.setAttribute('aria-label', `${held} held`);
}

function serverCard(server) {
  const login = view.logins[server.name];
  if (login && login.phase === 'waiting' && server.state === 'ready' && server.auth_state === 'authenticated') {
    login.phase = 'done';
    login.message = 'Logged in.';
    announce(`${server.name}: logged in`);
  }
  const details = h('dl', {},
    h('dt', {}, 'Transport'), h('dd', {}, server.transport),
    h('dt', {}, 'Tools'), h('dd', { 'data-field': 'tools' }, String(server.tool_count),
      server.held_count ? ` (${server.held_count} held)` : ''),
  );
  if (server.transport !== 'stdio') {
    details.append(h('dt', {}, 'Token expires'),
      h('dd', { 'data-field': 'expiry', 'data-expires-at': server.expires_at ?? '' }, expiryText(server.expires_at)));
  }
  if (server.url) details.append(h('dt', {}, 'URL'), h('dd', { class: 'mono' }, server.url));
  const card = h('article', { class: 'card', 'data-server': server.name, 'aria-labelledby': `server-${server.name}` },
    h('header', {},
      h('h3', { id: `server-${server.name}` }, server.name),
      h('span', { class: 'badges' },
        h('span', { class: `badge ${STATE_CLASS[server.state] || ''}`, 'data-field': 'state' }, server.state.replace('_', ' ')),
        h('span', { class: `badge ${AUTH_CLASS[server.auth_state] || ''}`, 'data-field': 'auth' },
          AUTH_TEXT[server.auth_state] || server.auth_state))),
    details);
  const error = server.last_error;
  if (error && server.state !== 'ready') {
    card.append(h('div', { class: 'error', 'data-field': 'error' },
      h('p', {}, h('strong', {}, error.error_type), ': ', error.message),
      error.suggestion ? h('p', {}, 'What to do: ', error.suggestion) : null));
  }
  if (server.transport !== 'stdio' && server.enabled) {
    const needed = server.auth_state !== 'authenticated';
    const button = h('button', {
      type: 'button', class: needed ? '' : 'secondary', 'data-action': 'login',
      disabled: login && login.phase === 'starting',
      onclick: () => startLogin(server.name),
    }, needed ? 'Log in' : 'Log in again');
    button.setAttribute('aria-label', `${needed ? 'Log in' : 'Log in again'} to ${server.name}`);
    const actions = h('div', { class: 'actions' }, button);
    if (login && login.url && login.phase === 'waiting') {
      actions.append(h('a', { href: login.url, target: '_blank', rel: 'noopener noreferrer' }, 'Open the login page'));
    }
    card.append(actions);
  }
  if (login && login.message) {
    card.append(h('p', { class: 'login-status', role: 'status', 'data-field': 'login' }, login.message));
  }
  return card;
}

async function startLogin(name) {
  view.logins[name] = { phase: 'starting', message: 'Starting the login…' };
  renderServers();
  try {
    const started = await api(`/servers/${encodeURIComponent(name)}/login`, { method: 'POST' });
    const url = started.authorization_url;
    if (url && !started.browser_opened) window.open(url, '_blank', 'noopener,noreferrer');
    view.logins[name] = {
      phase: 'waiting', url,
      message: url ? 'Waiting for you to finish logging in on the login page…' : 'Logged in (no browser needed).',
    };
    announce(`${name}: login started`);
  } catch (error) {
    const body = error.body || {};
    view.logins[name] = {
      phase: 'failed',
      message: `The login could not start: ${body.error_type ? body.error_type + ': ' : ''}${error.message}` +
        (body.suggestion ? ` — ${body.suggestion}` : ''),
    };
  }
  renderServers();
}

// ------------------------------------------------------------------ held tools

function diffBlock(text) {
  const pre = h('pre', { class: 'diff', tabindex: '0', 'aria-label': 'What changed' });
  for (const line of text.split('\n')) {
    let cls = 'ctx';
    if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('@@')) cls = 'hunk';
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    pre.append(h('span', { class: cls }, line || ' '));
  }
  return pre;
}

function renderHeld() {
  const list = document.getElementById('held-list');
  list.replaceChildren();
  const pinning = view.state && view.state.tool_pinning;
  if (pinning === 'off') {
    list.append(h('p', { class: 'empty' }, 'Tool pinning is off in the config (tool_pinning: "off"): no tool is held.'));
    return;
  }
  if (!view.held.length) {
    list.append(h('p', { class: 'empty' }, 'No tool is held: the agent sees every tool as it was approved.'));
    return;
  }
  const cards = h('div', { class: 'held-list' });
  for (const tool of view.held) {
    const why = tool.reason === 'new'
      ? 'New on this server: never approved.'
      : `Changed since it was approved: ${tool.changed_fields.join(', ') || 'definition'}.`;
    const button = h('button', {
      type: 'button', 'data-action': 'approve', onclick: (event) => approve(tool, event.currentTarget),
    }, 'Approve');
    button.setAttribute('aria-label', `Approve ${tool.name}`);
    cards.append(h('article', { class: 'card held-tool', 'data-held': tool.name, 'aria-labelledby': `held-${tool.name}` },
      h('header', {}, h('h3', { id: `held-${tool.name}`, class: 'mono' }, tool.name),
        h('span', { class: `badge ${tool.reason === 'new' ? 'warn' : 'bad'}` }, tool.reason)),
      h('p', {}, why),
      tool.description ? h('p', { class: 'hint' }, tool.description) : null,
      diffBlock(tool.diff),
      h('div', { class: 'actions' }, button)));
  }
  list.append(cards);
}

async function approve(tool, button) {
  button.disabled = true;
  try {
    await api(`/servers/${encodeURIComponent(tool.server)}/tools/approve`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ tool: tool.tool, hash: tool.hash }),
    });
    announce(`Approved ${tool.name}`);
    showProblem('');
  } catch (error) {
    const body = error.body || {};
    showProblem(`Could not approve ${tool.name}: ${error.message}${body.suggestion ? ' — ' + body.suggestion : ''}`);
    button.disabled = false;
  }
  await refreshTools();
}

// ------------------------------------------------------------------ tools and search

function toolItem(name, description, extra) {
  return h('li', {}, h('span', { class: 'name' }, name), extra || null,
    description ? h('span', { class: 'desc' }, description.trim().split('\n')[0]) : null);
}

function renderTools() {
  const list = document.getElementById('tool-list');
  list.replaceChildren();
  const servers = ((view.state && view.state.servers) || []).map((s) => s.name);
  if (!view.tools.length && !view.held.length) {
    list.append(h('p', { class: 'empty' }, 'No tools yet: no server is ready.'));
    return;
  }
  for (const name of servers) {
    const tools = view.tools.filter((t) => t.server === name);
    const held = view.held.filter((t) => t.server === name);
    if (!tools.length && !held.length) continue;
    const items = h('ul', { class: 'tools' },
      tools.map((t) => toolItem(t.name, t.description)),
      held.map((t) => toolItem(t.name, t.description, h('span', { class: 'badge warn' }, ` held: ${t.reason}`))));
    list.append(h('details', { class: 'server-tools', open: true, 'data-server-tools': name },
      h('summary', {}, `${name} — ${tools.length} tool${tools.length === 1 ? '' : 's'}` +
        (held.length ? `, ${held.length} held` : '')), items));
  }
}

async function refreshTools() {
  try {
    const [tools, held] = await Promise.all([api('/tools'), api('/tools/held')]);
    view.tools = tools.tools;
    view.held = held.tools;
    renderHeld();
    renderTools();
  } catch (error) {
    if (error.status !== 401) showProblem(`Could not load the tools: ${error.message}`);
  }
}

async function search(event) {
  event.preventDefault();
  const query = document.getElementById('search-q').value.trim();
  const box = document.getElementById('search-results');
  box.replaceChildren();
  if (!query) return;
  try {
    const found = await api(`/tools/search?q=${encodeURIComponent(query)}&limit=10`);
    if (!found.results.length) {
      box.append(h('p', { class: 'empty' }, `No tool matches “${query}”.`));
      return;
    }
    box.append(h('h3', {}, `Best matches for “${query}”`),
      h('ol', { class: 'results', 'aria-label': `Search results for ${query}` },
        found.results.map((r) => toolItem(r.name, r.description,
          h('span', { class: 'score' }, ` score ${r.score.toFixed(2)}`)))));
  } catch (error) {
    box.append(h('p', { class: 'problem' }, `The search failed: ${error.message}`));
  }
}

// ------------------------------------------------------------------ activity

// A tool call shows its tool; a login or refresh says so, with the grant it used (as `activity list` does).
function activityWhat(r) {
  if (!r.kind || r.kind === 'tool_call') return r.tool;
  return r.tool ? `${r.kind} (${r.tool})` : r.kind;
}

async function refreshActivity() {
  const server = document.getElementById('activity-server').value;
  const requestId = document.getElementById('activity-request').value.trim();
  const params = new URLSearchParams({ limit: '50' });
  if (server) params.set('server', server);
  if (requestId) params.set('request_id', requestId);
  let rows;
  try {
    rows = (await api(`/activity?${params}`)).activity;
  } catch (error) {
    if (error.status !== 401) showProblem(`Could not load the activity log: ${error.message}`);
    return;
  }
  const body = document.querySelector('#activity-table tbody');
  body.replaceChildren(...rows.map((r) => h('tr', { 'data-request-id': r.request_id },
    h('td', { 'data-label': 'When' }, new Date(r.started_at * 1000).toLocaleTimeString()),
    h('td', { 'data-label': 'Server' }, r.server),
    h('td', { 'data-label': 'What', class: 'mono' }, activityWhat(r)),
    h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${r.status === 'ok' ? 'ok' : 'bad'}` },
      r.error_type ? `${r.status} (${r.error_type})` : r.status)),
    h('td', { 'data-label': 'Time', class: 'num' }, `${r.duration_ms.toFixed(1)} ms`),
    h('td', { 'data-label': 'Request id' }, h('button', {
      type: 'button', class: 'link', title: 'Show only this request',
      onclick: () => { document.getElementById('activity-request').value = r.request_id; refreshActivity(); },
    }, r.request_id)))));
  const empty = document.getElementById('activity-empty');
  empty.hidden = rows.length > 0;
  empty.textContent = server || requestId ? 'No calls match the filter.' : 'No calls recorded yet.';
}

// ------------------------------------------------------------------ the live stream

function onState(state) {
  const first = view.state === null;
  view.state = state;
  renderServers();
  if (first || state.version !== view.version) {
    view.version = state.version;
    refreshTools();
  }
  if (first || state.activity !== view.activitySeen) {
    view.activitySeen = state.activity;
    refreshActivity();
  }
}

function dispatch(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (event === 'state' && data.length) onState(JSON.parse(data.join('\n')));
}

async function listen() {
  while (!view.ended) {
    try {
      const response = await fetch(`${API}/events`, {
        cache: 'no-store', credentials: 'same-origin', headers: headers({ Accept: 'text/event-stream' }),
      });
      if (response.status === 401) { sessionEnded(); return; }
      if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
      setLive('live', 'Live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      // the gateway went away or the network hiccuped: say so, then try again
    }
    if (view.ended) return;
    setLive('down', 'Reconnecting…');
    await new Promise((resolve) => window.setTimeout(resolve, 2000));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('search-form').addEventListener('submit', search);
  document.getElementById('activity-form').addEventListener('submit', (event) => {
    event.preventDefault();
    refreshActivity();
  });
  document.getElementById('activity-server').addEventListener('change', refreshActivity);
  document.getElementById('activity-clear').addEventListener('click', () => {
    document.getElementById('activity-server').value = '';
    document.getElementById('activity-request').value = '';
    refreshActivity();
  });
  // Expiry times count down between events.
  window.setInterval(() => {
    for (const el of document.querySelectorAll('[data-expires-at]')) {
      el.textContent = expiryText(el.dataset.expiresAt === '' ? null : Number(el.dataset.expiresAt));
    }
  }, 15000);
  listen();
});
