// The admin listener: every API route with auth and bad input, /metrics against real traffic,
// reload by API and SIGHUP, and the access log of the real CLI.

import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { validateConfig, ConfigError } from '../dist/src/index.js';
import { closed, freePort, nextMessage, openHeld, openSocket, runCli, START_DEADLINE, startBackend, startProxy, waitFor } from './helpers.js';

/** One admin call; every write is sent as JSON, as the API requires. */
async function api(port: number, method: string, path: string, body?: unknown, token?: string, extra: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: method as 'GET',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(method === 'GET' ? {} : { 'content-type': 'application/json' }), ...extra },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text };
}

const enc = encodeURIComponent;
const CLI = new URL('../dist/bundle/cli.js', import.meta.url).pathname;


async function whoami(ws: WebSocket): Promise<string> {
  ws.send('whoami');
  return (await nextMessage(ws)).data.toString();
}

test('backends: list, add (traffic at once), reweight, drain, undrain, remove; errors 400/404/409', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, pools: { chat: { algorithm: 'round-robin', backends: [a.address] } } });
  const admin = proxy.adminPort!;

  const listed = await api(admin, 'GET', '/api/backends');
  t.is(listed.status, 200);
  t.deepEqual(listed.body, [{ id: `chat/${a.address}`, pool: 'chat', url: `http://${a.address}`, name: proxy.config.pools.chat.backends[0].name, state: 'up', weight: 1, effective_weight: 1, active: 0, requests: 0, failures: 0 }]);

  const added = await api(admin, 'POST', '/api/pools/chat/backends', { url: `http://${b.address}`, weight: 2 });
  t.is(added.status, 201);
  t.like(added.body, { id: `chat/${b.address}`, state: 'up', weight: 2 });
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await (await request(`http://127.0.0.1:${proxy.port}/`)).body.text());
  t.deepEqual([...seen].sort(), ['a', 'b'], 'the added backend takes traffic at once');

  t.is((await api(admin, 'POST', '/api/pools/chat/backends', { url: b.address })).status, 409);
  const bad = await api(admin, 'POST', '/api/pools/chat/backends', { url: 'htp://x' });
  t.is(bad.status, 400);
  t.regex(bad.body.error, /backend\.url: expected an http\(s\) URL/);
  t.is((await api(admin, 'POST', '/api/pools/chat/backends', '{not json')).status, 400);
  t.is((await api(admin, 'POST', '/api/pools/nope/backends', { url: b.address })).status, 404);

  const idB = enc(`chat/${b.address}`);
  t.like((await api(admin, 'PATCH', `/api/backends/${idB}`, { weight: 5 })).body, { weight: 5 });
  const badWeight = await api(admin, 'PATCH', `/api/backends/${idB}`, { weight: 0 });
  t.is(badWeight.status, 400);
  t.regex(badWeight.body.error, /weight: expected a whole number from 1 to 1000, got 0/);
  t.is((await api(admin, 'PATCH', `/api/backends/${enc('chat/127.0.0.1:1')}`, { weight: 2 })).status, 404);
  t.is((await api(admin, 'GET', '/api/nothing')).status, 404);

  // Drain b: an open session stays, new ones go to a only.
  const onB = await (async () => {
    for (let i = 0; i < 4; i++) {
      const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
      if ((await whoami(ws)) === 'b') return ws;
      ws.close();
    }
    throw new Error('no session landed on b');
  })();
  t.like((await api(admin, 'POST', `/api/backends/${idB}/drain`)).body, { state: 'draining' });
  for (let i = 0; i < 6; i++) t.is(await (await request(`http://127.0.0.1:${proxy.port}/`)).body.text(), 'a');
  t.is(await whoami(onB), 'b', 'the open session on the draining backend keeps running');
  t.like((await api(admin, 'POST', `/api/backends/${idB}/undrain`)).body, { state: 'up' });

  // Remove b: drained first, gone once its last session ends.
  t.is((await api(admin, 'DELETE', `/api/backends/${idB}`)).status, 202);
  t.is((await api(admin, 'GET', `/api/backends/${idB}`)).body.state, 'draining');
  t.is(await whoami(onB), 'b');
  onB.close();
  await closed(onB);
  await waitFor('b removed', () => proxy.control.backends().length === 1);
  const pools = await api(admin, 'GET', '/api/pools');
  t.deepEqual(
    pools.body.map((p: { name: string; algorithm: string; backends: { id: string }[] }) => [p.name, p.algorithm, p.backends.map((x) => x.id)]),
    [['chat', 'round-robin', [`chat/${a.address}`]]],
  );
  // Added again later, it is a fresh member that takes traffic.
  t.is((await api(admin, 'POST', '/api/pools/chat/backends', { url: b.address })).status, 201);
  t.like((await api(admin, 'GET', `/api/backends/${idB}`)).body, { state: 'up' });
});

