// Balancing algorithms end to end: real backends behind the proxy with 2 workers.

import test from 'ava';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { BACKEND_DOWN } from '../dist/src/index.js';
import { activeTotal, closed, nextMessage, openHeld, openSocket, startBackend, startProxy, waitFor, type TestBackend } from './helpers.js';

async function get(port: number, path: string, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

async function whoami(ws: WebSocket): Promise<string> {
  ws.send('whoami');
  return (await nextMessage(ws)).data.toString();
}

test('weighted-round-robin: weights 3:1 give exactly 3:1, globally across workers', async (t) => {
  const heavy = await startBackend(t, 'heavy');
  const light = await startBackend(t, 'light');
  const proxy = await startProxy(t, {
    workers: 2,
    pools: { main: { algorithm: 'weighted-round-robin', backends: [{ url: heavy.address, weight: 3 }, { url: light.address, weight: 1 }] } },
  });
  const seen: string[] = [];
  for (let i = 0; i < 40; i++) seen.push((await get(proxy.port, '/', { connection: 'close' })).body);
  t.deepEqual(tally(seen), { heavy: 30, light: 10 });
  // Smooth: the light backend never waits more than 3 picks.
  t.deepEqual(seen.slice(0, 8), ['heavy', 'heavy', 'light', 'heavy', 'heavy', 'heavy', 'light', 'heavy']);
});

test('hash by room: every member of a room lands on one backend; rooms spread', async (t) => {
  const backends = [await startBackend(t, 'a'), await startBackend(t, 'b'), await startBackend(t, 'c')];
  const proxy = await startProxy(t, {
    pools: { chat: { algorithm: 'hash', hash: { key: 'query:room' }, backends: backends.map((b) => b.address) } },
  });
  const owners = new Map<string, Set<string>>();
  const sockets = [];
  for (let room = 0; room < 12; room++) {
    for (let member = 0; member < 4; member++) {
      const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/chat?room=r${room}`);
      sockets.push(ws);
      const owner = await whoami(ws);
      owners.set(`r${room}`, (owners.get(`r${room}`) ?? new Set()).add(owner));
    }
  }
  for (const [room, set] of owners) t.is(set.size, 1, `room ${room} is on ${[...set]}`);
  const used = new Set([...owners.values()].map((s) => [...s][0]));
  t.true(used.size >= 2, 'rooms spread over backends');
  for (const ws of sockets) ws.terminate();
  await waitFor('counters back to zero', () => activeTotal(proxy, 'chat', backends) === 0);
});

test('hash with balance_factor: a hot room spills over, no backend above the bound', async (t) => {
  const backends = [await startBackend(t, 'a'), await startBackend(t, 'b'), await startBackend(t, 'c')];
  const proxy = await startProxy(t, {
    pools: { chat: { algorithm: 'hash', hash: { key: 'query:room', balance_factor: 1.25 }, backends: backends.map((b) => b.address) } },
  });
  const sockets = await openHeld(t, proxy.port, 30, backends, 30, 'chat?room=hot');
  const loads = backends.map((b) => b.openSessions());
  t.true(Math.max(...loads) <= Math.ceil((1.25 * 30) / 3), `loads ${loads}`);
  for (const ws of sockets) ws.terminate();
  await waitFor('counters back to zero', () => activeTotal(proxy, 'chat', backends) === 0);
});

test('sticky cookie: set on the first response and upgrade, names the backend, honoured while it is up', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const proxy = await startProxy(t, {
    pools: {
      main: { algorithm: 'round-robin', sticky: { cookie: 'fw' }, backends: [{ url: a.address, name: 'alpha' }, { url: b.address, name: 'beta' }] },
    },
  });
  const first = await get(proxy.port, '/');
  const cookie = String(first.headers['set-cookie']);
  t.regex(cookie, /^fw=(alpha|beta); Path=\/; HttpOnly; SameSite=Lax$/);
  t.false(cookie.includes('127.0.0.1'));
  const value = cookie.split(';')[0];
  const pinned = first.body;
  for (let i = 0; i < 6; i++) {
    const next = await get(proxy.port, '/', { cookie: `other=1; ${value}` });
    t.is(next.body, pinned);
    t.is(next.headers['set-cookie'], undefined);
  }
  // WebSocket upgrades honour it too.
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`, [], { cookie: value });
  t.is(await whoami(ws), pinned);
  ws.close();
  await closed(ws);
  // Its backend goes down: the request goes elsewhere and the client is pinned anew.
  const pinnedBackend: TestBackend = pinned === 'a' ? a : b;
  proxy.table.setState(proxy.plan.backendSlots[`main/${pinnedBackend.address}`], BACKEND_DOWN);
  const moved = await get(proxy.port, '/', { cookie: value });
  t.not(moved.body, pinned);
  t.regex(String(moved.headers['set-cookie']), /^fw=(alpha|beta);/);
  t.not(String(moved.headers['set-cookie']).split(';')[0], value);
  // A fresh upgrade gets the cookie with its 101.
  const upgrade = await new Promise<string | undefined>((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
    socket.once('upgrade', (res) => resolve(res.headers['set-cookie']?.[0]));
    socket.once('open', () => socket.close());
    socket.once('error', reject);
  });
  t.regex(String(upgrade), /^fw=(alpha|beta);/);
});

test('max_conns with a queue: extra requests wait, overflow gets 503 queue-full, waiting past the timeout 503 queue-timeout', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, {
    pools: { main: { queue: { size: 2, timeout: '3s' }, backends: [{ url: backend.address, max_conns: 2 }] } },
  });
  const slow = (ms: number) => get(proxy.port, `/slow?ms=${ms}`);
  const running = [slow(600), slow(600)];
  await waitFor('two in flight', () => activeTotal(proxy, 'main', [backend]) === 2);
  const queued = [slow(10), slow(10)];
  await waitFor('two waiting', () => proxy.table.queued(proxy.plan.poolSlots.main) === 2);
  const overflow = await get(proxy.port, '/');
  t.is(overflow.status, 503);
  t.is(overflow.headers['x-fairway-error'], 'queue-full');
  t.true(activeTotal(proxy, 'main', [backend]) <= 2);
  for (const r of await Promise.all([...running, ...queued])) t.is(r.status, 200);
  t.is(proxy.table.queued(proxy.plan.poolSlots.main), 0);

  const short = await startProxy(t, {
    pools: { main: { queue: { size: 5, timeout: '200ms' }, backends: [{ url: backend.address, max_conns: 1 }] } },
  });
  const hold = get(short.port, '/slow?ms=1000');
  await waitFor('one in flight', () => activeTotal(short, 'main', [backend]) === 1);
  const timedOut = await get(short.port, '/');
  t.is(timedOut.status, 503);
  t.is(timedOut.headers['x-fairway-error'], 'queue-timeout');
  // A WebSocket upgrade past the limit is refused with 503 too.
  const refused = await t.throwsAsync(openSocket(`ws://127.0.0.1:${short.port}/`));
  t.regex(refused!.message, /unexpected response 503/);
  t.is((await hold).status, 200);
  await waitFor('counters back to zero', () => activeTotal(short, 'main', [backend]) === 0 && short.table.queued(short.plan.poolSlots.main) === 0);
});

test('least-time: most requests go to the faster backend', async (t) => {
  const fast = await startBackend(t, 'fast');
  const slowBackend = await startBackend(t, 'slow', { delay: 150 });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { algorithm: 'least-time', least_time: { decay: '500ms' }, backends: [fast.address, slowBackend.address] } } });
  const seen: string[] = [];
  for (let round = 0; round < 20; round++) {
    const batch = await Promise.all(Array.from({ length: 4 }, () => get(proxy.port, '/')));
    seen.push(...batch.map((r) => r.body));
  }
  const counts = tally(seen);
  t.true((counts.fast ?? 0) > 2 * (counts.slow ?? 0), `counts ${JSON.stringify(counts)}`);
  t.true((counts.slow ?? 0) > 0, 'the slow backend is still tried');
});
