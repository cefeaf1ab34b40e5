// Health, failover and the lifecycle of long-lived sessions, with real backend processes that the
// tests start and kill with SIGKILL.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { closed, deadPort, freePort, openSocket, startProxy, waitFor } from './helpers.js';
import type { Fairway } from '../dist/src/index.js';

const BACKEND = new URL('../scripts/backend.mjs', import.meta.url).pathname;


interface ProcessBackend {
  name: string;
  address: string;
  child: ChildProcess;
  start(): Promise<void>;
  kill9(): Promise<void>;
  control(what: 'health' | 'errors', status: number): Promise<void>;
  sessions(): Promise<number>;
}

/** scripts/backend.mjs in its own process, on a port of its own that survives a restart. */
async function processBackend(t: ExecutionContext, name: string): Promise<ProcessBackend> {
  const port = await freePort();
  const backend: ProcessBackend = {
    name,
    address: `127.0.0.1:${port}`,
    child: undefined as unknown as ChildProcess,
    async start() {
      const child = spawn(process.execPath, [BACKEND, String(port), name], { stdio: ['ignore', 'pipe', 'inherit'] });
      backend.child = child;
      let output = '';
      child.stdout!.on('data', (d) => (output += d));
      await waitFor(`${name} to listen`, () => output.includes('listening'));
    },
    async kill9() {
      const exited = once(backend.child, 'exit');
      backend.child.kill('SIGKILL');
      await exited;
    },
    async control(what, status) {
      await (await request(`http://${backend.address}/control/${what}?status=${status}`, { method: 'POST' })).body.text();
    },
    async sessions() {
      return Number(await (await request(`http://${backend.address}/sessions`)).body.text());
    },
  };
  await backend.start();
  t.teardown(() => {
    if (backend.child.exitCode === null) backend.child.kill('SIGKILL');
  });
  return backend;
}

const slotOf = (proxy: Fairway, pool: string, b: { address: string }) => proxy.plan.backendSlots[`${pool}/${b.address}`];
const stateOf = (proxy: Fairway, pool: string, b: { address: string }) => proxy.control.view(proxy.control.find(`${pool}/${b.address}`)).state;

async function get(port: number, path = '/') {
  const res = await request(`http://127.0.0.1:${port}${path}`);
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

async function whoami(ws: WebSocket): Promise<string> {
  const reply = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
  ws.send('whoami');
  return (await reply).split(':')[0];
}

/** Opens a session and reads the greeting the backend sends first. */
async function session(port: number): Promise<{ ws: WebSocket; backend: string }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  const greeting = new Promise<string>((resolve, reject) => {
    ws.once('message', (d) => resolve(String(d)));
    setTimeout(() => reject(new Error('no greeting from the backend within 20 s')), 20_000).unref();
  });
  await once(ws, 'open');
  return { ws, backend: (await greeting).replace('connected to ', '') };
}

// Short intervals keep the tests quick; a generous timeout keeps a loaded CI machine from
// failing checks that would pass.
const HEALTH = { interval: '300ms', timeout: '1s', rise: 2, fall: 2 };

