// The live view of exposure (docs/api.md#the-live-view): polls the API's
// DescribeInternetOpen* Actions and keeps the page up to date in place;
// lists the exposure changes GET /events pushes.
// Served by the binary itself; no external script, font or style.
'use strict';

/** How often the data is refreshed, in ms. */
const POLL_MS = 2000;
/** Rows of the port table shown per page. */
const PAGE_ROWS = 100;
/** Rows asked for per API call; lowered to the server's max_page_size when it says so. */
let apiPageSize = 1000;
/** At most this many API pages per refresh: beyond, the page says it shows the first rows. */
const MAX_API_PAGES = 20;
/** Changes listed at most; older ones drop off the bottom. */
const FEED_ITEMS = 50;
/** First wait before the stream is opened again after it failed, in ms; doubled up to FEED_RETRY_MAX_MS. */
const FEED_RETRY_MS = 2000;
const FEED_RETRY_MAX_MS = 60000;
/** IPs listed under an expanded row. */
const DETAIL_ROWS = 100;
const VERSION = '2017-12-07';
/** Where the AccessKey lives: this tab's session storage only. */
const KEY_STORE = 'exposure.accessKey';
const LANG_STORE = 'exposure.lang';

const TEXT = {
  en: {
    title: 'Internet exposure — live view', language: 'Language',
    signInTitle: 'Sign in', signIn: 'Sign in', signOut: 'Sign out',
    signInHelp: 'This service requires signed requests. The AccessKey stays in this tab (session storage) and signs each call here; the secret is never sent.',
    accessKeyId: 'AccessKey ID', accessKeySecret: 'AccessKey secret',
    refused: 'The API refused the key', noCrypto: 'Signing needs a secure context (https, or http on localhost).',
    statIp: 'Public IPs', statPort: 'Open ports', statService: 'Services',
    statRiskIp: 'High-risk IPs', statRiskPort: 'High-risk ports', statRiskService: 'High-risk services',
    statUnexpectedPort: 'Ports not expected',
    riskLevel: 'Risk level', all: 'All', risk3: 'High', risk2: 'Medium', risk1: 'Low', risk0: 'None',
    port: 'Port', protocol: 'Protocol', service: 'Service', services: 'Services', risk: 'Risk',
    suggest: 'Suggestion', publicIps: 'Public IPs', endpoints: 'Endpoints', traffic: 'Traffic', share: 'Share',
    range: 'Range', range1: 'Last day', range7: 'Last 7 days', range30: 'Last 30 days',
    expand: 'Expand', showIps: 'Show the IPs of port', noRows: 'No open port matches.',
    previous: 'Previous', next: 'Next', page: (p, n, rows) => `Page ${p} of ${n} · ${rows} rows`,
    truncated: (shown, total) => `showing the first ${shown} of ${total} rows`,
    suggest0: 'Unknown', suggest10: 'Allow', suggest20: 'Check', suggest30: 'Deny',
    changes: 'Changes', feed_live: 'live: new changes appear here',
    feed_down: 'change feed interrupted; reconnecting', feed_reset: 'some changes were missed while away; live again',
    kind_opened: 'opened', kind_closed: 'closed', kind_changed: 'changed',
    expected: (owner) => (owner ? `expected (${owner})` : 'expected'),
    updated: (t) => `updated ${t}`, never: 'not loaded yet',
    pollFailed: (t, m) => `Refresh failed at ${t}: ${m}. The data shown is from the last successful refresh.`,
    notReady: (m) => `The service is not ready (${m}): answers may be incomplete.`,
    ip: 'Public IP', inBytes: 'In', outBytes: 'Out', loading: 'loading…',
    firstIps: (n, total) => `first ${n} of ${total}`,
    probRisk: 'Risk', riskReason: 'Why',
  },
  zh: {
    title: '互联网暴露面 — 实时视图', language: '语言',
    signInTitle: '登录', signIn: '登录', signOut: '退出',
    signInHelp: '此服务要求签名请求。AccessKey 只保存在本标签页（会话存储）中，在此处为每个请求签名；Secret 不会被发送。',
    accessKeyId: 'AccessKey ID', accessKeySecret: 'AccessKey Secret',
    refused: 'API 拒绝了该密钥', noCrypto: '签名需要安全上下文（https，或 localhost 上的 http）。',
    statIp: '公网 IP', statPort: '开放端口', statService: '服务',
    statRiskIp: '高危 IP', statRiskPort: '高危端口', statRiskService: '高危服务',
    statUnexpectedPort: '非预期端口',
    riskLevel: '风险等级', all: '全部', risk3: '高危', risk2: '中危', risk1: '低危', risk0: '无风险',
    port: '端口', protocol: '协议', service: '服务', services: '服务', risk: '风险',
    suggest: '建议', publicIps: '公网 IP 数', endpoints: '端点数', traffic: '流量', share: '流量占比',
    range: '时间范围', range1: '最近 1 天', range7: '最近 7 天', range30: '最近 30 天',
    expand: '展开', showIps: '显示端口的 IP', noRows: '没有匹配的开放端口。',
    previous: '上一页', next: '下一页', page: (p, n, rows) => `第 ${p} / ${n} 页 · 共 ${rows} 行`,
    truncated: (shown, total) => `仅显示前 ${shown} 行（共 ${total} 行）`,
    suggest0: '未知', suggest10: '放行', suggest20: '观察', suggest30: '拦截',
    changes: '变化', feed_live: '实时：新的变化显示在这里',
    feed_down: '变化推送中断，正在重连', feed_reset: '离开期间错过了部分变化；已恢复实时',
    kind_opened: '新开放', kind_closed: '已关闭', kind_changed: '已变化',
    expected: (owner) => (owner ? `预期内（${owner}）` : '预期内'),
    updated: (t) => `更新于 ${t}`, never: '尚未加载',
    pollFailed: (t, m) => `${t} 刷新失败：${m}。显示的是上次成功刷新的数据。`,
    notReady: (m) => `服务尚未就绪（${m}）：结果可能不完整。`,
    ip: '公网 IP', inBytes: '入', outBytes: '出', loading: '加载中…',
    firstIps: (n, total) => `前 ${n} 个（共 ${total} 个）`,
    probRisk: '风险', riskReason: '原因',
  },
};

