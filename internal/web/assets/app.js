// smtplog web UI. Plain JavaScript, no build step, no third-party code.
//
// Safety rule: every value that comes from mail (subjects, addresses, HELO
// names, reply texts, transcripts) reaches the page as a text node
// (textContent) or as an attribute set through the DOM on an element we
// chose; HTML is never parsed from strings. The server's CSP requires
// Trusted Types, so an accidental innerHTML assignment throws.
'use strict';

(function () {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const STATUSES = ['accepted', 'sent', 'deferred', 'bounced', 'rejected', 'expired', 'aborted'];
  const COLORS = {
    accepted: '#3b82f6', sent: '#16a34a', deferred: '#f59e0b', bounced: '#dc2626',
    rejected: '#9333ea', expired: '#6b7280', aborted: '#94a3b8', session: '#0f766e',
  };

  // el builds an element: attrs are set as properties or attributes, and
  // string children become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    append(e, children);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'href') e.setAttribute('href', safeHref(v));
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
  }
  function append(e, children) {
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
  }
  // safeHref allows only links this UI builds: same-origin paths.
  function safeHref(v) {
    const s = String(v);
    return s.startsWith('/') && !s.startsWith('//') ? s : '#';
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  const main = () => document.getElementById('main');

  // ---- helpers ----

  async function api(path) {
    const resp = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const err = new Error((body && body.error) || ('HTTP ' + resp.status));
      err.status = resp.status;
      err.body = body || {};
      throw err;
    }
    return body;
  }
  // send makes a state-changing request: always JSON (the server checks
  // the content type and the Origin).
  async function send(method, path, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json', 'Content-Type': 'application/json' } };
    if (body !== undefined) opts.body = JSON.stringify(body);
    const resp = await fetch(path, opts);
    let res = null;
    try { res = await resp.json(); } catch (e) { res = null; }
    if (!resp.ok) {
      const err = new Error((res && res.error) || ('HTTP ' + resp.status));
      err.status = resp.status;
      throw err;
    }
    return res;
  }
  // Capture mode is known by its message list (the Mailpit-compatible
  // GET /api/v1/messages), which only capture mode serves: elsewhere it
  // answers 404. Asked at most once per page view; the answer (null outside
  // capture mode) also gives the unread count for the navigation.
  let captureProbe = null;
  function captureList(limit) {
    if (!captureProbe) {
      captureProbe = api('/api/v1/messages?limit=' + (limit || 1)).catch(e => {
        if (e.status === 404) return null;
        throw e;
      });
    }
    return captureProbe;
  }
  // showUnread puts the number of unread captured messages beside
  // Messages in the navigation (and shows that link, capture mode only).
  function showUnread(n) {
    const link = document.querySelector('[data-nav=messages]');
    const badge = document.getElementById('nav-unread');
    if (!link || !badge) return;
    link.hidden = false;
    badge.textContent = n > 0 ? fmtNum(n) : '';
    badge.title = n > 0 ? n + ' unread' : '';
  }
  // refreshUnread asks again after the read state changed.
  async function refreshUnread() {
    try {
      const l = await api('/api/v1/messages?limit=1');
      showUnread(l.unread || 0);
    } catch (e) { /* the badge keeps its number */ }
  }
  function fmtBytes(n) {
    n = n || 0;
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }
  function fmtTime(t) {
    if (!t) return '';
    const d = new Date(t);
    if (isNaN(d)) return String(t);
    return d.toISOString().replace('T', ' ').slice(0, 19);
  }
  function fmtNum(n) { return (n || 0).toLocaleString('en-US'); }
  function fmtPct(x) { return ((x || 0) * 100).toFixed(1) + '%'; }
  function fmtMs(x) {
    if (!x) return '0 ms';
    return x >= 1000 ? (x / 1000).toFixed(2) + ' s' : x.toFixed(x < 10 ? 1 : 0) + ' ms';
  }
  // quoteValue quotes a value for the query language.
  function quoteValue(v) { return '"' + String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'; }
  function searchLink(q, label) {
    return el('a', { href: '/search?q=' + encodeURIComponent(q), title: q }, label);
  }
  function status(s) { return el('span', { class: 'status ' + (STATUSES.includes(s) || s === 'session' ? s : '') }, s || '—'); }
  function errorBox(msg) { return el('p', { class: 'error', role: 'alert' }, msg); }
  function panel(title, ...children) { return el('section', { class: 'panel' }, el('h2', {}, title), ...children); }
  function recipients(r) {
    const to = (r.rcpt_to || []).slice();
    for (const x of r.rejected_rcpt || []) to.push(x.address);
    return to;
  }
  function codeOf(r) { return r.smtp_response || (r.reply_code ? String(r.reply_code) : ''); }

  // ---- charts (SVG built through the DOM) ----

  // stackedBars draws series [{t, total, <status>: n}] as stacked columns.
  function stackedBars(series, keys) {
    const W = 900, H = 260, L = 48, R = 10, T = 10, B = 34;
    const max = Math.max(1, ...series.map(p => keys.reduce((a, k) => a + (p[k] || 0), 0)));
    const n = Math.max(1, series.length);
    const bw = (W - L - R) / n;
    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Messages over time by status', class: 'stacked' });
    const y = v => T + (H - T - B) * (1 - v / max);
    for (let i = 0; i <= 4; i++) {
      const v = Math.round(max * i / 4);
      g.appendChild(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid-line' }));
      g.appendChild(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtNum(v)));
    }
    series.forEach((p, i) => {
      let acc = 0;
      for (const k of keys) {
        const v = p[k] || 0;
        if (!v) continue;
        const r = svg('rect', { x: L + i * bw + bw * 0.1, width: Math.max(1, bw * 0.8), y: y(acc + v), height: Math.max(0.5, y(acc) - y(acc + v)), fill: COLORS[k], 'data-status': k },
          svg('title', {}, `${fmtTime(p.t)} UTC — ${k}: ${v}`));
        g.appendChild(r);
        acc += v;
      }
    });
    const every = Math.ceil(n / 8);
    series.forEach((p, i) => {
      if (i % every) return;
      const d = new Date(p.t);
      const label = (n > 1 && new Date(series[n - 1].t) - new Date(series[0].t) > 2 * 86400e3)
        ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
      g.appendChild(svg('text', { x: L + i * bw + bw / 2, y: H - B + 16, 'text-anchor': 'middle' }, label));
    });
    g.appendChild(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
    return g;
  }

  function legend(keys) {
    return el('div', { class: 'legend' }, keys.map(k => el('span', {}, el('span', { class: 'sw' }), k)));
  }
  // Legend swatches are coloured through CSSOM (allowed by the CSP).
  function colourLegend(box, keys) {
    const spans = box.querySelectorAll('.sw');
    spans.forEach((s, i) => { s.style.background = COLORS[keys[i]] || '#999'; });
    return box;
  }

  // hbars draws [{label, value, color, href}] as horizontal bars.
  function hbars(items, opts) {
    opts = opts || {};
    const fmt = opts.format || fmtNum;
    if (!items.length) return el('p', { class: 'empty' }, 'No data in this range.');
    const W = 360, rowH = 22, L = opts.labelWidth || 170, R = 60;
    const H = items.length * rowH + 4;
    const max = Math.max(1e-9, ...items.map(i => i.value));
    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.label || 'bar chart', class: 'hbars' });
    items.forEach((it, i) => {
      const yy = i * rowH + 2;
      const label = String(it.label);
      const shown = label.length > 28 ? label.slice(0, 27) + '…' : label;
      const t = svg('text', { x: L - 6, y: yy + 15, 'text-anchor': 'end' }, shown, svg('title', {}, label));
      if (it.href) {
        const a = svg('a', {}, t);
        a.setAttribute('href', safeHref(it.href));
        g.appendChild(a);
      } else {
        g.appendChild(t);
      }
      const w = Math.max(1, (W - L - R) * it.value / max);
      g.appendChild(svg('rect', { x: L, y: yy + 3, width: w, height: rowH - 7, rx: 2, fill: it.color || '#3b82f6' }, svg('title', {}, `${label}: ${fmt(it.value)}`)));
      g.appendChild(svg('text', { x: L + w + 5, y: yy + 15 }, fmt(it.value)));
    });
    return g;
  }

  // donut draws [{label, value, color}] as a ring with its first share in the middle.
  function donut(items, centre) {
    const total = items.reduce((a, i) => a + i.value, 0);
    const g = svg('svg', { viewBox: '0 0 300 160', role: 'img', 'aria-label': 'share chart', class: 'donut' });
    const cx = 80, cy = 80, r = 60, w = 22;
    if (!total) {
      g.appendChild(svg('circle', { cx, cy, r, fill: 'none', stroke: '#e5e7eb', 'stroke-width': w }));
    }
    let a0 = -Math.PI / 2;
    for (const it of items) {
      if (!it.value) continue;
      const a1 = a0 + 2 * Math.PI * it.value / total;
      const large = a1 - a0 > Math.PI ? 1 : 0;
      const p = (a) => `${cx + r * Math.cos(a)} ${cy + r * Math.sin(a)}`;
      const d = it.value === total
        ? `M ${cx} ${cy - r} A ${r} ${r} 0 1 1 ${cx - 0.01} ${cy - r}`
        : `M ${p(a0)} A ${r} ${r} 0 ${large} 1 ${p(a1)}`;
      g.appendChild(svg('path', { d, fill: 'none', stroke: it.color, 'stroke-width': w }, svg('title', {}, `${it.label}: ${fmtNum(it.value)}`)));
      a0 = a1;
    }
    g.appendChild(svg('text', { x: cx, y: cy + 6, 'text-anchor': 'middle', 'font-size': 18, 'font-weight': 600 }, centre));
    items.forEach((it, i) => {
      g.appendChild(svg('rect', { x: 165, y: 58 + i * 22, width: 10, height: 10, fill: it.color }));
      g.appendChild(svg('text', { x: 180, y: 67 + i * 22 }, `${it.label}: ${fmtNum(it.value)}`));
    });
    return g;
  }

  function chartBox(chart) { return el('div', { class: 'chart' }, chart); }

  // ---- pages ----

  const RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };

  async function dashboard(root, params) {
    const range = RANGES[params.get('range')] ? params.get('range') : '24h';
    document.title = 'smtplog — dashboard';
    const tb = el('div', { class: 'toolbar' }, el('span', { class: 'range' },
      Object.keys(RANGES).map(k => el('a', { href: location.pathname + '?range=' + k, class: k === range ? 'current' : '' }, k))),
      el('span', { class: 'muted', id: 'range-label' }, ''));
    root.append(el('h1', {}, 'Dashboard'), tb);
    let s;
    try {
      s = await api('/api/stats?from=-' + range);
    } catch (e) {
      root.append(errorBox('Could not load statistics: ' + e.message));
      return;
    }
    document.getElementById('range-label').textContent =
      `${fmtTime(s.from)} – ${fmtTime(s.to)} UTC, ${Math.round(s.bucket_seconds / 60)}-minute buckets`;
    const m = s.totals.messages || 0;
    const kpi = (k, v, id) => el('div', { class: 'kpi', 'data-kpi': id }, el('div', { class: 'v' }, v), el('div', { class: 'k' }, k));
    root.append(el('div', { class: 'kpis' },
      kpi('messages', fmtNum(m), 'messages'),
      kpi('sessions', fmtNum(s.totals.sessions), 'sessions'),
      kpi('bounce rate', fmtPct(s.rates.bounce), 'bounce'),
      kpi('deferral rate', fmtPct(s.rates.deferral), 'deferral'),
      kpi('reject rate', fmtPct(s.rates.reject), 'reject'),
      kpi('TLS', fmtPct(s.tls.ratio), 'tls'),
      kpi('auth failures', fmtNum(s.auth.failures), 'auth'),
      kpi('latency p50', fmtMs(s.latency_ms.p50), 'latency-p50'),
      kpi('latency p99', fmtMs(s.latency_ms.p99), 'latency-p99')));

    const keys = s.statuses || STATUSES;
    const over = el('section', { class: 'panel wide', id: 'chart-volume' }, el('h2', {}, 'Messages over time by status'),
      chartBox(stackedBars(s.series, keys)), colourLegend(legend(keys), keys));
    const rates = panel('Bounce and deferral rates',
      chartBox(hbars([
        { label: 'deferred', value: s.rates.deferral, color: COLORS.deferred, href: '/search?q=status:deferred' },
        { label: 'bounced', value: s.rates.bounce, color: COLORS.bounced, href: '/search?q=status:bounced' },
        { label: 'rejected', value: s.rates.reject, color: COLORS.rejected, href: '/search?q=status:rejected' },
      ], { format: fmtPct, label: 'rates', labelWidth: 110 })),
      el('h2', {}, 'Temporary (4xx) vs permanent (5xx) replies'),
      chartBox(hbars([
        { label: '4xx temporary', value: s.classes['4xx'] || 0, color: COLORS.deferred, href: '/search?q=code:4xx' },
        { label: '5xx permanent', value: s.classes['5xx'] || 0, color: COLORS.bounced, href: '/search?q=code:5xx' },
      ], { label: '4xx vs 5xx', labelWidth: 110 })));
    rates.id = 'chart-rates';
    const codeColor = c => c.startsWith('2') ? COLORS.sent : c.startsWith('4') ? COLORS.deferred : c.startsWith('5') ? COLORS.bounced : '#64748b';
    const codes = panel('Reply codes', chartBox(hbars(s.codes.map(c => ({
      label: c.key, value: c.count, color: codeColor(c.key), href: '/search?q=' + encodeURIComponent('code:' + c.key),
    })), { label: 'reply codes', labelWidth: 80 })));
    codes.id = 'chart-codes';
    const tls = panel('TLS adoption (messages)', chartBox(donut([
      { label: 'TLS', value: s.tls.yes || 0, color: COLORS.sent },
      { label: 'plain', value: s.tls.no || 0, color: COLORS.bounced },
    ], fmtPct(s.tls.ratio))));
    tls.id = 'chart-tls';
    const lat = panel('Latency percentiles (MAIL FROM to final reply)', chartBox(hbars(
      ['p50', 'p90', 'p99', 'max'].map(k => ({ label: k, value: s.latency_ms[k] || 0, color: '#0ea5e9' })),
      { format: fmtMs, label: 'latency', labelWidth: 60 })),
    el('p', { class: 'muted' }, `${fmtNum(s.latency_ms.count)} messages with a latency; ${fmtNum(s.auth.failures)} failed AUTH attempts.`));
    lat.id = 'chart-latency';
    const top = (title, list, field, id) => {
      const p = panel(title, chartBox(hbars(list.map(c => ({
        label: c.key === '' ? '<> (null sender)' : c.key, value: c.count, color: '#6366f1',
        href: '/search?q=' + encodeURIComponent(field + ':' + (c.key === '' ? '<>' : quoteValue(c.key))),
      })), { label: title })));
      p.id = id;
      return p;
    };
    root.append(over, el('div', { class: 'grid' }, rates, codes, tls, lat,
      top('Top senders', s.top_senders, 'from', 'top-senders'),
      top('Top sender domains', s.top_sender_domains, 'domain', 'top-sender-domains'),
      top('Top recipients', s.top_recipients, 'to', 'top-recipients'),
      top('Top recipient domains', s.top_recipient_domains, 'domain', 'top-recipient-domains')));
    root.setAttribute('data-ready', 'dashboard');
  }

  function resultsTable(records) {
    const tbody = el('tbody');
    for (const r of records) tbody.appendChild(resultRow(r));
    return el('table', { class: 'results' },
      el('thead', {}, el('tr', {}, ['time (UTC)', 'status', 'from', 'to', 'subject', 'reply', 'source'].map(h => el('th', {}, h)))),
      tbody);
  }
  function resultRow(r) {
    const link = r.type === 'session'
      ? el('a', { href: '/sessions/' + encodeURIComponent(r.session_id || '') }, fmtTime(r.timestamp))
      : el('a', { href: '/messages/' + encodeURIComponent(r.id) }, fmtTime(r.timestamp));
    const to = recipients(r);
    return el('tr', { 'data-id': r.id },
      el('td', { class: 'mono' }, link),
      el('td', {}, status(r.type === 'session' ? 'session' : r.status)),
      el('td', { class: 'clip' }, r.type === 'session' ? (r.helo || r.client_ip || '') : (r.mail_from === '' ? '<>' : (r.mail_from || ''))),
      el('td', { class: 'clip' }, to.join(', ')),
      el('td', { class: 'clip subject' }, r.subject || ''),
      el('td', { class: 'clip' }, codeOf(r)),
      el('td', {}, r.source || ''));
  }

  // queryError shows the query with the offending token marked.
  function queryError(q, err) {
    const box = el('div', { class: 'error qerr', role: 'alert' }, el('div', {}, err.message));
    const pos = err.body && err.body.position;
    if (pos) {
      const chars = Array.from(q);
      const start = Math.min(pos - 1, chars.length);
      const tokLen = Math.max(1, Array.from(err.body.token || ' ').length);
      const before = chars.slice(0, start).join('');
      const tok = chars.slice(start, start + tokLen).join('') || ' ';
      const after = chars.slice(start + tokLen).join('');
      box.appendChild(el('pre', {}, before, el('mark', { class: 'token' }, tok), after));
    }
    return box;
  }

  async function search(root, params) {
    const q = params.get('q') || '';
    document.title = 'smtplog — search';
    const input = el('input', { type: 'search', name: 'q', id: 'q', size: 70, placeholder: 'from:@shop.example status:deferred after:-2h', spellcheck: 'false', autocomplete: 'off' });
    input.value = q;
    root.append(el('h1', {}, 'Search'),
      el('form', { class: 'toolbar', action: '/search', method: 'get' }, input, el('button', { type: 'submit' }, 'Search'),
        el('span', { class: 'muted' }, 'from: to: domain: status: code: msgid: queue: session: ip: user: helo: tls: source: type: subject: after: before:, -negation, OR, "phrases"')));
    const out = el('div', { id: 'results' });
    root.append(out);
    let cursor = '';
    let table = null;
    const more = el('button', { class: 'secondary more', type: 'button', onclick: () => load() }, 'Load more');
    const count = el('p', { class: 'muted', id: 'result-count' });
    let n = 0;
    async function load() {
      let res;
      try {
        res = await api('/api/search?q=' + encodeURIComponent(q) + '&limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
      } catch (e) {
        clear(out).appendChild(e.status === 400 ? queryError(q, e) : errorBox(e.message));
        root.setAttribute('data-ready', 'search');
        return;
      }
      if (!table) {
        table = resultsTable([]);
        out.append(count, table, more);
      }
      const tbody = table.querySelector('tbody');
      for (const r of res.records) tbody.appendChild(resultRow(r));
      n += res.records.length;
      count.textContent = n ? `${fmtNum(n)} records${res.next_cursor ? ' so far' : ''}, newest first` : 'No records match.';
      cursor = res.next_cursor || '';
      more.hidden = !cursor;
      root.setAttribute('data-ready', 'search');
    }
    await load();
  }

  function fields(pairs) {
    const dl = el('dl', { class: 'fields' });
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
      dl.append(el('dt', {}, k), el('dd', {}, v));
    }
    return dl;
  }
  function tlsText(t) {
    if (!t) return '';
    if (!t.used) return 'no' + (t.error ? ' (' + t.error + ')' : '');
    return ['yes', t.version, t.cipher, t.sni ? 'SNI ' + t.sni : ''].filter(Boolean).join(', ');
  }
  function transcript(lines) {
    if (!lines || !lines.length) return el('p', { class: 'empty' }, 'No transcript recorded.');
    // Each reply also shows how long the server took since the command it
    // answers (the last client line of the same leg).
    const lastC = {};
    return el('div', { class: 'transcript', id: 'transcript' }, lines.map(l => {
      const leg = l.leg || 'client';
      let dt = '';
      if (l.dir === 'C') lastC[leg] = l.t_ms || 0;
      else if (lastC[leg] !== undefined) {
        const d = Math.max(0, (l.t_ms || 0) - lastC[leg]);
        dt = '+' + (d < 1 ? d.toFixed(2) + ' ms' : fmtMs(d));
        delete lastC[leg];
      }
      return el('div', { class: 'line ' + (l.dir === 'C' ? 'C' : 'S') + (l.leg === 'upstream' ? ' upstream' : '') },
        el('span', { class: 't' }, (l.t_ms || 0).toFixed(1) + ' ms'),
        el('span', { class: 'dt', title: 'reply time' }, dt),
        el('span', { class: 'd' }, (l.leg === 'upstream' ? '↑' : '') + (l.dir === 'C' ? 'C:' : 'S:')),
        el('span', { class: 'text' }, l.line));
    }));
  }

  // timeline draws trace steps on a time axis: one row per step, a dot at
  // its time, connectors between consecutive steps drawn under the labels.
  function timeline(steps) {
    const W = 1100, rowH = 32, L = 170, R = 24, T = 26;
    const times = steps.map(s => new Date(s.time).getTime()).filter(x => !isNaN(x));
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const span = Math.max(1, t1 - t0);
    const H = T + steps.length * rowH + 8;
    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'trace timeline', id: 'timeline-svg', class: 'timeline' });
    const x = t => L + (W - L - R) * (isNaN(t) ? 0 : (t - t0) / span);
    const pts = steps.map((s, i) => [x(new Date(s.time).getTime()), T + i * rowH + rowH / 2]);
    g.appendChild(svg('line', { x1: L, x2: W - R, y1: T - 8, y2: T - 8, class: 'axis' }));
    g.appendChild(svg('text', { x: L, y: T - 13 }, fmtTime(steps[0].time) + ' UTC'));
    g.appendChild(svg('text', { x: W - R, y: T - 13, 'text-anchor': 'end' }, '+' + fmtMs(span)));
    pts.forEach(([, yy]) => g.appendChild(svg('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid-line' })));
    for (let i = 1; i < pts.length; i++) {
      g.appendChild(svg('line', { x1: pts[i - 1][0], y1: pts[i - 1][1], x2: pts[i][0], y2: pts[i][1], class: 'connector' }));
    }
    steps.forEach((s, i) => {
      const [cx, yy] = pts[i];
      g.appendChild(svg('text', { x: L - 10, y: yy + 4, 'text-anchor': 'end' }, `${s.source || ''} ${s.kind || ''}`.trim()));
      g.appendChild(svg('circle', { cx, cy: yy, r: 7, fill: COLORS[s.status] || '#475569', class: 'step', 'data-status': s.status || '' },
        svg('title', {}, `${fmtTime(s.time)} ${s.summary || ''}`)));
      const label = [s.status, s.rcpt, s.smtp_response || s.summary].filter(Boolean).join(' — ');
      const short = label.length > 80 ? label.slice(0, 79) + '…' : label;
      const right = cx > W * 0.6;
      g.appendChild(svg('text', { x: right ? cx - 12 : cx + 12, y: yy + 4, 'text-anchor': right ? 'end' : 'start', class: 'label' }, short));
    });
    return g;
  }

  async function traceInto(box, id) {
    let t;
    try {
      t = await api('/api/trace/' + encodeURIComponent(id));
    } catch (e) {
      box.append(el('p', { class: 'muted' }, e.status === 501 ? 'Trace is not available on this server.' : 'Trace: ' + e.message));
      return;
    }
    const steps = (t.steps || []).filter(s => s && s.time);
    if (!steps.length) {
      box.append(el('p', { class: 'empty' }, 'The trace has no steps.'));
      return;
    }
    box.append(el('div', { class: 'chart', id: 'timeline' }, timeline(steps)),
      el('ol', { class: 'steps' }, steps.map(s => el('li', { 'data-kind': s.kind || '' },
        el('span', { class: 'when' }, fmtTime(s.time)), s.status ? status(s.status) : null, ' ',
        el('strong', {}, `${s.source || ''} ${s.kind || ''}`), ' ',
        s.record_id ? el('a', { href: '/messages/' + encodeURIComponent(s.record_id) }, s.summary || 'record') : (s.summary || ''),
        s.relay ? el('span', { class: 'muted' }, ' via ' + s.relay) : null))));
  }

  // ---- capture mode: one captured message ----

  function msgPath(id, rest) { return '/api/messages/' + encodeURIComponent(id) + (rest || ''); }
  function addrText(a) { return a ? (a.Name ? a.Name + ' <' + a.Address + '>' : a.Address) : ''; }
  function addrList(l) { return (l || []).map(addrText).join(', '); }

  // captureActions: delete, read/unread, tags.
  function captureActions(id, view) {
    let read = !!view.read;
    const msg = el('span', { class: 'muted', id: 'action-state', role: 'status' });
    const fail = e => { msg.textContent = e.message; msg.className = 'error'; };
    const readState = el('span', { class: 'badge', id: 'read-state' });
    const readBtn = el('button', { type: 'button', class: 'secondary', id: 'mark-read' });
    const showRead = () => {
      readState.textContent = read ? 'read' : 'unread';
      readState.className = 'badge ' + (read ? 'read' : 'unread');
      readBtn.textContent = read ? 'Mark unread' : 'Mark read';
    };
    showRead();
    readBtn.addEventListener('click', async () => {
      try {
        const res = await send('PUT', msgPath(id, '/read'), { read: !read });
        read = !!res.read;
        showRead();
        refreshUnread();
      } catch (e) { fail(e); }
    });
    // Opening a message marks it read, as in a mail client. A user who
    // may only read (403) leaves it as it was.
    if (!read) {
      send('PUT', msgPath(id, '/read'), { read: true }).then(res => {
        read = !!res.read;
        showRead();
        refreshUnread();
      }).catch(() => {});
    }
    // Deleting takes two clicks (no confirm(): dialogs block automation).
    const del = el('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete');
    let armed = false;
    del.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        del.textContent = 'Really delete?';
        return;
      }
      try {
        await send('DELETE', msgPath(id));
        location.assign('/');
      } catch (e) { fail(e); }
    });
    const tagList = el('span', { class: 'tags', id: 'tags' });
    const showTags = tags => {
      clear(tagList);
      for (const t of tags) tagList.appendChild(el('span', { class: 'tag' }, t));
      if (!tags.length) tagList.appendChild(el('span', { class: 'muted' }, 'no tags'));
    };
    showTags(view.tags || []);
    const input = el('input', { type: 'text', id: 'tags-input', size: 30, placeholder: 'tags, comma separated', 'aria-label': 'Tags', spellcheck: 'false' });
    input.value = (view.tags || []).join(', ');
    const form = el('form', { class: 'tag-form', id: 'tags-form' }, input, el('button', { type: 'submit', class: 'secondary', id: 'tags-save' }, 'Save tags'));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      const tags = input.value.split(',').map(x => x.trim()).filter(Boolean);
      try {
        const res = await send('PUT', msgPath(id, '/tags'), { tags });
        showTags(res.tags || []);
        input.value = (res.tags || []).join(', ');
        msg.textContent = 'Tags saved.';
        msg.className = 'muted';
      } catch (e) { fail(e); }
    });
    return el('div', { class: 'toolbar capture-actions', id: 'msg-actions' },
      readState, readBtn, del,
      el('a', { class: 'button secondary', href: msgPath(id, '/raw?dl=1'), id: 'download-eml', download: (view.queue_id || 'message') + '.eml' }, 'Download .eml'),
      tagList, form, msg);
  }

  // captureTabs: the message as sent, one tab per view.
  function captureTabs(id, view) {
    const mv = view.message || {};
    const tabs = [];
    const bar = el('div', { class: 'tabs', role: 'tablist', id: 'tabs' });
    const panes = el('div', { class: 'tab-panes' });
    function tab(key, label, build, count) {
      const pane = el('div', { class: 'tab-pane', id: 'tab-' + key, role: 'tabpanel', 'data-tab': key });
      pane.hidden = true;
      const btn = el('button', { type: 'button', class: 'tab', role: 'tab', 'data-tab': key, 'aria-selected': 'false' },
        label, count !== undefined ? el('span', { class: 'count' }, String(count)) : null);
      let built = false;
      btn.addEventListener('click', () => show(key));
      tabs.push({ key, btn, pane, open: () => { if (!built) { built = true; build(pane); } } });
      bar.appendChild(btn);
      panes.appendChild(pane);
    }
    function show(key) {
      for (const t of tabs) {
        const on = t.key === key;
        t.btn.setAttribute('aria-selected', on ? 'true' : 'false');
        t.btn.classList.toggle('current', on);
        t.pane.hidden = !on;
        if (on) t.open();
      }
    }
    if (view.html) tab('html', 'HTML', pane => htmlPane(pane, view.html));
    tab('text', 'Text', pane => {
      if (mv.text_from_html) pane.appendChild(el('p', { class: 'muted' }, 'The message has no text part: this text is derived from its HTML.'));
      pane.appendChild(mv.text ? el('pre', { class: 'body-text', id: 'text-body' }, mv.text) : el('p', { class: 'empty' }, 'No text body.'));
    });
    tab('headers', 'Headers', pane => {
      pane.appendChild(fields([
        ['From', addrText(mv.from)], ['To', addrList(mv.to)], ['Cc', addrList(mv.cc)], ['Bcc', addrList(mv.bcc)],
        ['Reply-To', addrList(mv.reply_to)], ['Return-Path', mv.return_path], ['Date', mv.date ? fmtTime(mv.date) + ' UTC' : mv.date_raw],
        ['Message-ID', mv.message_id], ['size', fmtBytes(mv.size)],
      ]));
      pane.appendChild(el('table', { class: 'headers', id: 'headers-table' },
        el('thead', {}, el('tr', {}, el('th', {}, 'name'), el('th', {}, 'value'))),
        el('tbody', {}, (mv.headers || []).map(h => el('tr', {}, el('td', { class: 'mono hname' }, h.name), el('td', { class: 'mono hvalue' }, h.value))))));
    }, (mv.headers || []).length);
    tab('raw', 'Raw', pane => rawPane(pane, id, mv.size));
    const files = (view.attachments || []).length + (view.inline || []).length;
    tab('attachments', 'Attachments', pane => attachmentsPane(pane, id, view), files);
    tab('mime', 'MIME tree', pane => {
      pane.appendChild(mv.root ? el('ul', { class: 'mime-tree', id: 'mime-tree' }, mimeNode(id, mv.root)) : el('p', { class: 'empty' }, 'No MIME structure.'));
      if ((mv.warnings || []).length) {
        pane.appendChild(el('h3', {}, 'Parser warnings'));
        pane.appendChild(el('ul', { class: 'warnings' }, mv.warnings.map(w =>
          el('li', { class: w.severe ? 'severe' : '' }, (w.part_id ? 'part ' + w.part_id + ': ' : '') + w.name + (w.detail ? ' — ' + w.detail : '')))));
      }
      if (mv.truncated) pane.appendChild(el('p', { class: 'error' }, 'A parser limit cut this message short; the raw source has every byte.'));
    });
    const checks = view.checks || [];
    tab('checks', 'HTML checks', pane => checksPane(pane, view), checks.length);
    show(view.html ? 'html' : 'text');
    return el('section', { class: 'panel wide capture', id: 'capture' }, bar, panes);
  }

  function htmlPane(pane, html) {
    const base = safeHref(html.url);
    const frame = el('iframe', { id: 'html-frame', class: 'html-frame', title: 'Message HTML (sanitised, sandboxed)', sandbox: '', referrerpolicy: 'no-referrer', loading: 'eager' });
    frame.setAttribute('src', base);
    let loads = 0;
    frame.addEventListener('load', () => frame.setAttribute('data-loaded', String(++loads)));
    const remote = (html.remote || []).length;
    const note = el('span', { class: 'muted', id: 'remote-note' },
      remote ? `${remote} remote resource${remote === 1 ? '' : 's'} blocked` : 'No remote content.');
    const load = el('button', { type: 'button', class: 'secondary', id: 'load-remote' }, 'Load remote content');
    load.addEventListener('click', () => {
      frame.setAttribute('src', base + (base.includes('?') ? '&' : '?') + 'remote=1');
      load.disabled = true;
      note.textContent = 'Remote content allowed for this view.';
    });
    const info = [fmtBytes(html.size) + ' of HTML'];
    if ((html.missing_cid || []).length) info.push(html.missing_cid.length + ' missing cid: image(s)');
    if (html.dropped_css) info.push(html.dropped_css + ' CSS rule(s) dropped');
    pane.append(el('div', { class: 'toolbar' }, load, note, el('span', { class: 'muted' }, info.join(' · '))), frame);
    if (remote) {
      pane.appendChild(el('details', { class: 'remote-list' }, el('summary', {}, 'Remote URLs'),
        el('ul', {}, html.remote.map(u => el('li', { class: 'mono' }, u)))));
    }
  }

  async function rawPane(pane, id, size) {
    const LIMIT = 2 << 20;
    pane.appendChild(el('div', { class: 'toolbar' },
      el('a', { href: msgPath(id, '/raw?dl=1'), download: 'message.eml' }, 'Download'), el('span', { class: 'muted' }, fmtBytes(size))));
    const pre = el('pre', { class: 'raw', id: 'raw-source' }, 'Loading…');
    pane.appendChild(pre);
    try {
      const resp = await fetch(msgPath(id, '/raw'), { credentials: 'same-origin' });
      if (!resp.ok) throw new Error('HTTP ' + resp.status);
      const text = await resp.text();
      pre.textContent = text.length > LIMIT ? text.slice(0, LIMIT) : text;
      if (text.length > LIMIT) pane.appendChild(el('p', { class: 'muted' }, 'Shown up to 2 MiB; download for the rest.'));
    } catch (e) {
      pre.textContent = '';
      pane.appendChild(errorBox('The raw source failed to load: ' + e.message));
    }
  }

  const RASTER = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp'];
  function attachmentsPane(pane, id, view) {
    const row = (a, inline) => {
      const href = msgPath(id, '/part/' + encodeURIComponent(a.PartID));
      const name = a.FileName || ('part ' + a.PartID);
      const ct = String(a.ContentType || '').toLowerCase();
      return el('li', { class: 'attachment', 'data-part': a.PartID },
        RASTER.includes(ct) ? el('img', { src: href, alt: name, class: 'thumb', loading: 'lazy' }) : null,
        el('div', {},
          el('a', { href, download: name, class: 'download' }, name),
          el('div', { class: 'muted' }, [ct, fmtBytes(a.Size), inline ? 'inline' + (a.ContentID ? ' cid:' + a.ContentID : '') : ''].filter(Boolean).join(' · ')),
          a.Checksums && a.Checksums.SHA256 ? el('div', { class: 'mono muted sum' }, 'SHA-256 ' + a.Checksums.SHA256) : null));
    };
    const att = view.attachments || [], inl = view.inline || [];
    if (!att.length && !inl.length) pane.appendChild(el('p', { class: 'empty' }, 'No attachments.'));
    if (att.length) pane.append(el('h3', {}, 'Attachments'), el('ul', { class: 'attachments', id: 'attachments' }, att.map(a => row(a, false))));
    if (inl.length) pane.append(el('h3', {}, 'Inline parts'), el('ul', { class: 'attachments', id: 'inline-parts' }, inl.map(a => row(a, true))));
  }

  function mimeNode(id, p) {
    const bits = [p.charset, p.encoding, fmtBytes(p.size), p.disposition, p.filename ? '“' + p.filename + '”' : '', p.content_id ? 'cid:' + p.content_id : '', p.truncated ? 'truncated' : ''].filter(Boolean);
    const kids = p.children || [];
    const label = kids.length
      ? el('span', { class: 'ct' }, p.content_type)
      : el('a', { class: 'ct', href: msgPath(id, '/part/' + encodeURIComponent(p.part_id)) }, p.content_type);
    return el('li', { 'data-part': p.part_id || '' },
      el('span', { class: 'part-id mono' }, p.part_id || 'root'), ' ', label, ' ', el('span', { class: 'muted' }, bits.join(' · ')),
      kids.length ? el('ul', {}, kids.map(k => mimeNode(id, k))) : null);
  }

  function checksPane(pane, view) {
    const checks = view.checks || [];
    const html = view.html;
    pane.appendChild(fields([
      ['HTML size', html ? fmtBytes(html.size) : 'no HTML body'],
      ['remote resources', html ? String((html.remote || []).length) : ''],
      ['missing cid: parts', html && (html.missing_cid || []).length ? html.missing_cid.join(', ') : ''],
    ]));
    if (!checks.length) {
      pane.appendChild(el('p', { class: 'empty', id: 'checks-none' }, html ? 'No findings.' : 'Nothing to check: the message has no HTML.'));
      return;
    }
    pane.appendChild(el('table', { class: 'checks', id: 'checks' },
      el('thead', {}, el('tr', {}, ['severity', 'rule', 'line', 'element', 'finding'].map(h => el('th', {}, h)))),
      el('tbody', {}, checks.map(c => el('tr', { class: 'sev-' + (c.severity || '') },
        el('td', {}, el('span', { class: 'sev ' + (c.severity || '') }, c.severity || '')), el('td', { class: 'mono' }, c.rule || ''),
        el('td', {}, c.line ? String(c.line) : ''), el('td', { class: 'mono clip' }, c.element || ''), el('td', {}, c.message || ''))))));
  }

  async function message(root, id) {
    document.title = 'smtplog — message';
    let m;
    try {
      m = await api('/api/messages/' + encodeURIComponent(id));
    } catch (e) {
      root.append(el('h1', {}, 'Message'), errorBox(e.message));
      return;
    }
    const r = m.record;
    document.title = 'smtplog — ' + (r.subject || r.message_id || 'message');
    root.append(el('h1', { id: 'subject' }, r.subject || '(no subject)'));
    if (r.source === 'capture' && r.type !== 'session') {
      let view = null;
      try {
        view = await api('/api/messages/' + encodeURIComponent(id) + '/view');
      } catch (e) {
        root.append(el('p', { class: 'muted', id: 'capture-missing' }, 'The message content is not available: ' + e.message));
      }
      if (view) root.append(captureActions(id, view), captureTabs(id, view));
    }
    const sessLink = r.session_id ? el('a', { href: '/sessions/' + encodeURIComponent(r.session_id) }, r.session_id) : '';
    root.append(el('div', { class: 'grid' },
      panel('Message', fields([
        ['status', status(r.status)], ['time', fmtTime(r.timestamp) + ' UTC'], ['source', r.source], ['host', r.host],
        ['Message-ID', r.message_id ? searchLink('msgid:' + quoteValue(r.message_id), r.message_id) : ''],
        ['queue ID', r.queue_id ? searchLink('queue:' + quoteValue(r.queue_id), r.queue_id) : ''],
        ['envelope from', r.mail_from === '' ? '<>' : r.mail_from], ['recipients', (r.rcpt_to || []).join(', ')],
        ['refused', (r.rejected_rcpt || []).map(x => x.address + ' (' + x.smtp_response + ')').join('; ')],
        ['From', r.from], ['To', (r.to || []).join(', ')], ['reply', r.smtp_response],
        ['size', r.size ? fmtNum(r.size) + ' bytes' : ''], ['latency', r.latency_ms ? fmtMs(r.latency_ms) : ''],
        ['flags', (r.flags || []).concat(r.anomalies || []).join(', ')],
      ])),
      panel('Connection', r.client_ip || r.helo || r.session_id ? '' : el('p', { class: 'empty' }, 'No connection details: this record comes from an MTA log.'), fields([
        ['session', sessLink], ['client', r.client_ip ? r.client_ip + (r.client_port ? ':' + r.client_port : '') : ''],
        ['HELO', r.helo], ['user', r.username], ['TLS', tlsText(r.tls)], ['upstream', r.upstream],
        ['upstream TLS', tlsText(r.upstream_tls)],
        ['session AUTH', m.session && m.session.auth ? `${m.session.auth.mechanism || ''} ${m.session.auth.username || ''} ${m.session.auth.result || ''}` : ''],
      ]))));
    const tbox = el('section', { class: 'panel wide', id: 'trace' }, el('h2', {}, 'Trace'));
    root.append(tbox);
    if (m.deliveries.length) {
      root.append(el('section', { class: 'panel wide' }, el('h2', {}, 'Deliveries'),
        el('table', {}, el('thead', {}, el('tr', {}, ['time', 'recipient', 'status', 'relay', 'DSN', 'reply', 'delay'].map(h => el('th', {}, h)))),
          el('tbody', {}, m.deliveries.map(d => el('tr', {},
            el('td', { class: 'mono' }, fmtTime(d.timestamp)), el('td', {}, d.rcpt), el('td', {}, status(d.status)),
            el('td', {}, d.relay || ''), el('td', {}, d.dsn || ''), el('td', {}, d.smtp_response || ''),
            el('td', {}, d.delay_s ? d.delay_s + ' s' : '')))))));
    }
    root.append(el('section', { class: 'panel wide' }, el('h2', {}, 'Transcript'), transcript(m.transcript)));
    const tid = r.message_id || r.queue_id || r.session_id;
    if (tid) await traceInto(tbox, tid);
    else tbox.append(el('p', { class: 'empty' }, 'No Message-ID, queue ID or session to trace.'));
    root.setAttribute('data-ready', 'message');
  }

  async function session(root, id) {
    document.title = 'smtplog — session';
    let s;
    try {
      s = await api('/api/sessions/' + encodeURIComponent(id));
    } catch (e) {
      root.append(el('h1', {}, 'Session'), errorBox(e.message));
      return;
    }
    const r = s.record || {};
    root.append(el('h1', {}, 'Session ', el('span', { class: 'mono' }, id)));
    root.append(el('div', { class: 'grid' }, panel('Connection', fields([
      ['start', fmtTime(r.timestamp)], ['end', fmtTime(r.end)], ['duration', r.duration_ms ? fmtMs(r.duration_ms) : ''],
      ['source', r.source], ['client', r.client_ip ? r.client_ip + (r.client_port ? ':' + r.client_port : '') : ''],
      ['server', r.server_ip ? r.server_ip + (r.server_port ? ':' + r.server_port : '') : ''],
      ['HELO', r.helo], ['TLS', tlsText(r.tls)],
      ['AUTH', r.auth ? `${r.auth.mechanism || ''} ${r.auth.username || ''} → ${r.auth.result || ''}` : ''],
      ['messages', r.messages ? String(r.messages) : ''], ['close', r.close_reason], ['reason', r.reason],
      ['errors', (r.errors || []).join('; ')], ['anomalies', (r.anomalies || []).join(', ')],
    ]))));
    root.append(el('section', { class: 'panel wide' }, el('h2', {}, 'Messages'),
      s.messages.length ? resultsTable(s.messages) : el('p', { class: 'empty' }, 'No message in this session.')));
    root.append(el('section', { class: 'panel wide' }, el('h2', {}, 'Transcript'), transcript(r.transcript)));
    root.setAttribute('data-ready', 'session');
  }

  // live is the live list of records; in capture mode it is the list of
  // captured messages, which is also the home page ("/", home true).
  function live(root, params, home) {
    document.title = home ? 'smtplog — messages' : 'smtplog — live';
    const q = params.get('q') || '';
    const input = el('input', { type: 'search', name: 'q', size: 60, placeholder: 'filter, e.g. status:deferred', spellcheck: 'false' });
    input.value = q;
    const state = el('span', { class: 'live-state off', id: 'live-state' }, 'connecting…');
    const dropped = el('span', { class: 'muted', id: 'live-dropped' });
    let paused = false;
    const pause = el('button', { type: 'button', class: 'secondary', onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; } }, 'Pause');
    const counts = el('span', { class: 'muted', id: 'capture-count' });
    root.append(el('h1', {}, home ? 'Messages' : 'Live'),
      el('form', { class: 'toolbar', action: '/live', method: 'get' }, input, el('button', { type: 'submit' }, 'Filter'), pause, state, dropped, counts));
    const errBox = el('div');
    const table = resultsTable([]);
    table.id = 'live-table';
    const tbody = table.querySelector('tbody');
    root.append(errBox, table);
    let lost = 0;
    const MAX = 300;
    // Capture mode: the list starts with the kept messages (newest first),
    // with their read state, and live arrivals link to their message page.
    let capture = false;
    const shown = new Set(); // queue IDs of captured messages in the table
    const readOf = {};
    let total = 0, unread = 0;
    const showCounts = () => {
      counts.textContent = `${fmtNum(total)} message${total === 1 ? '' : 's'}, ${fmtNum(unread)} unread`;
      showUnread(unread);
    };
    const markRow = (row, r) => {
      if (r.source !== 'capture' || r.type === 'session') return;
      row.classList.add(readOf[r.queue_id] ? 'read' : 'unread');
      if (r.queue_id) row.setAttribute('data-queue', r.queue_id);
    };
    const captureLoad = (async () => {
      let list;
      try { list = await captureList(200); } catch (e) { return; }
      if (!list) return;
      capture = true;
      for (const m of list.messages || []) readOf[m.ID] = !!m.Read;
      total = list.total || 0;
      unread = list.unread || 0;
      showCounts();
      const cq = 'type:message source:capture' + (q ? ' ' + q : '');
      let res;
      try { res = await api('/api/search?q=' + encodeURIComponent(cq) + '&limit=200'); } catch (e) { return; }
      for (const r of res.records || []) {
        if (r.queue_id && shown.has(r.queue_id)) continue;
        if (r.queue_id) shown.add(r.queue_id);
        const row = resultRow(r);
        markRow(row, r);
        tbody.appendChild(row);
      }
      root.setAttribute('data-capture', 'yes');
    })();
    // linkCaptured points a live row at its message page once the store has
    // given the record its ID.
    async function linkCaptured(row, r) {
      for (let i = 0; i < 20; i++) {
        try {
          const res = await api('/api/search?q=' + encodeURIComponent('source:capture queue:' + quoteValue(r.queue_id)) + '&limit=1');
          const got = (res.records || [])[0];
          if (got && got.id) {
            row.setAttribute('data-id', got.id);
            const a = row.querySelector('a');
            if (a) a.setAttribute('href', '/messages/' + encodeURIComponent(got.id));
            return;
          }
        } catch (e) { return; }
        await new Promise(res => setTimeout(res, 100 + 50 * i));
      }
    }
    const es = new EventSource('/api/stream' + (q ? '?q=' + encodeURIComponent(q) : ''));
    es.onopen = () => { state.className = 'live-state on'; state.textContent = 'live'; };
    es.onerror = () => {
      state.className = 'live-state off';
      state.textContent = es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…';
      if (q && es.readyState === EventSource.CLOSED) {
        // A bad filter answers 400; show why through a plain request.
        api('/api/stream?q=' + encodeURIComponent(q)).catch(e => { clear(errBox).appendChild(e.status === 400 ? queryError(q, e) : errorBox(e.message)); });
      }
    };
    es.addEventListener('record', ev => {
      if (paused) return;
      let r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      // In capture mode the list is of messages: a session that carried
      // messages is shown by them (one that carried none still shows).
      if (capture && r.type === 'session' && r.messages) return;
      const row = resultRow(r);
      // Live records are not yet addressable by store ID: link by what is known.
      const a = row.querySelector('a');
      if (a && r.type !== 'session') {
        const lq = r.message_id ? 'msgid:' + quoteValue(r.message_id) : r.session_id ? 'session:' + quoteValue(r.session_id) : '';
        a.setAttribute('href', '/search?q=' + encodeURIComponent(lq));
      }
      row.className = 'fresh';
      if (r.source === 'capture' && r.type !== 'session' && r.queue_id) {
        if (shown.has(r.queue_id)) return;
        shown.add(r.queue_id);
        markRow(row, r);
        linkCaptured(row, r);
        total++;
        unread++;
        showCounts();
      }
      tbody.insertBefore(row, tbody.firstChild);
      while (tbody.children.length > MAX) tbody.removeChild(tbody.lastChild);
    });
    es.addEventListener('dropped', ev => {
      try { lost += JSON.parse(ev.data).dropped || 0; } catch (e) { return; }
      dropped.textContent = `${fmtNum(lost)} records skipped (the view was too slow)`;
    });
    window.addEventListener('pagehide', () => es.close());
    captureLoad.then(() => {
      if (capture) {
        const delAll = el('button', { type: 'button', class: 'danger', id: 'delete-all' }, 'Delete all');
        let armed = false;
        delAll.addEventListener('click', async () => {
          if (!armed) { armed = true; delAll.textContent = 'Really delete all?'; return; }
          try { await send('DELETE', '/api/messages'); } catch (e) { clear(errBox).appendChild(errorBox(e.message)); return; }
          clear(tbody);
          shown.clear();
          total = unread = 0;
          showCounts();
          armed = false;
          delAll.textContent = 'Delete all';
        });
        root.querySelector('form.toolbar').appendChild(delAll);
      }
      root.setAttribute('data-ready', home ? 'messages' : 'live');
    });
  }

  function setNav(nav) {
    document.querySelectorAll('[data-nav]').forEach(a => { a.className = a.getAttribute('data-nav') === nav ? 'current' : ''; });
  }

  async function route() {
    const root = clear(main());
    root.removeAttribute('data-ready');
    root.removeAttribute('data-capture');
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    setNav(path === '/' ? '' : path.split('/')[1]);
    const quick = document.querySelector('.quick input');
    if (quick && path === '/search') quick.value = params.get('q') || '';
    // The home page and the list load up to 200 messages; elsewhere one
    // is enough to learn the mode and the unread count.
    captureProbe = null;
    const probe = captureList(path === '/' || path === '/live' ? 200 : 1);
    probe.then(list => { if (list) showUnread(list.unread || 0); }).catch(() => {});
    let m;
    try {
      if (path === '/') {
        // Capture mode starts at the captured messages; elsewhere at the
        // dashboard (which capture mode has at /dashboard).
        let list = null;
        try { list = await probe; } catch (e) { list = null; }
        setNav(list ? 'messages' : 'dashboard');
        return list ? live(root, params, true) : await dashboard(root, params);
      }
      if (path === '/dashboard') return await dashboard(root, params);
      if (path === '/live') return live(root, params);
      if (path === '/search') return await search(root, params);
      if ((m = path.match(/^\/messages\/([^/]+)$/))) return await message(root, decodeURIComponent(m[1]));
      if ((m = path.match(/^\/sessions\/([^/]+)$/))) return await session(root, decodeURIComponent(m[1]));
      if ((m = path.match(/^\/trace\/(.+)$/))) {
        const id = decodeURIComponent(m[1]);
        root.append(el('h1', {}, 'Trace ', el('span', { class: 'mono' }, id)));
        const box = el('section', { class: 'panel wide', id: 'trace' });
        root.append(box);
        await traceInto(box, id);
        root.setAttribute('data-ready', 'trace');
        return;
      }
      root.append(el('h1', {}, 'Not found'), el('p', {}, 'No such page.'));
    } catch (e) {
      root.append(errorBox('The page failed: ' + e.message));
    }
  }

  document.addEventListener('DOMContentLoaded', route);
  // A page restored from the back/forward cache shows the state it was
  // left in: build it again (read marks, counts, the live stream).
  window.addEventListener('pageshow', ev => { if (ev.persisted) route(); });
})();