test.serial('kill -9 under HTTP and WebSocket load: only what was in flight fails, then none; it rises again', async (t) => {
  const a = await processBackend(t, 'a');
  const b = await processBackend(t, 'b');
  const proxy = await startProxy(t, { pools: { main: { health: HEALTH, backends: [a.address, b.address] } } });
  const sessions = await Promise.all(Array.from({ length: 20 }, () => session(proxy.port)));
  const onA = sessions.filter((s) => s.backend === 'a');
  t.is(onA.length, 10);
  const ends = onA.map((s) => closed(s.ws));

  // Ten clients in a loop; a is killed once 100 requests have passed, and the loop goes on for 2 s
  // after the kill.
  const errors: number[] = [];
  const kinds: string[] = [];
  let passed = 0;
  let killedAt = 0;
  let stopAt = Infinity;
  const client = async () => {
    while (Date.now() < stopAt) {
      const res = await get(proxy.port, '/slow?ms=20').catch(() => ({ status: 0, headers: {} as Record<string, unknown> }));
      if (res.status === 200) passed++;
      else {
        errors.push(Date.now());
        kinds.push(`${res.status} ${res.headers['x-fairway-error']}`);
      }
    }
  };
  const load = Promise.all(Array.from({ length: 10 }, client));
  await waitFor('100 requests through', () => passed >= 100 || errors.length > 0);
  killedAt = Date.now();
  stopAt = killedAt + 2000;
  await a.kill9();
  await load;
  t.log(kinds.join(', '));
  t.log(`${errors.length} failed requests, the last ${errors.length ? errors.at(-1)! - killedAt : 0} ms after the kill`);
  t.true(errors.length <= 10, 'no more failures than requests in flight on it');
  t.true(errors.every((at) => at >= killedAt && at - killedAt < 1000), 'failures only right after the kill');
  for (const end of await Promise.all(ends)) t.is(end.code, 1014);
  t.true(sessions.filter((s) => s.backend === 'b').every((s) => s.ws.readyState === WebSocket.OPEN));
  await waitFor('a marked down', () => stateOf(proxy, 'main', a) === 'down');
  t.is(proxy.table.active(slotOf(proxy, 'main', a)), 0);
  // The last HTTP responses may reach their clients a moment before the proxy counts them done.
  const onB = await b.sessions();
  await waitFor('b counted exactly at its sessions', () => proxy.table.active(slotOf(proxy, 'main', b)) === onB);
  t.is(proxy.table.active(slotOf(proxy, 'main', b)), onB);

  await a.start();
  await waitFor('a up again after rise checks', () => stateOf(proxy, 'main', a) === 'up');
  const fresh = await Promise.all(Array.from({ length: 10 }, () => session(proxy.port)));
  t.true(fresh.some((s) => s.backend === 'a'), 'a takes sessions again');
  for (const s of [...sessions, ...fresh]) s.ws.terminate();
  await waitFor('counters back to zero', () => proxy.table.active(slotOf(proxy, 'main', a)) + proxy.table.active(slotOf(proxy, 'main', b)) === 0);
});