/** The table's columns after the expand button, in order. */
const COLUMNS = ['Port', 'Protocol', 'ServiceNameList', 'RiskLevel', 'SuggestLevel',
  'PublicIpNum', 'DetailNum', 'TotalBytes', 'TrafficPercent'];

const $ = (selector) => document.querySelector(selector);

const view = {
  lang: localStorage.getItem(LANG_STORE) === 'en' ? 'en' : 'zh',
  /** DescribeInternetOpenPort rows in the API's order. */
  rows: [],
  totalCount: 0,
  /** Keys (`port/protocol`) seen at the last refresh: a new one is highlighted. */
  seen: null,
  sortKey: null,
  sortDir: 1,
  page: 1,
  /** Rendered rows by key: { tr, cells, detail } */
  rendered: new Map(),
  /** Keys whose IPs are shown, with what their detail was loaded for. */
  expanded: new Map(),
  lastSuccess: null,
  timer: 0,
  /** Bumped by each refresh: an answer for an older one is dropped. */
  generation: 0,
  /** Refreshing waits while the AccessKey is missing or refused. */
  waitingForKey: false,
  /** The change feed: its EventSource, the last Seq received, the changes shown. */
  feed: { source: null, lastId: null, timer: 0, retryMs: FEED_RETRY_MS, items: [], state: undefined },
};

const t = (key, ...args) => {
  const text = TEXT[view.lang][key];
  return typeof text === 'function' ? text(...args) : text;
};

// ---- calling the API ------------------------------------------------------

