// DNS discovery against a DNS server of the tests' own: SRV and A/AAAA names whose records change
// while sessions stay open; failures keep the last good set; TTLs shorter than the interval.

import test from 'ava';
import { request } from 'undici';
import { WebSocket } from 'ws';
import type { Fairway } from '../dist/src/primary/fairway.js';
import { startDnsServer } from './dnsServer.js';
import { dualStackServer } from './dualStack.js';
import { openHeld, openSocket, startBackend, startProxy, waitFor, type TestBackend } from './helpers.js';

const SRV = '_chat._tcp.fairway.test';
const HOST = 'node.fairway.test';

type View = { id: string; url: string; state: string; active: number; source?: string; weight: number };
const views = (proxy: Fairway) => proxy.control.backends() as View[];
const viewOf = (proxy: Fairway, backend: TestBackend) => views(proxy).find((v) => v.url === `http://127.0.0.1:${backend.port}`);

test('SRV: 2 → 4 → 3 targets while 300 WebSocket sessions stay open; new sessions go to the new ones, the removed one drains, counts exact', async (t) => {
  const dns = await startDnsServer(t);
  const backends = await Promise.all(['b1', 'b2', 'b3', 'b4'].map((name) => startBackend(t, name)));
  const [b1, b2, b3, b4] = backends;
  dns.setAddresses(HOST, ['127.0.0.1']);
  const publish = (list: TestBackend[]) => dns.setSrv(SRV, list.map((b) => ({ target: HOST, port: b.port, weight: 1 })), 1);
  publish([b1, b2]);
  const proxy = await startProxy(t, {
    resolver: { servers: [dns.address], timeout: '1s' },
    pools: { chat: { algorithm: 'least-conn', drain: { timeout: '10m' }, backends: [{ srv: SRV, interval: '1s' }] } },
  });
  await waitFor('the two SRV targets to join', () => views(proxy).length === 2 && views(proxy).every((v) => v.state === 'up'));
  t.deepEqual(views(proxy).map((v) => v.source), [`srv ${SRV}`, `srv ${SRV}`], 'each backend names where it came from');
  const idOf = (b: TestBackend) => viewOf(proxy, b)!.id;
  t.is(idOf(b1), `chat/${SRV}/127.0.0.1:${b1.port}`, 'identity: pool, name, address and port');
  const slotOfB1 = proxy.plan.backendSlots[idOf(b1)];

  const first = await openHeld(t, proxy.port, 300, [b1, b2], 300);
  t.deepEqual([b1.openSessions(), b2.openSessions()], [150, 150]);

  // Scale out: two targets appear; the next 100 sessions go to them (least-conn, exact counts).
  publish([b1, b2, b3, b4]);
  await waitFor('four backends up', () => views(proxy).length === 4 && views(proxy).every((v) => v.state === 'up'), 30_000);
  t.is(proxy.plan.backendSlots[idOf(b1)], slotOfB1, 'a kept address keeps its slot and counters');
  const second = await openHeld(t, proxy.port, 100, backends, 400);
  t.deepEqual([b3.openSessions(), b4.openSessions()], [50, 50], 'the new sessions went to the new backends');
  t.true(first.every((ws) => ws.readyState === WebSocket.OPEN), 'no session dropped while scaling out');

  // Scale in: b2 disappears; it drains (its sessions stay), new sessions avoid it.
  publish([b1, b3, b4]);
  await waitFor('b2 to drain', () => viewOf(proxy, b2)?.state === 'draining', 30_000);
  const third = await openHeld(t, proxy.port, 60, [b1, b3, b4], 250 + 60);
  t.is(b2.openSessions(), 150, 'the removed backend took no new session and kept the ones it had');
  t.deepEqual([b1.openSessions(), b3.openSessions(), b4.openSessions()], [150, 80, 80], 'new sessions went to the least loaded kept backends');
  t.true([...first, ...second, ...third].every((ws) => ws.readyState === WebSocket.OPEN), 'no session dropped on any backend');
  for (const b of backends) t.is(viewOf(proxy, b)!.active, b.openSessions(), `${b.name}: the shared count is the backend's`);

  // Once its last session ends, the removed backend leaves the pool.
  for (const session of b2.sessions) session.close(1001, 'going away');
  await waitFor('b2 to leave the pool', () => viewOf(proxy, b2) === undefined, 30_000);
  t.is(views(proxy).length, 3);
  await waitFor('the clients of b2 to see their close', () => [...first, ...second, ...third].filter((ws) => ws.readyState === WebSocket.OPEN).length === 460 - 150);
  for (const b of [b1, b3, b4]) t.is(viewOf(proxy, b)!.active, b.openSessions());
  for (const ws of [...first, ...second, ...third]) ws.terminate();
});