test.serial('a backend answering 500 on /health is taken out and put back; all down gives 503 at once', async (t) => {
  const a = await processBackend(t, 'a');
  const b = await processBackend(t, 'b');
  const proxy = await startProxy(t, { pools: { main: { health: HEALTH, backends: [a.address, b.address] } } });
  await a.control('health', 500);
  await waitFor('a down', () => stateOf(proxy, 'main', a) === 'down');
  for (let i = 0; i < 6; i++) t.is((await get(proxy.port)).body, 'hello from b: GET /\n');
  await b.control('health', 503);
  await waitFor('b down', () => stateOf(proxy, 'main', b) === 'down');
  const refused = await get(proxy.port);
  t.is(refused.status, 503);
  t.is(refused.headers['x-fairway-error'], 'no-backend');
  const upgrade = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/`));
  t.regex(upgrade!.message, /unexpected response 503/);
  await a.control('health', 200);
  await waitFor('a back up', () => stateOf(proxy, 'main', a) === 'up');
  t.is((await get(proxy.port)).body, 'hello from a: GET /\n');
});

test.serial('outlier ejection on 5xx, half-open trial, longer ejection when the trial fails, back for good', async (t) => {
  const a = await processBackend(t, 'a');
  const b = await processBackend(t, 'b');
  const proxy = await startProxy(t, {
    workers: 1,
    pools: { main: { algorithm: 'round-robin', outlier: { consecutive_5xx: 3, base_ejection: '1500ms' }, backends: [a.address, b.address] } },
  });
  await a.control('errors', 500);
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await get(proxy.port)).status);
  await waitFor('a ejected', () => stateOf(proxy, 'main', a) === 'ejected');
  const ejectedAt = Date.now();
  t.is(Number(proxy.table.ejections(slotOf(proxy, 'main', a))), 1);
  for (let i = 0; i < 6; i++) t.is((await get(proxy.port)).status, 200, 'only b while a is out');
  // Readmitted on trial; one more failure sends it out again, for twice as long.
  await waitFor('a on trial', () => stateOf(proxy, 'main', a) === 'up');
  // Generous bounds: the test sees each change up to a poll late under load.
  t.true(Date.now() - ejectedAt >= 1000, 'out for about base_ejection (1500 ms)');
  for (let i = 0; i < 2; i++) await get(proxy.port);
  await waitFor('a ejected again', () => stateOf(proxy, 'main', a) === 'ejected');
  const again = Date.now();
  t.is(Number(proxy.table.ejections(slotOf(proxy, 'main', a))), 2);
  await a.control('errors', 0);
  await waitFor('a readmitted', () => stateOf(proxy, 'main', a) === 'up');
  t.true(Date.now() - again >= 2000, 'the second ejection lasted longer than the base time (3000 ms)');
  for (let i = 0; i < 6; i++) t.is((await get(proxy.port)).status, 200);
  t.is(stateOf(proxy, 'main', a), 'up');
  t.true(statuses.filter((s) => s === 500).length >= 3);
});

test.serial('retries: connect failures go to another backend (HTTP and upgrades); bodies are not replayed', async (t) => {
  const live = await processBackend(t, 'live');
  const dead = { address: `127.0.0.1:${await deadPort(t)}` };
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, pools: { main: { algorithm: 'round-robin', outlier: { consecutive_failures: 0 }, backends: [dead.address, live.address] } } });
  for (let i = 0; i < 6; i++) t.is((await get(proxy.port)).status, 200);
  t.true(Number(proxy.table.retries(slotOf(proxy, 'main', dead))) >= 3);
  const posts = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const res = await request(`http://127.0.0.1:${proxy.port}/`, { method: 'POST', body: 'payload' });
      await res.body.text();
      return res.statusCode;
    }),
  );
  t.true(posts.includes(502) && posts.includes(200), `POSTs with a body: ${posts}`);
  for (let i = 0; i < 4; i++) {
    const { ws, backend } = await session(proxy.port);
    t.is(backend, 'live');
    ws.close();
  }
  const metrics = await (await request(`http://127.0.0.1:${proxy.adminPort}/metrics`)).body.text();
  t.regex(metrics, new RegExp(`fairway_retries_total\\{pool="main",backend="${dead.address}"\\} [1-9]`));
});

test.serial('drain: sessions stay until drain.timeout, then close with 1001 spread over the window', async (t) => {
  const a = await processBackend(t, 'a');
  const b = await processBackend(t, 'b');
  const proxy = await startProxy(t, {
    workers: 2,
    pools: { main: { drain: { timeout: '500ms', window: '1500ms', rate: '100/s' }, backends: [a.address, b.address] } },
  });
  const sessions = await Promise.all(Array.from({ length: 40 }, () => session(proxy.port)));
  const onA = sessions.filter((s) => s.backend === 'a');
  const closedAt: number[] = [];
  const codes: number[] = [];
  for (const s of onA) s.ws.once('close', (code) => (closedAt.push(Date.now()), codes.push(code)));
  const drainedAt = Date.now();
  proxy.control.drain(`main/${a.address}`);
  const fresh = await Promise.all(Array.from({ length: 6 }, () => session(proxy.port)));
  t.true(fresh.every((s) => s.backend === 'b'), 'a draining backend takes no new session');
  await waitFor('every session on a closed', () => closedAt.length === onA.length);
  t.true(codes.every((c) => c === 1001));
  const first = Math.min(...closedAt) - drainedAt;
  const last = Math.max(...closedAt) - drainedAt;
  t.log(`closes from ${first} ms to ${last} ms after the drain`);
  t.true(first >= 450, 'none before the drain timeout');
  t.true(last - first >= 500, 'spread over the window, not all at once');
  t.true(last <= 500 + 1500 + 800, 'within the window');
  t.true(sessions.filter((s) => s.backend === 'b').every((s) => s.ws.readyState === WebSocket.OPEN));
  await waitFor('a empty', () => proxy.table.active(slotOf(proxy, 'main', a)) === 0);
  for (const s of [...sessions, ...fresh]) s.ws.terminate();
});