/** An error answer of the API (its Code and Message), or a failure to reach it. */
class ApiError extends Error {
  constructor(code, message, status, retryAfterMs) {
    super(`${code}: ${message}`);
    this.code = code;
    this.apiMessage = message;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** RFC 3986 encoding, as the server canonicalises the query (space as %20). */
const rfc3986 = (text) => encodeURIComponent(text)
  .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());

const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');

async function sha256Hex(text) {
  return hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

async function hmacSha256Hex(secret, text) {
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return hex(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(text)));
}

/** The key of this tab, if signed in. */
function accessKey() {
  try {
    const key = JSON.parse(sessionStorage.getItem(KEY_STORE) || 'null');
    return key && key.id && key.secret ? key : null;
  } catch {
    return null;
  }
}

/**
 * The ACS3-HMAC-SHA256 headers of `GET /?query` (src/api/auth/acs3.rs):
 * canonical request = GET, /, the sorted RFC 3986 query, the signed headers
 * (host and every x-acs-* header), their names, the body's hash.
 */
async function acs3Headers(action, canonicalQuery, key) {
  const emptyHash = await sha256Hex('');
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const signed = {
    host: location.host,
    'x-acs-action': action,
    'x-acs-content-sha256': emptyHash,
    'x-acs-date': new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    'x-acs-signature-nonce': nonce,
    'x-acs-version': VERSION,
  };
  const names = Object.keys(signed).sort();
  const canonical = ['GET', '/', canonicalQuery,
    names.map((n) => `${n}:${signed[n]}\n`).join(''), names.join(';'), emptyHash].join('\n');
  const toSign = `ACS3-HMAC-SHA256\n${await sha256Hex(canonical)}`;
  const signature = await hmacSha256Hex(key.secret, toSign);
  const headers = { ...signed };
  delete headers.host; // the browser sends it, with the same value
  headers.authorization =
    `ACS3-HMAC-SHA256 Credential=${key.id},SignedHeaders=${names.join(';')},Signature=${signature}`;
  return headers;
}

/** Calls `action` with `params` (strings); its JSON answer, or throws ApiError. */
async function call(action, params) {
  const pairs = Object.entries(params).filter(([, v]) => v !== '' && v !== undefined)
    .map(([k, v]) => [rfc3986(k), rfc3986(String(v))]);
  const key = accessKey();
  let headers = {};
  let url;
  if (key) {
    if (!window.crypto || !crypto.subtle) throw new ApiError('NoSecureContext', t('noCrypto'), 0, 0);
    pairs.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
    const query = pairs.map(([k, v]) => `${k}=${v}`).join('&');
    headers = await acs3Headers(action, query, key);
    url = `/?${query}`;
  } else {
    pairs.unshift(['Action', action], ['Version', VERSION]);
    url = `/?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`;
  }
  let response;
  try {
    response = await fetch(url, { headers, cache: 'no-store' });
  } catch (e) {
    throw new ApiError('Unreachable', `the service did not answer (${e.message})`, 0, 0);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError('BadAnswer', `HTTP ${response.status} without a JSON body`, response.status, 0);
  }
  if (!response.ok || body.Code) {
    throw new ApiError(body.Code || `HTTP ${response.status}`, body.Message || '', response.status,
      Number(response.headers.get('x-acs-retry-after')) || 0);
  }
  return body;
}

/** Every DescribeInternetOpenPort row (up to MAX_API_PAGES calls) and the total. */
async function allPorts(params) {
  const rows = [];
  for (let page = 1; page <= MAX_API_PAGES; page++) {
    let answer;
    try {
      answer = await call('DescribeInternetOpenPort', { ...params, CurrentPage: page, PageSize: apiPageSize });
    } catch (e) {
      const max = /PageSize.*from 1 to (\d+)/.exec(e.apiMessage || '');
      if (e.code === 'ErrorParameters' && max && Number(max[1]) < apiPageSize) {
        apiPageSize = Number(max[1]);
        return allPorts(params);
      }
      throw e;
    }
    rows.push(...answer.DataList);
    if (rows.length >= answer.PageInfo.TotalCount || answer.DataList.length === 0) {
      return { rows, total: answer.PageInfo.TotalCount };
    }
  }
  return { rows, total: Infinity };
}

// ---- what is asked for -----------------------------------------------------

function rangeDays() {
  return Number($('#range').value) || 7;
}

/** The time range and language every call of a refresh shares. */
function rangeParams() {
  const now = Math.floor(Date.now() / 1000);
  return { Lang: view.lang, StartTime: now - rangeDays() * 86400 };
}

function filterParams() {
  const port = $('#port').value.trim();
  return {
    RiskLevel: $('#risk').value,
    Port: /^\d{1,5}$/.test(port) ? port : '',
    ServiceNameFuzzy: $('#service').value.trim(),
  };
}

// ---- refreshing ------------------------------------------------------------

function refreshSoon(delay) {
  clearTimeout(view.timer);
  view.timer = setTimeout(refresh, delay);
}

async function refresh() {
  const generation = ++view.generation;
  clearTimeout(view.timer);
  let nextIn = POLL_MS;
  checkReadiness(generation);
  try {
    const range = rangeParams();
    const [stat, ports] = await Promise.all([
      call('DescribeInternetOpenStatistic', range),
      allPorts({ ...range, ...filterParams() }),
    ]);
    if (generation !== view.generation) return;
    showSignedIn();
    // The feed opens once the calls are known to pass (signed, if need be).
    if (!view.feed.source && !view.feed.timer) openFeed();
    renderTiles(stat);
    view.rows = ports.rows;
    view.totalCount = ports.total;
    renderTable();
    view.lastSuccess = new Date();
    setPollError(null);
    refreshDetails();
  } catch (e) {
    if (generation !== view.generation) return;
    if (isKeyProblem(e)) {
      askForKey(e);
      return;
    }
    setPollError(e);
    if (e.retryAfterMs) nextIn = Math.max(POLL_MS, e.retryAfterMs);
  } finally {
    if (generation === view.generation && !view.waitingForKey) refreshSoon(nextIn);
    renderFreshness();
  }
}

/** `/readyz` (no auth): a banner while the service says it is not ready. */
async function checkReadiness(generation) {
  let problem = null;
  try {
    const response = await fetch('/readyz', { cache: 'no-store' });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const down = Object.entries(body).filter(([k, v]) => v === false && k !== 'ready').map(([k]) => k);
      if (body.tasks_down && body.tasks_down.length) down.push(`tasks_down=${body.tasks_down.join(',')}`);
      problem = down.join(', ') || `HTTP ${response.status}`;
    }
  } catch (e) {
    problem = e.message;
  }
  if (generation === view.generation) {
    view.notReady = problem;
    renderBanner();
  }
}