test('A and AAAA: each address a backend; a failed resolution (SERVFAIL, no answer) keeps the last good set; a TTL shorter than the interval is honoured', async (t) => {
  const dns = await startDnsServer(t);
  const server = await dualStackServer(t, (family) => `api over IPv${family}`);
  const name = 'api.fairway.test';
  dns.setAddresses(name, ['127.0.0.1', '::1'], 1);
  const proxy = await startProxy(t, {
    admin: { listen: '127.0.0.1:0' },
    resolver: { servers: [dns.address], timeout: '500ms' },
    // A ten-minute interval: every re-resolution this test waits for comes from the 1 s TTL.
    pools: { api: { algorithm: 'round-robin', backends: [{ dns: name, port: server.port, interval: '10m' }] } },
  });
  await waitFor('both addresses to join', () => views(proxy).length === 2);
  t.deepEqual(views(proxy).map((v) => v.url).sort(), [`http://127.0.0.1:${server.port}`, `http://[::1]:${server.port}`]);
  const answers = new Set<string>();
  for (let i = 0; i < 10; i++) answers.add(await (await request(`http://127.0.0.1:${proxy.port}/`)).body.text());
  t.deepEqual([...answers].sort(), ['api over IPv4', 'api over IPv6'], 'requests reach both addresses');

  const status = () => proxy.control.sources().find((s) => s.pool === 'api')!;
  for (const fault of ['servfail', 'silent'] as const) {
    const failures = status().failures;
    dns.fault(fault);
    await waitFor(`a failed resolution (${fault})`, () => status().failures > failures, 30_000);
    t.is(views(proxy).length, 2, `${fault}: the last good set stays`);
    t.true(views(proxy).every((v) => v.state === 'up'));
    t.truthy(status().lastError);
    const res = await request(`http://127.0.0.1:${proxy.port}/`);
    t.is(res.statusCode, 200, `${fault}: clients see nothing of it`);
    await res.body.dump();
  }
  dns.fault(undefined);
  const metrics = await (await request(`http://127.0.0.1:${proxy.adminPort}/metrics`)).body.text();
  t.regex(metrics, new RegExp(`fairway_dns_resolutions_total\\{pool="api",name="dns ${name.replace(/\./g, '\\.')}",result="failed"\\} [1-9]`));

  // The AAAA record goes: its backend drains and, holding nothing, leaves.
  dns.setAddresses(name, ['127.0.0.1'], 1);
  await waitFor('the IPv6 backend to leave', () => views(proxy).length === 1, 30_000);
  t.is(views(proxy)[0].url, `http://127.0.0.1:${server.port}`);
  const discovery = await (await request(`http://127.0.0.1:${proxy.adminPort}/api/discovery`)).body.json();
  t.like(discovery, [{ pool: 'api', source: `dns ${name}`, backends: 1 }]);
});

test('a name with no records yet leaves its pool empty (503), and joins when the records appear', async (t) => {
  const dns = await startDnsServer(t);
  const backend = await startBackend(t, 'late');
  const name = 'late.fairway.test';
  const proxy = await startProxy(t, {
    resolver: { servers: [dns.address], timeout: '500ms' },
    pools: { late: { backends: [{ dns: name, port: backend.port, interval: '1s' }] } },
  });
  await dns.nextQueries(name, 2);
  const refused = await request(`http://127.0.0.1:${proxy.port}/`);
  t.is(refused.statusCode, 503);
  await refused.body.dump();
  dns.setAddresses(name, ['127.0.0.1']);
  await waitFor('the backend to join', () => views(proxy).length === 1, 30_000);
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  ws.send('whoami');
  t.is(String((await new Promise<Buffer>((resolve) => ws.once('message', resolve)))), 'late');
  ws.terminate();
});
