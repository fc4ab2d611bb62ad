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
      Object.keys(RANGES).map(k => el('a', { href: '/?range=' + k, class: k === range ? 'current' : '' }, k))),
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
    return el('div', { class: 'transcript', id: 'transcript' }, lines.map(l =>
      el('div', { class: 'line ' + (l.dir === 'C' ? 'C' : 'S') + (l.leg === 'upstream' ? ' upstream' : '') },
        el('span', { class: 't' }, (l.t_ms || 0).toFixed(1) + ' ms'),
        el('span', { class: 'd' }, (l.leg === 'upstream' ? '↑' : '') + (l.dir === 'C' ? 'C:' : 'S:')),
        el('span', { class: 'text' }, l.line))));
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

  function live(root, params) {
    document.title = 'smtplog — live';
    const q = params.get('q') || '';
    const input = el('input', { type: 'search', name: 'q', size: 60, placeholder: 'filter, e.g. status:deferred', spellcheck: 'false' });
    input.value = q;
    const state = el('span', { class: 'live-state off', id: 'live-state' }, 'connecting…');
    const dropped = el('span', { class: 'muted', id: 'live-dropped' });
    let paused = false;
    const pause = el('button', { type: 'button', class: 'secondary', onclick: () => { paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; } }, 'Pause');
    root.append(el('h1', {}, 'Live'),
      el('form', { class: 'toolbar', action: '/live', method: 'get' }, input, el('button', { type: 'submit' }, 'Filter'), pause, state, dropped));
    const errBox = el('div');
    const table = resultsTable([]);
    table.id = 'live-table';
    const tbody = table.querySelector('tbody');
    root.append(errBox, table);
    let lost = 0;
    const MAX = 300;
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
      const row = resultRow(r);
      // Live records are not yet addressable by store ID: link by what is known.
      const a = row.querySelector('a');
      if (a && r.type !== 'session') {
        const lq = r.message_id ? 'msgid:' + quoteValue(r.message_id) : r.session_id ? 'session:' + quoteValue(r.session_id) : '';
        a.setAttribute('href', '/search?q=' + encodeURIComponent(lq));
      }
      row.className = 'fresh';
      tbody.insertBefore(row, tbody.firstChild);
      while (tbody.children.length > MAX) tbody.removeChild(tbody.lastChild);
    });
    es.addEventListener('dropped', ev => {
      try { lost += JSON.parse(ev.data).dropped || 0; } catch (e) { return; }
      dropped.textContent = `${fmtNum(lost)} records skipped (the view was too slow)`;
    });
    window.addEventListener('pagehide', () => es.close());
    root.setAttribute('data-ready', 'live');
  }

  async function route() {
    const root = clear(main());
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    const nav = path === '/' ? 'dashboard' : path.split('/')[1];
    document.querySelectorAll('[data-nav]').forEach(a => { a.className = a.getAttribute('data-nav') === nav ? 'current' : ''; });
    const quick = document.querySelector('.quick input');
    if (quick && path === '/search') quick.value = params.get('q') || '';
    let m;
    try {
      if (path === '/') return await dashboard(root, params);
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
})();