function setPollError(error) {
  view.pollError = error ? { at: new Date(), message: error.message } : null;
  renderBanner();
}

function renderBanner() {
  const parts = [];
  if (view.pollError) parts.push(t('pollFailed', clock(view.pollError.at), view.pollError.message));
  if (view.notReady) parts.push(t('notReady', view.notReady));
  const banner = $('#banner');
  banner.textContent = parts.join(' ');
  banner.hidden = parts.length === 0;
  $('#ports').classList.toggle('stale', Boolean(view.pollError));
}

function renderFreshness() {
  $('#freshness').textContent = view.lastSuccess ? t('updated', clock(view.lastSuccess)) : t('never');
}

const clock = (date) => date.toLocaleTimeString(view.lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });

// ---- signing in ------------------------------------------------------------

/** An answer that only a (better) AccessKey can fix. */
function isKeyProblem(e) {
  return (e.code === 'MissingParameter' && /Signature/.test(e.apiMessage)) ||
    e.code === 'InvalidAccessKeyId.NotFound' || e.code === 'SignatureDoesNotMatch' ||
    e.code === 'NoSecureContext';
}

function askForKey(error) {
  view.waitingForKey = true;
  closeFeed();
  $('#signin').hidden = false;
  $('#signout').hidden = true;
  const shown = $('#signin-error');
  // Unsigned requests are expected to be refused: only a key's refusal is an error.
  const refusedKey = accessKey() && error.code !== 'MissingParameter';
  shown.hidden = !refusedKey;
  shown.textContent = '';
  if (refusedKey) {
    const code = document.createElement('strong');
    code.textContent = `${t('refused')}: ${error.code}`;
    const message = document.createElement('span');
    message.textContent = error.apiMessage;
    shown.append(code, message);
  }
  if (refusedKey) sessionStorage.removeItem(KEY_STORE);
}