test('a token is required on every route when set; a non-loopback admin listener needs one', async (t) => {
  const a = await startBackend(t, 'a');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0', token: 's3cret' }, pools: { main: { backends: [a.address] } } });
  const admin = proxy.adminPort!;
  for (const [method, path] of [['GET', '/api/backends'], ['GET', '/metrics'], ['GET', '/api/events'], ['GET', '/api/history'], ['POST', '/api/reload'], ['POST', `/api/backends/${enc(`main/${a.address}`)}/drain`]]) {
    t.is((await api(admin, method, path)).status, 401, `${method} ${path} without a token`);
    t.is((await api(admin, method, path, undefined, 'wrong')).status, 401, `${method} ${path} with a wrong token`);
  }
  // The page and its charting library hold no data: served without the token, which the page asks for.
  t.is((await api(admin, 'GET', '/')).status, 200);
  t.is((await api(admin, 'GET', '/assets/uPlot.iife.min.js')).status, 200);
  t.is((await api(admin, 'GET', '/api/backends', undefined, 's3cret')).status, 200);
  t.is((await api(admin, 'GET', '/api/backends?token=s3cret')).status, 200);
  t.is(proxy.control.backends()[0].state, 'up', 'refused calls changed nothing');
  const error = t.throws(() => validateConfig({ admin: { listen: '0.0.0.0:9900' }, pools: { a: { backends: ['127.0.0.1:1'] } } }), { instanceOf: ConfigError });
  t.regex(error!.message, /admin\.token: expected a token when admin\.listen is not a loopback address \(0\.0\.0\.0\)/);
});

test('GET /api/history asked from the last point it gave carries every event logged after that point, even in the same second', async (t) => {
  const a = await startBackend(t, 'a');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, pools: { main: { backends: [a.address] } } });
  const admin = proxy.adminPort!;
  const id = `main/${a.address}`;
  type History = { points: { at: number }[]; events: { text: string }[] };
  const history = async (since: number) => (await api(admin, 'GET', `/api/history?since=${since}`)).body as History;
  let last = 0;
  // As the dashboard does: ask from the last point held; act as soon as a new point comes.
  for (const [action, state] of [['drain', 'draining'], ['undrain', 'up'], ['drain', 'draining'], ['undrain', 'up']]) {
    const deadline = Date.now() + 20_000;
    let points: History['points'] = [];
    while (points.length === 0) {
      if (Date.now() > deadline) throw new Error('timed out waiting for a new point');
      points = (await history(last)).points;
      if (points.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    last = points.at(-1)!.at;
    t.true(Math.round(last * 1000) <= Date.now(), `the point at ${last} is not in the future`);
    t.is((await api(admin, 'POST', `/api/backends/${enc(id)}/${action}`)).status, 200);
    const { events } = await history(last);
    t.true(events.some((e) => e.text === `${id} is ${state}`), `the ${action} right after the point at ${last} is in the next answer`);
  }
});