test.serial('rebalancing brings a skewed pool within max_skew at the rate bound, newest first', async (t) => {
  const a = await processBackend(t, 'a');
  const b = await processBackend(t, 'b');
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, pools: { main: { rebalance: { max_skew: 1.25, rate: '20/s' }, backends: [a.address] } } });
  // Clients that reconnect when told to (1012), as chat clients do.
  const clients: { ws: WebSocket; backend: string }[] = [];
  const shed: number[] = [];
  const connectClient = async (): Promise<void> => {
    const s = await session(proxy.port);
    clients.push(s);
    s.ws.once('close', (code) => {
      if (code !== 1012) return;
      shed.push(Date.now());
      void connectClient();
    });
  };
  for (let i = 0; i < 40; i++) await connectClient();
  t.true(clients.every((c) => c.backend === 'a'));
  // Scale out: b joins empty. a holds 40, the average is 20, the bound 25.
  const startedAt = Date.now();
  proxy.control.addBackend('main', { url: b.address });
  const slotA = slotOf(proxy, 'main', a);
  const slotB = slotOf(proxy, 'main', b);
  await waitFor('a within max_skew', () => proxy.table.active(slotA) <= 25 && proxy.table.active(slotA) + proxy.table.active(slotB) === 40);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const seconds = (Math.max(...shed) - startedAt) / 1000;
  t.log(`${shed.length} sessions shed over ${seconds.toFixed(2)} s; a=${proxy.table.active(slotA)} b=${proxy.table.active(slotB)}`);
  t.is(shed.length, 15, 'exactly the excess, no more');
  t.true(shed.length <= 20 * seconds + 20, 'no faster than the rate allows (20/s plus one second of burst)');
  t.true(seconds >= 0.4, 'gradual, not all at once');
  t.is(Number(proxy.table.sheds(slotA)), 15);
  t.is(proxy.table.active(slotA), await a.sessions());
  t.is(proxy.table.active(slotB), await b.sessions());
  for (const c of clients) c.ws.removeAllListeners('close').terminate();
});

test.serial('check types: http (status range), tcp and websocket, each against a live and a dead backend', async (t) => {
  const { runCheck } = await import('../dist/src/primary/healthChecks.js');
  const live = await processBackend(t, 'live');
  const [host, port] = live.address.split(':');
  const dead = await deadPort(t);
  const backend = (p: number) => ({ id: `p/${host}:${p}`, name: 'x', pool: 'p', origin: `http://${host}:${p}`, host, port: p, weight: 1, maxConns: 0 });
  const health = (type: 'http' | 'tcp' | 'websocket', expect: [number, number] = [200, 399]) => ({ type, path: '/health', interval: 1000, timeout: 300, rise: 1, fall: 1, expectStatus: expect, degradedWeight: 0.5 });
  for (const type of ['http', 'tcp', 'websocket'] as const) {
    t.true((await runCheck(backend(Number(port)), health(type))).passed, `${type} passes on a live backend`);
    t.false((await runCheck(backend(dead), health(type))).passed, `${type} fails on a dead port`);
  }
  await live.control('health', 500);
  t.false((await runCheck(backend(Number(port)), health('http'))).passed);
  t.true((await runCheck(backend(Number(port)), health('http', [500, 500]))).passed, 'expect_status decides');
});

test.serial('an upgrade the backend fails with a 5xx is tried on another backend; a 4xx goes to the client', async (t) => {
  const failing = await processBackend(t, 'failing');
  const live = await processBackend(t, 'live');
  await failing.control('errors', 503);
  const proxy = await startProxy(t, { pools: { main: { algorithm: 'round-robin', outlier: { consecutive_failures: 0 }, backends: [failing.address, live.address] } } });
  for (let i = 0; i < 4; i++) {
    const { ws, backend } = await session(proxy.port);
    t.is(backend, 'live');
    ws.close();
  }
  await failing.control('errors', 403);
  const answers = await Promise.all(Array.from({ length: 4 }, () => openSocket(`ws://127.0.0.1:${proxy.port}/`).then(() => 'open', (err: Error) => err.message)));
  t.true(answers.includes('unexpected response 403'), `answers ${answers}`);
  await waitFor('counters back to zero', () => proxy.table.active(slotOf(proxy, 'main', failing)) === 0);
});