function showSignedIn() {
  $('#signin').hidden = true;
  $('#signout').hidden = !accessKey();
}

function signIn(event) {
  event.preventDefault();
  const id = $('#access-key-id').value.trim();
  const secret = $('#access-key-secret').value;
  if (!id || !secret) return;
  sessionStorage.setItem(KEY_STORE, JSON.stringify({ id, secret }));
  $('#access-key-secret').value = '';
  view.waitingForKey = false;
  refreshSoon(0);
}

function signOut() {
  sessionStorage.removeItem(KEY_STORE);
  closeFeed();
  refreshSoon(0);
}

// ---- tiles -----------------------------------------------------------------

function renderTiles(stat) {
  for (const el of document.querySelectorAll('[data-stat]')) {
    setText(el, formatCount(stat[el.dataset.stat]));
  }
}

const formatCount = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '–');

// ---- the port table --------------------------------------------------------

const rowKey = (row) => `${row.Port}/${row.Protocol}`;

/** A cell's value for sorting. */
function sortValue(row, key) {
  if (key === 'ServiceNameList') return row.ServiceNameList.join(',').toLowerCase();
  if (key === 'TrafficPercent') return Number(row[`TrafficPercent${rangeDays()}Day`]) || 0;
  return row[key];
}

function sortedRows() {
  if (!view.sortKey) return view.rows;
  const key = view.sortKey;
  return view.rows.map((row, i) => [row, i]).sort(([a, i], [b, j]) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    return (x < y ? -1 : x > y ? 1 : i - j) * (x === y ? 1 : view.sortDir);
  }).map(([row]) => row);
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** The text of each column of `row`. */
function cellTexts(row) {
  return {
    Port: String(row.Port),
    Protocol: row.Protocol,
    ServiceNameList: row.ServiceNameList.join(', '),
    RiskLevel: t(`risk${row.RiskLevel}`) || String(row.RiskLevel),
    SuggestLevel: t(`suggest${row.SuggestLevel}`) || String(row.SuggestLevel),
    PublicIpNum: String(row.PublicIpNum),
    DetailNum: String(row.DetailNum),
    TotalBytes: formatBytes(row.TotalBytes),
    TrafficPercent: `${row[`TrafficPercent${rangeDays()}Day`]} %`,
  };
}

function createRow(row) {
  const tr = document.createElement('tr');
  tr.dataset.port = String(row.Port);
  tr.dataset.protocol = row.Protocol;
  const expandCell = document.createElement('td');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'expand';
  button.setAttribute('aria-expanded', 'false');
  button.addEventListener('click', () => toggleDetail(rowKey(row)));
  expandCell.append(button);
  tr.append(expandCell);
  const cells = {};
  for (const column of COLUMNS) {
    const td = document.createElement('td');
    td.dataset.field = column;
    tr.append(td);
    cells[column] = td;
  }
  return { tr, cells, button, detail: null, row };
}