test('a web page cannot drive the admin API: writes must be JSON, a foreign Origin or Host is refused; admin.hosts adds names', async (t) => {
  const a = await startBackend(t, 'a');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0', hosts: ['lb1.internal'] }, pools: { main: { backends: [a.address] } } });
  const admin = proxy.adminPort!;
  const drain = `/api/backends/${enc(`main/${a.address}`)}/drain`;
  // What a form or a no-preflight fetch from another site sends.
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const res = await request(`http://127.0.0.1:${admin}${drain}`, { method: 'POST', headers: { 'content-type': type, origin: 'http://evil.example' }, body: 'x' });
    t.is(res.statusCode, 403, `${type} from another origin`);
    await res.body.text();
  }
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const res = await request(`http://127.0.0.1:${admin}${drain}`, { method: 'POST', headers: { 'content-type': type }, body: '{}' });
    t.is(res.statusCode, 415, `${type}, same origin`);
    t.regex(await res.body.text(), /content-type: send application\/json/);
  }
  const bare = await request(`http://127.0.0.1:${admin}/api/reload`, { method: 'POST' });
  t.is(bare.statusCode, 415, 'a write without a type');
  await bare.body.text();
  t.is((await api(admin, 'POST', drain, undefined, undefined, { origin: 'http://evil.example' })).status, 403, 'JSON from another origin');
  t.is((await api(admin, 'POST', drain, undefined, undefined, { origin: 'null' })).status, 403, 'an opaque origin');
  // DNS rebinding: a page on its own name that resolves to the listener.
  const rebound = await api(admin, 'GET', '/api/backends', undefined, undefined, { host: `evil.example:${admin}` });
  t.is(rebound.status, 403);
  t.regex(rebound.body.error, /host: evil\.example:\d+ is not a name of this admin listener/);
  t.is((await api(admin, 'GET', '/', undefined, undefined, { host: 'evil.example' })).status, 403, 'the dashboard page too');
  t.is(proxy.control.backends()[0].state, 'up', 'refused calls changed nothing');

  for (const host of [`127.0.0.1:${admin}`, `localhost:${admin}`, `[::1]:${admin}`, `LB1.internal:${admin}`]) {
    t.is((await api(admin, 'GET', '/api/backends', undefined, undefined, { host })).status, 200, host);
  }
  const own = await api(admin, 'POST', drain, undefined, undefined, { origin: `http://127.0.0.1:${admin}` });
  t.is(own.status, 200, 'a page the listener serves may write');
  t.is(proxy.control.backends()[0].state, 'draining');
});

test('a blank admin token, or one with spaces around it, is named and refused', (t) => {
  for (const token of ['   ', ' s3cret', 's3cret\t', '']) {
    const error = t.throws(() => validateConfig({ admin: { listen: '0.0.0.0:9900', token }, pools: { a: { backends: ['127.0.0.1:1'] } } }), { instanceOf: ConfigError });
    t.regex(error!.message, /admin\.token: expected a (token that neither is blank|non-empty string)/, JSON.stringify(token));
  }
  const hosts = t.throws(() => validateConfig({ admin: { hosts: ['lb1/x'] }, pools: { a: { backends: ['127.0.0.1:1'] } } }), { instanceOf: ConfigError });
  t.regex(hosts!.message, /admin\.hosts: expected a list of host names/);
});

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  if (!line) throw new Error(`no ${name}{${labels}} in metrics`);
  return Number(line.split(' ').at(-1));
}

test('/metrics: counts match real traffic across 2 workers', async (t) => {
  const a = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 2, admin: { listen: '127.0.0.1:0' }, pools: { main: { backends: [a.address] } } });
  for (let i = 0; i < 25; i++) await (await request(`http://127.0.0.1:${proxy.port}/`, { headers: { connection: 'close' } })).body.text();
  for (let i = 0; i < 3; i++) await (await request(`http://127.0.0.1:${proxy.port}/download?bytes=10`)).body.text();
  const sockets = await Promise.all(Array.from({ length: 4 }, () => openSocket(`ws://127.0.0.1:${proxy.port}/`)));
  await waitFor('sessions counted', () => proxy.table.active(proxy.plan.backendSlots[`main/${a.address}`]) === 4);
  const { body: text } = await api(proxy.adminPort!, 'GET', '/metrics');
  const labels = `pool="main",backend="${a.address}"`;
  t.is(metric(text, 'fairway_requests_total', `${labels},code="2xx"`), 28);
  t.is(metric(text, 'fairway_backend_active', labels), 4);
  t.is(metric(text, 'fairway_backend_up', labels), 1);
  t.is(metric(text, 'fairway_websocket_sessions_total', labels), 4);
  t.is(metric(text, 'fairway_upstream_duration_seconds_count', labels), 32);
  t.is(metric(text, 'fairway_upstream_duration_seconds_bucket', `${labels},le="+Inf"`), 32);
  t.true(metric(text, 'fairway_upstream_duration_seconds_sum', labels) > 0);
  t.regex(text, /# TYPE fairway_upstream_duration_seconds histogram/);
  t.regex(text, /^process_resident_memory_bytes \d+/m);
  // Every sample line follows the exposition format: name{labels} value.
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) t.regex(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? -?[\d.e+-]+|NaN$/);
  // Sessions that end are counted by how long they lasted; requests by the worker that read them.
  for (const ws of sockets) ws.close();
  await waitFor('sessions released', () => proxy.table.active(proxy.plan.backendSlots[`main/${a.address}`]) === 0);
  const after = (await api(proxy.adminPort!, 'GET', '/metrics')).body as string;
  t.is(metric(after, 'fairway_session_duration_seconds_count', labels), 4);
  t.is(metric(after, 'fairway_session_duration_seconds_bucket', `${labels},le="+Inf"`), 4);
  // One row per worker thread (native-free on Node 20 runs one). Workers publish their request
  // counts a few times a second: wait for the 32 to show, then check no more than 32 do.
  const perWorker = (text: string, name: string) => Array.from({ length: proxy.config.workers }, (_, w) => metric(text, name, `worker="${w}"`));
  const readRequests = async () => perWorker((await api(proxy.adminPort!, 'GET', '/metrics')).body as string, 'fairway_worker_requests_total').reduce((a, b) => a + b, 0);
  let read = await readRequests();
  for (const deadline = Date.now() + 20_000; read < 32 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    read = await readRequests();
  }
  t.is(read, 32, 'each request and upgrade counted once, by the worker that read it');
  t.deepEqual(perWorker(after, 'fairway_worker_active'), Array(proxy.config.workers).fill(0));
  t.regex(after, /# TYPE fairway_session_duration_seconds histogram/);
});

