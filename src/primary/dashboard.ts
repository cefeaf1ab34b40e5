// The live dashboard page served at GET / on the admin listener: no build step, nothing external.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fairway</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
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
<div id="status">connecting…</div>
<script>
  const token = new URLSearchParams(location.search).get('token');
  const headers = token ? { authorization: 'Bearer ' + token } : {};
  const rows = document.getElementById('rows');
  const status = document.getElementById('status');
  const ms = (s) => (s === null ? '–' : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms');
  function cell(text, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    td.textContent = text;
    return td;
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
      button.onclick = () => fetch('api/backends/' + encodeURIComponent(b.id) + '/' + button.dataset.action, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' } });
      action.append(button);
      const active = cell(String(b.active), 'num active');
      const backend = cell(b.name + '  ' + b.url.replace('http://', ''));
      if (b.source) { const from = document.createElement('div'); from.className = 'note source'; from.textContent = 'from ' + b.source; backend.append(from); }
      const weight = cell(b.effective_weight === b.weight ? String(b.weight) : b.effective_weight + ' of ' + b.weight, 'num weight');
      tr.append(cell(b.pool), backend, state, barCell, active, fleetCell(b.id), weight, cell(String(b.rps), 'num'), cell(ms(b.p50), 'num'), cell(ms(b.p99), 'num'), action);
      return tr;
    }));
    status.textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  const events = new EventSource('api/events' + (token ? '?token=' + encodeURIComponent(token) : ''));
  events.onmessage = (event) => render(JSON.parse(event.data));
  events.addEventListener('fleet', (event) => {
    fleet = JSON.parse(event.data);
    renderFleet();
    render(last);
  });
  events.onerror = () => { status.textContent = 'disconnected, retrying…'; };
</script>
</body>
</html>
`;