function updateRow(entry, row, fresh) {
  entry.row = row;
  entry.tr.dataset.risk = String(row.RiskLevel);
  entry.tr.className = `risk-${row.RiskLevel}${fresh ? ' fresh' : ''}${entry.detail ? ' open' : ''}`;
  const texts = cellTexts(row);
  for (const column of COLUMNS) setText(entry.cells[column], texts[column]);
  entry.cells.TotalBytes.title = `${row.TotalBytes.toLocaleString('en-US')} B`;
  entry.button.setAttribute('aria-label', `${t('showIps')} ${row.Port}/${row.Protocol}`);
  setText(entry.button, entry.detail ? '▾' : '▸');
}

/** Shows the current page, changing only the rows and cells that differ. */
function renderTable() {
  const rows = sortedRows();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
  view.page = Math.min(view.page, pages);
  const pageRows = rows.slice((view.page - 1) * PAGE_ROWS, view.page * PAGE_ROWS);
  const wanted = new Set(pageRows.map(rowKey));
  const tbody = $('#ports tbody');
  for (const [key, entry] of view.rendered) {
    if (!wanted.has(key)) {
      entry.tr.remove();
      if (entry.detail) entry.detail.remove();
      view.rendered.delete(key);
    }
  }
  const seen = new Set(view.rows.map(rowKey));
  let cursor = tbody.firstElementChild;
  for (const row of pageRows) {
    const key = rowKey(row);
    let entry = view.rendered.get(key);
    if (!entry) {
      entry = createRow(row);
      view.rendered.set(key, entry);
      if (view.expanded.has(key)) entry.detail = createDetail(key);
    }
    updateRow(entry, row, view.seen !== null && !view.seen.has(key));
    if (cursor !== entry.tr) tbody.insertBefore(entry.tr, cursor);
    let last = entry.tr;
    if (entry.detail) {
      if (last.nextElementSibling !== entry.detail) tbody.insertBefore(entry.detail, last.nextElementSibling);
      last = entry.detail;
    }
    cursor = last.nextElementSibling;
  }
  view.seen = seen;
  $('#empty').hidden = rows.length > 0;
  const total = Number.isFinite(view.totalCount) ? view.totalCount : `${rows.length}+`;
  let info = t('page', view.page, pages, total);
  if (rows.length < view.totalCount) info += ` (${t('truncated', rows.length, total)})`;
  setText($('#page-info'), info);
  $('#prev').disabled = view.page <= 1;
  $('#next').disabled = view.page >= pages;
  renderSortIndicators();
}