test('/metrics: errors by x-fairway-error code; every metric the Grafana example queries exists', async (t) => {
  const a = await startBackend(t, 'a');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, pools: { main: { backends: [a.address] } }, routes: [{ match: { path: '/api' }, pool: 'main' }] });
  for (let i = 0; i < 3; i++) {
    const res = await request(`http://127.0.0.1:${proxy.port}/nowhere`);
    t.is(res.headers['x-fairway-error'], 'no-route');
    await res.body.dump();
  }
  await (await request(`http://127.0.0.1:${proxy.port}/api`)).body.dump();
  const text = (await api(proxy.adminPort!, 'GET', '/metrics')).body as string;
  t.is(metric(text, 'fairway_errors_total', 'code="no-route"'), 3);
  t.is(metric(text, 'fairway_errors_total', 'code="no-backend"'), 0);
  const dashboard = readFileSync(new URL('../examples/grafana-dashboard.json', import.meta.url), 'utf8');
  const queried = new Set(dashboard.match(/fairway_[a-z_]+/g));
  t.true(queried.size >= 10);
  for (const name of queried) t.regex(text, new RegExp(`^${name}[{ ]`, 'm'), `${name} is in /metrics`);
  const panels = (JSON.parse(dashboard) as { panels: { targets: { expr: string }[] }[] }).panels;
  t.true(panels.length >= 8 && panels.every((p) => p.targets.length > 0));
});

test('reload by API and by SIGHUP with 1000 sessions open: backends join, leave and reweight; no session on a kept backend drops; a bad file changes nothing', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const c = await startBackend(t, 'c');
  const dir = mkdtempSync(join(tmpdir(), 'fairway-reload-'));
  const file = join(dir, 'fairway.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  const write = (backends: string) =>
    writeFileSync(file, `listen: 127.0.0.1:${port}\nworkers: 2\nadmin: { listen: 127.0.0.1:${adminPort} }\nlog: { level: info, access: false }\npools:\n  chat:\n    backends: [${backends}]\n`);
  write(`${a.address}, ${b.address}`);
  const { child, output } = await runCli(t, ['--config', file]);
  await waitFor('fairway to listen', () => output().includes('admin API, metrics and dashboard listening'), START_DEADLINE);

  const sockets = await openHeld(t, port, 1000, [a, b], 1000);
  const onA = a.openSessions();

  // Reload by API: c joins, b leaves (draining: its sessions stay until they end), a reweighted.
  write(`{ url: ${a.address}, weight: 3 }, ${c.address}`);
  t.is((await api(adminPort, 'POST', '/api/reload')).status, 200);
  const after = (await api(adminPort, 'GET', '/api/backends')).body as { id: string; state: string; weight: number; active: number }[];
  t.deepEqual(after.map((x) => [x.id, x.weight]), [[`chat/${a.address}`, 3], [`chat/${c.address}`, 1]]);
  t.is(after[0].active, onA, 'counts of kept backends survive the reload');
  t.true(sockets.every((ws) => ws.readyState === WebSocket.OPEN), 'no session dropped');
  t.is(a.openSessions(), onA, 'the kept backend still holds every session it had');
  const fresh = await openSocket(`ws://127.0.0.1:${port}/`);
  t.not(await whoami(fresh), 'b', 'no new session goes to a removed backend');

  // A bad file is refused with the field named; the running config stays.
  writeFileSync(file, `listen: 127.0.0.1:${port}\npools:\n  chat:\n    backends: [htp://x]\n`);
  const refused = await api(adminPort, 'POST', '/api/reload');
  t.is(refused.status, 400);
  t.regex(refused.body.error, /pools\.chat\.backends\[0\]/);
  child.kill('SIGHUP');
  await waitFor('the SIGHUP refusal to be logged', () => output().includes('reload refused'));
  t.is((await api(adminPort, 'GET', '/api/backends')).body.length, 2);

  // SIGHUP with a good file applies it.
  write(`${a.address}, ${b.address}, ${c.address}`);
  child.kill('SIGHUP');
  await waitFor('SIGHUP reload', () => output().split('config reloaded').length === 3);
  t.is((await api(adminPort, 'GET', '/api/backends')).body.length, 3);
  t.true(sockets.every((ws) => ws.readyState === WebSocket.OPEN), 'still no session dropped');
  t.is((await api(adminPort, 'GET', '/api/backends')).body.reduce((n: number, x: { active: number }) => n + x.active, 0), 1001, 'counts exact through both reloads');
  for (const ws of [...sockets, fresh]) ws.terminate();
  child.kill('SIGTERM');
  t.is((await once(child, 'exit'))[0], 0);
});

