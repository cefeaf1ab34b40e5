// The live dashboard page served at GET / on the admin listener: the backends' table, charts of the
// last 15 minutes (uPlot, served from the package), workers and events; no build step, nothing external.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fairway</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="assets/uPlot.min.css">
<script src="assets/uPlot.iife.min.js"></script>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .sub { color: #667; margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 2px #0001; }
  th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid #eceef2; white-space: nowrap; }
  th { font-weight: 600; color: #556; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { background: #eef1f6; border-radius: 3px; height: 14px; width: 260px; }
  .fill { background: #3b7ddd; height: 100%; border-radius: 3px; transition: width .3s; }
  .state { padding: 2px 8px; border-radius: 10px; font-size: 12px; }
  .up { background: #dcf5e3; color: #1b7a3a; } .draining { background: #fff1cc; color: #8a6200; }
  .down, .ejected { background: #fde0e0; color: #a12020; }
  button { font: inherit; padding: 3px 10px; border: 1px solid #ccd; border-radius: 4px; background: #fff; cursor: pointer; }
  .note { color: #778; font-size: 11px; margin-top: 2px; }
  #status { margin-top: 10px; color: #667; font-size: 12px; }
  h2 { font-size: 14px; margin: 22px 0 8px; color: #445; }
  #charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 12px; }
  .chart { background: #fff; box-shadow: 0 1px 2px #0001; padding: 8px; }
  .chart h3 { font-size: 12px; margin: 0 0 4px; color: #556; font-weight: 600; }
  #events li { font-size: 12px; color: #445; } #events time { color: #889; margin-right: 6px; }
  #result.error { color: #a12020; } #result { margin: 8px 0; min-height: 1.4em; }
  #fleet { margin-bottom: 12px; } .fleet-col { display: none; } body.fleet .fleet-col { display: table-cell; }
</style>
</head>
<body>
<h1>fairway</h1>
<div class="sub">Active sessions per backend, live. Bars compare backends within the page.</div>
<div id="fleet" hidden><span class="state" id="fleet-state"></span> <span id="fleet-text"></span></div>
<table>
  <thead><tr><th>Pool</th><th>Backend</th><th>State</th><th>Active sessions</th><th class="num">Active</th><th class="num fleet-col">Fleet</th><th class="num">Weight</th><th class="num">Req/s</th><th class="num">p50</th><th class="num">p99</th><th></th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<div id="result" role="status"></div>
<div id="status">connecting…</div>
<h2>Last 15 minutes</h2>
<div id="charts"></div>
<h2>Worker threads</h2>
<table><thead><tr><th>Worker</th><th class="num">Active</th><th>Share</th><th class="num">Req/s</th></tr></thead><tbody id="workers"></tbody></table>
<h2>Events</h2>
<ul id="events"></ul>
<script>
  // The admin token, when the listener has one: from ?token=, else asked once and kept for the tab.
  let token = new URLSearchParams(location.search).get('token') || sessionStorage.getItem('fairway-token');
  const auth = () => (token ? { authorization: 'Bearer ' + token } : {});
  const rows = document.getElementById('rows');
  const status = document.getElementById('status');
  const result = document.getElementById('result');
  const ms = (s) => (s === null ? '–' : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms');
  function cell(text, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }
  function show(text, failed) {
    result.textContent = text;
    result.className = failed ? 'error' : '';
  }
  /** An admin call: asks for the token once if the listener wants one; the answer or its error. */
  async function api(method, path, body) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await fetch(path, { method, headers: { ...auth(), ...(method === 'GET' ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
      if (res.status === 401 && attempt === 0) {
        const given = prompt('Admin token');
        if (!given) throw new Error('an admin token is needed');
        token = given;
        sessionStorage.setItem('fairway-token', token);
        connect();
        continue;
      }
      const answer = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(answer.error || res.status + ' ' + res.statusText);
      return answer;
    }
    throw new Error('the token was refused');
  }
  /** An action on a backend: confirmed first, its result shown. */
  async function act(b, what, body, question) {
    if (!confirm(question)) return;
    try {
      const after = await api(what === 'weight' ? 'PATCH' : 'POST', 'api/backends/' + encodeURIComponent(b.id) + (what === 'weight' ? '' : '/' + what), body);
      show(b.id + ': ' + what + ' done, now ' + after.state + ', weight ' + after.weight);
    } catch (err) {
      show(b.id + ': ' + what + ' failed: ' + err.message, true);
    }
  }
  let fleet = null;
  let last = [];
  function renderFleet() {
    const panel = document.getElementById('fleet');
    if (!fleet) return;
    document.body.classList.add('fleet');
    panel.hidden = false;
    const badge = document.getElementById('fleet-state');
    badge.className = 'state ' + (fleet.degraded ? 'down' : 'up');
    badge.textContent = fleet.degraded ? 'degraded' : 'shared';
    document.getElementById('fleet-text').textContent = 'fleet: this is ' + fleet.name + '; ' + fleet.instances.length + ' instance(s) live: ' + fleet.instances.join(', ') + (fleet.degraded ? ' (as last seen; picks use local counts)' : '');
  }
  function fleetCell(id) {
    const entry = fleet && fleet.backends.find((x) => x.id === id);
    const td = cell(entry ? String(entry.total) : '–', 'num fleet-col fleet-total');
    if (entry) td.title = Object.entries(entry.instances).map(([name, n]) => name + ': ' + n).join(', ');
    return td;
  }
  function render(backends) {
    last = backends;
    const most = Math.max(1, ...backends.map((b) => b.active));
    rows.replaceChildren(...backends.map((b) => {
      const tr = document.createElement('tr');
      tr.dataset.id = b.id;
      const state = cell(''); const badge = document.createElement('span');
      badge.className = 'state ' + b.state; badge.textContent = b.state; state.append(badge);
      // Why a check failed or found it degraded, and what its agent said.
      const notes = [b.check, b.agent && ('agent: ' + b.agent.mode + (b.agent.up ? '' : ', down') + ', ' + b.agent.percent + '%')].filter(Boolean);
      if (notes.length) { badge.title = notes.join('; '); const note = document.createElement('div'); note.className = 'note check'; note.textContent = notes.join('; '); state.append(note); }
      const barCell = cell(''); const bar = document.createElement('div'); bar.className = 'bar';
      const fill = document.createElement('div'); fill.className = 'fill'; fill.style.width = (100 * b.active / most) + '%';
      bar.append(fill); barCell.append(bar);
      const action = cell(''); const button = document.createElement('button');
      const draining = b.state === 'draining';
      button.textContent = draining ? 'Undrain' : 'Drain';
      button.dataset.action = draining ? 'undrain' : 'drain';
      button.onclick = () => act(b, button.dataset.action, undefined, (draining ? 'Undrain ' : 'Drain ') + b.id + '?' + (draining ? '' : " It takes no new sessions; open ones stay until the pool's drain timeout."));
      const reweigh = document.createElement('button');
      reweigh.textContent = 'Weight'; reweigh.dataset.action = 'weight';
      reweigh.onclick = () => {
        const answer = prompt('New weight for ' + b.id + ' (1–1000)', String(b.weight));
        if (answer === null) return;
        act(b, 'weight', { weight: /^[0-9]+$/.test(answer.trim()) ? Number(answer) : answer }, 'Set the weight of ' + b.id + ' to ' + answer + '?');
      };
      action.append(button, ' ', reweigh);
      const active = cell(String(b.active), 'num active');
      const backend = cell(b.name + '  ' + b.url.replace('http://', ''));
      if (b.source) { const from = document.createElement('div'); from.className = 'note source'; from.textContent = 'from ' + b.source; backend.append(from); }
      const weight = cell(b.effective_weight === b.weight ? String(b.weight) : b.effective_weight + ' of ' + b.weight, 'num weight');
      tr.append(cell(b.pool), backend, state, barCell, active, fleetCell(b.id), weight, cell(String(b.rps), 'num'), cell(ms(b.p50), 'num'), cell(ms(b.p99), 'num'), action);
      return tr;
    }));
    status.textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  let events;
  function connect() {
    events?.close();
    events = new EventSource('api/events' + (token ? '?token=' + encodeURIComponent(token) : ''));
    events.onmessage = (event) => render(JSON.parse(event.data));
    events.addEventListener('fleet', (event) => {
      fleet = JSON.parse(event.data);
      renderFleet();
      render(last);
    });
    events.onerror = () => { status.textContent = 'disconnected, retrying…'; };
  }
  connect();

  // ---- charts of the last 15 minutes, from GET /api/history, one point a second ----
  const COLORS = ['#3b7ddd', '#e0793a', '#2f9e5b', '#b8447a', '#7a5bd6', '#c2a000', '#2aa5b5', '#8a6d3b'];
  const history = { points: [], events: [], workers: 0 };
  const charts = {};
  const ids = () => [...new Set(history.points.flatMap((p) => Object.keys(p.backends)))].sort();
  const codes = () => [...new Set(history.points.flatMap((p) => Object.keys(p.errors)))].sort();
  /** Each chart: its title and its series as [label, value of a point]. */
  const CHARTS = {
    active: ['Active sessions per backend', () => ids().map((id) => [id, (p) => p.backends[id]?.active ?? null])],
    sessions: ['New sessions and closes per second', () => [['opened', (p) => p.opened], ['closed', (p) => p.closed]]],
    rps: ['Requests per second per backend', () => ids().map((id) => [id, (p) => p.backends[id]?.rps ?? null])],
    errors: ['Errors per second by x-fairway-error', () => (codes().length ? codes() : ['none']).map((code) => [code, (p) => p.errors[code] ?? 0])],
    fleetInstances: ['Fleet: active per instance, and summed', () => fleetNames().map((name) => [name, name === 'fleet total' ? (p) => (p.fleet ? Object.values(p.fleet.instances).reduce((a, b) => a + b, 0) : null) : (p) => p.fleet?.instances[name] ?? null])],
    fleetBackends: ['Fleet: active per backend over every instance', () => ids().map((id) => [id, (p) => p.fleet?.backends[id] ?? null])],
    fleetRps: ['Fleet: requests per second per instance, and summed', () => fleetRates((r) => r.rps)],
    fleetErrors: ['Fleet: errors per second per instance, and summed', () => fleetRates((r) => r.errors)],
    fleetLatency: ['Fleet: p99 latency per instance, and over the fleet (ms)', () => fleetRates((r) => nullable(r.p99))],
    latency: ['p50 / p99 latency per backend (ms)', () => ids().flatMap((id) => [[id + ' p50', (p) => nullable(p.backends[id]?.p50)], [id + ' p99', (p) => nullable(p.backends[id]?.p99)]])],
  };
  const fleetNames = () => [...new Set(history.points.flatMap((p) => Object.keys(p.fleet?.instances ?? {}))), 'fleet total'];
  /** A series per instance and one for the fleet, of value(rates) (a gap where an instance published none). */
  const fleetRates = (value) => fleetNames().map((name) => [name, (p) => {
    const rates = name === 'fleet total' ? p.fleet?.total : p.fleet?.rates?.[name];
    return rates ? value(rates) : null;
  }]);
  const nullable = (s) => (s === null || s === undefined ? null : s * 1000);
  // The events as vertical marks on every chart.
  const marks = { hooks: { draw: [(u) => {
    const { ctx } = u;
    ctx.save();
    for (const e of history.events) {
      const x = u.valToPos(e.at / 1000, 'x', true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.strokeStyle = e.kind === 'down' || e.kind === 'ejected' || e.kind === 'worker-restart' ? '#d04040' : '#c9a227';
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  }] } };
  function draw() {
    const x = history.points.map((p) => p.at);
    const inFleet = history.points.some((p) => p.fleet);
    for (const [key, [title, seriesOf]] of Object.entries(CHARTS)) {
      if (key.startsWith('fleet') && !inFleet) continue;
      const series = seriesOf();
      const data = [x, ...series.map(([, value]) => history.points.map(value))];
      const shape = series.map(([label]) => label).join('|');
      let chart = charts[key];
      if (!chart || chart.shape !== shape) {
        chart?.plot.destroy();
        let box = document.getElementById('chart-' + key);
        if (!box) {
          box = document.createElement('div'); box.className = 'chart'; box.id = 'chart-' + key;
          const h = document.createElement('h3'); h.textContent = title; box.append(h);
          document.getElementById('charts').append(box);
        }
        const opts = { width: 440, height: 180, plugins: [marks], series: [{}, ...series.map(([label], i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))], axes: [{}, { size: 50 }], legend: { live: false } };
        chart = charts[key] = { shape, plot: new uPlot(opts, data, box) };
      } else chart.plot.setData(data);
    }
  }
  function renderWorkers() {
    const p = history.points.at(-1);
    if (!p) return;
    const most = Math.max(1, ...p.workers.active);
    document.getElementById('workers').replaceChildren(...p.workers.active.map((n, w) => {
      const tr = document.createElement('tr');
      const barCell = cell(''); const bar = document.createElement('div'); bar.className = 'bar';
      const fill = document.createElement('div'); fill.className = 'fill'; fill.style.width = (100 * n / most) + '%';
      bar.append(fill); barCell.append(bar);
      tr.append(cell('worker ' + w), cell(String(n), 'num worker-active'), barCell, cell(String(p.workers.rps[w]), 'num worker-rps'));
      return tr;
    }));
  }
  function renderEvents() {
    document.getElementById('events').replaceChildren(...history.events.slice(-30).reverse().map((e) => {
      const li = document.createElement('li'); li.className = 'event ' + e.kind;
      const time = document.createElement('time'); time.textContent = new Date(e.at).toLocaleTimeString();
      li.append(time, e.text);
      return li;
    }));
  }
  async function poll() {
    try {
      const since = history.points.at(-1)?.at ?? 0;
      const answer = await api('GET', 'api/history?since=' + since);
      history.workers = answer.workers;
      history.points.push(...answer.points);
      if (history.points.length > 900) history.points.splice(0, history.points.length - 900);
      const known = new Set(history.events.map((e) => e.at + e.text));
      history.events.push(...answer.events.filter((e) => !known.has(e.at + e.text)));
      draw();
      renderWorkers();
      renderEvents();
    } catch (err) {
      show('history: ' + err.message, true);
    }
    setTimeout(poll, 1000);
  }
  poll();
  window.fairway = { history, charts };
</script>
</body>
</html>
`;