function renderSortIndicators() {
  for (const th of document.querySelectorAll('#ports th[data-sort]')) {
    const sorted = th.dataset.sort === view.sortKey;
    th.setAttribute('aria-sort', sorted ? (view.sortDir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

function sortBy(key) {
  if (view.sortKey === key && view.sortDir === 1) view.sortDir = -1;
  else if (view.sortKey === key) view.sortKey = null; // third click: the API's order again
  else {
    view.sortKey = key;
    view.sortDir = 1;
  }
  renderTable();
}

// ---- expanded rows: the IPs of a port and its details -----------------------

function createDetail(key) {
  const tr = document.createElement('tr');
  tr.className = 'detail';
  const td = document.createElement('td');
  td.colSpan = COLUMNS.length + 1;
  td.textContent = t('loading');
  tr.append(td);
  tr.dataset.detailOf = key;
  return tr;
}

function toggleDetail(key) {
  const entry = view.rendered.get(key);
  if (!entry) return;
  if (entry.detail) {
    entry.detail.remove();
    entry.detail = null;
    view.expanded.delete(key);
    entry.button.setAttribute('aria-expanded', 'false');
  } else {
    entry.detail = createDetail(key);
    entry.tr.after(entry.detail);
    view.expanded.set(key, null);
    entry.button.setAttribute('aria-expanded', 'true');
  }
  updateRow(entry, entry.row, false);
  refreshDetails();
}

/** Reloads the IPs of expanded rows on this page whose row changed since they were loaded. */
function refreshDetails() {
  for (const [key, loadedFor] of view.expanded) {
    const entry = view.rendered.get(key);
    if (!entry || !entry.detail) continue;
    const version = `${view.lang}|${rangeDays()}|${entry.row.DetailNum}|${entry.row.TotalBytes}`;
    if (loadedFor === version) continue;
    view.expanded.set(key, version);
    loadDetail(entry, key).catch((e) => {
      view.expanded.set(key, null);
      setText(entry.detail.firstElementChild, e.message);
    });
  }
}

async function loadDetail(entry, key) {
  const row = entry.row;
  const answer = await call('DescribeInternetOpenDetail', {
    ...rangeParams(), Port: row.Port, PageSize: Math.min(DETAIL_ROWS, apiPageSize),
    'SortList.1.SortKey': 'PublicIp',
  });
  if (view.rendered.get(key) !== entry || !entry.detail) return;
  const endpoints = answer.DataList.filter((d) => d.Protocol === row.Protocol);
  const td = entry.detail.firstElementChild;
  td.textContent = '';
  const about = document.createElement('dl');
  for (const [label, value] of [[t('probRisk'), `${row.ProbRisk} — ${row.ProbRiskDesc}`],
    [t('riskReason'), row.RiskReason]]) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = value;
    about.append(dt, dd);
  }
  const table = document.createElement('table');
  table.className = 'ips';
  const head = table.createTHead().insertRow();
  for (const label of [t('ip'), t('service'), t('risk'), t('inBytes'), t('outBytes'), t('traffic')]) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = label;
    head.append(th);
  }
  const body = table.createTBody();
  for (const d of endpoints) {
    const tr = body.insertRow();
    tr.className = `risk-${d.RiskLevel}`;
    tr.dataset.ip = d.PublicIp;
    for (const text of [d.PublicIp, d.ServiceName, t(`risk${d.RiskLevel}`),
      formatBytes(d.InBytes), formatBytes(d.OutBytes), formatBytes(d.TotalBytes)]) {
      tr.insertCell().textContent = text;
    }
  }
  td.append(about, table);
  if (answer.PageInfo.TotalCount > answer.DataList.length) {
    const note = document.createElement('p');
    note.textContent = t('firstIps', answer.DataList.length, answer.PageInfo.TotalCount);
    td.append(note);
  }
}

// ---- the change feed -------------------------------------------------------

async function hmacSha1Base64(secret, text) {
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-1' }, false, ['sign']);
  const bytes = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...bytes));
}

/**
 * `/events` resuming after `lastId` (docs/api.md#the-event-stream). With a
 * key, signed with signature v1 in the query, since an EventSource cannot
 * set headers: HMAC-SHA1(secret + "&", "GET&%2F&" + encode(sorted query)).
 * Each connect is signed anew: the server refuses a nonce used before.
 */