test('access log: one JSON line per HTTP request and per WebSocket session end', async (t) => {
  const a = await startBackend(t, 'a');
  const port = await freePort();
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', a.address, '--workers', '1']);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  await (await request(`http://127.0.0.1:${port}/download?bytes=1234`)).body.text();
  // A request fairway answers itself carries its error code.
  const dead = await request(`http://127.0.0.1:${port}/die`);
  await dead.body.text().catch(() => '');
  const ws = await openSocket(`ws://127.0.0.1:${port}/room?x=1`);
  ws.send('hello');
  await nextMessage(ws);
  ws.close(4002, 'done');
  await closed(ws);
  child.kill('SIGTERM');
  await once(child, 'exit');
  const lines = output().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const http = lines.find((l) => l.type === 'http' && l.path.startsWith('/download'));
  t.like(http, { level: 30, method: 'GET', path: '/download?bytes=1234', status: 200, backend: `http://${a.address}`, bytes: 1234, client: '127.0.0.1' });
  t.is(typeof http.duration_ms, 'number');
  t.is(http.error, undefined);
  const session = lines.find((l) => l.type === 'websocket');
  t.like(session, { path: '/room?x=1', code: 4002, backend: `http://${a.address}`, bytesIn: 5, bytesOut: 5, client: '127.0.0.1' });
  t.is(typeof session.duration_ms, 'number', 'how long the session lasted');
  const cut = lines.find((l) => l.type === 'http' && l.path === '/die');
  t.is(typeof cut?.status, 'number');
  t.is(cut?.error, 'upstream-reset');
});

test('log.format: pretty gives lines for people, json the JSON lines; --version and --help answer and exit 0', async (t) => {
  const a = await startBackend(t, 'a');
  const dir = mkdtempSync(join(tmpdir(), 'fairway-log-'));
  for (const format of ['pretty', 'json'] as const) {
    const port = await freePort();
    const file = join(dir, `${format}.yaml`);
    writeFileSync(file, `listen: 127.0.0.1:${port}\nworkers: 1\nlog: { format: ${format} }\npools:\n  main:\n    backends: [${a.address}]\n`);
    const { child, output } = await runCli(t, ['--config', file]);
    await waitFor(`fairway to listen (${format})`, () => output().includes('fairway is listening'), START_DEADLINE);
    child.kill('SIGTERM');
    await once(child, 'exit');
    const first = output().split('\n').find((line) => line.includes('fairway is listening'))!;
    if (format === 'json') t.like(JSON.parse(first), { level: 30, msg: 'fairway is listening' });
    else t.throws(() => JSON.parse(first), undefined, `not JSON: ${first}`);
  }
  const version = spawnSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' });
  t.is(version.status, 0);
  t.is(version.stdout, `fairway ${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
  const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
  t.is(help.status, 0);
  for (const flag of ['--config', '--check', '--listen', '--to', '--algorithm', '--workers', '--engine', '--admin', '--version', '--help']) t.true(help.stdout.includes(flag), flag);
});