async function feedUrl(lastId) {
  const params = {};
  if (lastId !== null) params.LastEventId = lastId;
  const key = accessKey();
  if (key) {
    if (!window.crypto || !crypto.subtle) throw new ApiError('NoSecureContext', t('noCrypto'), 0, 0);
    Object.assign(params, {
      AccessKeyId: key.id,
      SignatureMethod: 'HMAC-SHA1',
      SignatureVersion: '1.0',
      SignatureNonce: hex(crypto.getRandomValues(new Uint8Array(16))),
      Timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
  }
  const pairs = Object.entries(params).map(([k, v]) => [rfc3986(k), rfc3986(String(v))])
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  let query = pairs.map(([k, v]) => `${k}=${v}`).join('&');
  if (key) {
    const signature = await hmacSha1Base64(`${key.secret}&`, `GET&%2F&${rfc3986(query)}`);
    query += `&Signature=${rfc3986(signature)}`;
  }
  return query ? `/events?${query}` : '/events';
}

/** Opens the stream (again), from the last change received. */
async function openFeed() {
  closeFeed();
  if (view.waitingForKey) return;
  let url;
  try {
    url = await feedUrl(view.feed.lastId);
  } catch (e) {
    setFeedState('down', e.message);
    return;
  }
  const source = new EventSource(url);
  view.feed.source = source;
  source.onopen = () => {
    view.feed.retryMs = FEED_RETRY_MS;
    setFeedState('live');
  };
  source.onmessage = (m) => {
    view.feed.lastId = m.lastEventId;
    addChange(JSON.parse(m.data));
  };
  source.addEventListener('reset', (m) => {
    view.feed.lastId = String(JSON.parse(m.data).Latest);
    setFeedState('reset');
  });
  // The browser's own reconnect would reuse a signed URL, which the server
  // refuses: close, and open a freshly signed one after a pause.
  source.onerror = () => {
    if (view.feed.source !== source) return;
    closeFeed();
    setFeedState('down');
    view.feed.timer = setTimeout(openFeed, view.feed.retryMs);
    view.feed.retryMs = Math.min(view.feed.retryMs * 2, FEED_RETRY_MAX_MS);
  };
}

function closeFeed() {
  clearTimeout(view.feed.timer);
  view.feed.timer = 0;
  if (view.feed.source) view.feed.source.close();
  view.feed.source = null;
}

/** A change at the top of the feed (once, whatever the redeliveries). */
function addChange(event) {
  if (view.feed.items.some((e) => e.EventId === event.EventId)) return;
  view.feed.items.unshift(event);
  view.feed.items.length = Math.min(view.feed.items.length, FEED_ITEMS);
  renderFeed();
}

function renderFeed() {
  const list = $('#change-list');
  list.replaceChildren(...view.feed.items.map((e) => {
    const li = document.createElement('li');
    li.dataset.eventId = e.EventId;
    li.dataset.kind = e.Kind;
    li.className = `risk-${e.RiskLevel}`;
    const time = document.createElement('time');
    time.dateTime = new Date(e.Time * 1000).toISOString();
    time.textContent = clock(new Date(e.Time * 1000));
    const ip = e.Ip.includes(':') ? `[${e.Ip}]` : e.Ip;
    const what = [t(`kind_${e.Kind}`), `${ip}:${e.Port}/${e.Protocol}`, e.ServiceNameList.join(', '),
      t(`risk${e.RiskLevel}`)];
    if (e.Expected) what.push(t('expected', e.Owner));
    li.append(time, ` ${what.join(' · ')}`);
    return li;
  }));
}

function setFeedState(state, detail) {
  view.feed.state = state;
  view.feed.detail = detail;
  renderFeedStatus();
}

function renderFeedStatus() {
  if (view.feed.state === undefined) return;
  const detail = view.feed.detail ? ` (${view.feed.detail})` : '';
  $('#changes-status').textContent = t(`feed_${view.feed.state}`) + detail;
  $('#changes').dataset.feed = view.feed.state;
}

// ---- language and controls -------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = view.lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) setText(el, t(el.dataset.i18n));
  $('#lang').value = view.lang;
  renderFreshness();
  renderBanner();
  renderFeedStatus();
  renderFeed();
  if (view.rows.length) renderTable();
}

function setLanguage(lang) {
  view.lang = lang === 'en' ? 'en' : 'zh';
  localStorage.setItem(LANG_STORE, view.lang);
  applyLanguage();
  for (const key of view.expanded.keys()) view.expanded.set(key, null);
  refreshSoon(0);
}

function filtersChanged() {
  view.page = 1;
  refreshSoon(250);
}

function start() {
  applyLanguage();
  $('#lang').addEventListener('change', (e) => setLanguage(e.target.value));
  $('#signin').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', signOut);
  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  for (const id of ['#risk', '#range']) $(id).addEventListener('change', filtersChanged);
  for (const id of ['#port', '#service']) $(id).addEventListener('input', filtersChanged);
  for (const th of document.querySelectorAll('#ports th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => sortBy(th.dataset.sort));
  }
  $('#prev').addEventListener('click', () => { view.page--; renderTable(); });
  $('#next').addEventListener('click', () => { view.page++; renderTable(); });
  refresh();
}

start();
