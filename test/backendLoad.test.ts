// Backends that say how loaded they are: JSON health bodies with thresholds (unhealthy, degraded)
// and HAProxy agent checks (weight percentage, drain, ready, up, down), measured over real picks.

import { createServer } from 'node:http';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import { WebSocketServer } from 'ws';
import type { Fairway } from '../dist/src/primary/fairway.js';
import { dualStackAgent, dualStackServer } from './dualStack.js';
import { openHeld, startProxy, waitFor } from './helpers.js';

interface LoadBackend {
  name: string;
  address: string;
  /** WebSocket sessions open on it. */
  sessions(): number;
  /** What /health answers now. */
  health: string;
  /** /health requests served. */
  checks: number;
}

/** A backend whose /health body the test sets; every other path answers its name. */
async function loadBackend(t: ExecutionContext, name: string): Promise<LoadBackend> {
  const backend: LoadBackend = { name, address: '', sessions: () => wss.clients.size, health: JSON.stringify({ cpu_usage: 10, memory_usage: 10, status: 'ok' }), checks: 0 };
  const server = createServer((req, res) => {
    if (req.url === '/health') {
      backend.checks++;
      res.setHeader('content-type', 'application/json');
      return void res.end(backend.health);
    }
    res.setHeader('x-backend', name);
    res.end(name);
  });
  server.keepAliveTimeout = 500;
  const wss = new WebSocketServer({ server });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  backend.address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  t.teardown(() => {
    for (const client of wss.clients) client.terminate();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return backend;
}

type View = { url: string; state: string; weight: number; effective_weight: number; check?: string; agent?: { mode: string; up: boolean; percent: number } };
const viewAt = (proxy: Fairway, url: string) => (proxy.control.backends() as View[]).find((v) => v.url === url)!;
const viewOf = (proxy: Fairway, b: LoadBackend) => viewAt(proxy, `http://${b.address}`);

/** Who answers `count` sequential requests, by body. */
async function spread(port: number, count: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const res = await request(`http://127.0.0.1:${port}/`);
    const body = await res.body.text();
    seen[body] = (seen[body] ?? 0) + 1;
  }
  return seen;
}

const JSON_HEALTH = {
  interval: '100ms',
  timeout: '2s',
  rise: 2,
  fall: 2,
  json: { unhealthy: { cpu_usage: '> 90', memory_usage: '> 95' }, degraded: { status: 'degraded' } },
  degraded_weight: 0.5,
};

test('JSON health: cpu 95 takes a backend out after `fall` checks and back after `rise`; the reason is in the admin API', async (t) => {
  const a = await loadBackend(t, 'a');
  const b = await loadBackend(t, 'b');
  const proxy = await startProxy(t, { pools: { main: { algorithm: 'round-robin', health: JSON_HEALTH, backends: [a.address, b.address] } } });
  await waitFor('first checks', () => a.checks >= 1 && b.checks >= 1);
  t.is(viewOf(proxy, a).state, 'up');

  a.health = JSON.stringify({ cpu_usage: 95, memory_usage: 10, status: 'ok' });
  const before = a.checks;
  await waitFor('a to go down', () => viewOf(proxy, a).state === 'down');
  t.true(a.checks - before >= 2, 'down only after `fall` failed checks');
  t.regex(viewOf(proxy, a).check!, /cpu_usage > 90 \(is 95\)/);
  t.deepEqual(await spread(proxy.port, 10), { b: 10 }, 'no request goes to a while it is down');

  a.health = JSON.stringify({ cpu_usage: 12, memory_usage: 10, status: 'ok' });
  const down = a.checks;
  await waitFor('a to come back', () => viewOf(proxy, a).state === 'up');
  t.true(a.checks - down >= 2, 'up only after `rise` passed checks');
  t.is(viewOf(proxy, a).check, undefined, 'a plain pass leaves no reason');
});

test('JSON health: a degraded backend keeps degraded_weight of its weight, measured over weighted round robin and least-conn picks', async (t) => {
  const a = await loadBackend(t, 'a');
  const b = await loadBackend(t, 'b');
  a.health = JSON.stringify({ cpu_usage: 50, memory_usage: 10, status: 'degraded' });
  const proxy = await startProxy(t, {
    pools: {
      rr: { algorithm: 'weighted-round-robin', health: JSON_HEALTH, backends: [a.address, b.address] },
      lc: { algorithm: 'least-conn', health: JSON_HEALTH, backends: [a.address, b.address] },
    },
    routes: [
      { match: { path: '/rr' }, pool: 'rr' },
      { match: { path: '/' }, pool: 'lc' },
    ],
  });
  await waitFor('a to be degraded in both pools', () => (proxy.control.backends() as View[]).filter((v) => v.url === `http://${a.address}`).every((v) => v.effective_weight === 0.5));
  t.like(viewOf(proxy, a), { state: 'up', weight: 1, effective_weight: 0.5 });
  t.regex(viewOf(proxy, a).check!, /degraded: status == "degraded"/);

  const seen: Record<string, number> = {};
  for (let i = 0; i < 300; i++) {
    const res = await request(`http://127.0.0.1:${proxy.port}/rr`);
    const body = await res.body.text();
    seen[body] = (seen[body] ?? 0) + 1;
  }
  t.deepEqual(seen, { a: 100, b: 200 }, 'weights 0.5 : 1 over 300 picks');

  // least-conn: sessions held open split by active / weight.
  const sessions = await openHeld(t, proxy.port, 90, [a, b].map((x) => ({ openSessions: x.sessions })), 90);
  t.teardown(() => sessions.forEach((ws) => ws.terminate()));
  t.true(Math.abs(a.sessions() - 30) <= 1 && Math.abs(b.sessions() - 60) <= 1, `sessions split 1 : 2 by weight (a ${a.sessions()}, b ${b.sessions()})`);
});

test('expect_body: a body that does not match fails the check, with the pattern in the reason', async (t) => {
  const { runCheck } = await import('../dist/src/primary/healthChecks.js');
  const a = await loadBackend(t, 'a');
  const [host, port] = a.address.split(':');
  const backend = { id: `p/${a.address}`, name: 'a', pool: 'p', origin: `http://${a.address}`, tls: false, host, port: Number(port), weight: 1, maxConns: 0 };
  const health = { type: 'http' as const, path: '/health', interval: 1000, timeout: 2000, rise: 1, fall: 1, expectStatus: [200, 399] as [number, number], degradedWeight: 0.5, expectBody: '"status":"ok"' };
  t.deepEqual(await runCheck(backend, health), { passed: true, degraded: false, reason: undefined });
  a.health = '{"status":"starting"}';
  t.deepEqual(await runCheck(backend, health), { passed: false, degraded: false, reason: 'the health body does not match expect_body /"status":"ok"/' });
});

test('JSON health: a body that is not JSON, or lacks a field, is a failed check with the reason in the admin API', async (t) => {
  const a = await loadBackend(t, 'a');
  const b = await loadBackend(t, 'b');
  const proxy = await startProxy(t, { pools: { main: { health: JSON_HEALTH, backends: [a.address, b.address] } } });
  a.health = '<html>busy</html>';
  await waitFor('a to go down on a body that is not JSON', () => viewOf(proxy, a).state === 'down');
  t.regex(viewOf(proxy, a).check!, /not JSON/);
  a.health = JSON.stringify({ cpu_usage: 10, status: 'ok' });
  await waitFor('the reason to name the missing field', () => /no field memory_usage/.test(viewOf(proxy, a).check ?? ''));
  t.is(viewOf(proxy, a).state, 'down', 'still down: a body without the field never passes');
  t.is(viewOf(proxy, b).state, 'up');
  a.health = JSON.stringify({ cpu_usage: 10, memory_usage: 10, status: 'ok' });
  await waitFor('a to come back', () => viewOf(proxy, a).state === 'up');
});

test('agent check (HAProxy agent-check): 25% scales the weight, drain drains, up alone does not end a drain, ready does, down and up move the state; a reply with no known word changes nothing', async (t) => {
  const server = await dualStackServer(t, (family) => `v${family}`);
  const agent = await dualStackAgent(t);
  const proxy = await startProxy(t, {
    admin: { listen: '127.0.0.1:0' },
    pools: {
      main: {
        algorithm: 'weighted-round-robin',
        health: { type: 'tcp', interval: '1s', agent: { port: agent.port, interval: '100ms', send: 'status\n' } },
        backends: [`127.0.0.1:${server.port}`, `[::1]:${server.port}`],
      },
    },
  });
  const v4 = () => viewAt(proxy, `http://127.0.0.1:${server.port}`);
  /** Waits for the agent at 127.0.0.1 to have been asked `rounds` more times: its reply has been read. */
  const asked = async (rounds: number) => {
    const at = agent.asked[4] + rounds;
    await waitFor(`${rounds} more agent rounds`, () => agent.asked[4] >= at);
  };
  await waitFor('the agents to be asked', () => agent.asked[4] > 0 && agent.asked[6] > 0);
  // The agent answers without waiting for it, so the text may arrive after the first reply.
  await waitFor('the agent to get the configured send text', () => agent.received[4] === 'status\n');

  agent.reply[4] = '25%\n';
  await waitFor('the weight share to apply', () => v4().effective_weight === 0.25);
  const metrics = await (await request(`http://127.0.0.1:${proxy.adminPort}/metrics`)).body.text();
  t.regex(metrics, new RegExp(`fairway_backend_weight\\{pool="main",backend="127\\.0\\.0\\.1:${server.port}"\\} 0\\.25\n`));
  t.deepEqual(await spread(proxy.port, 250), { v4: 50, v6: 200 }, 'weights 25 % : 100 % over 250 picks');

  agent.reply[4] = 'drain\n';
  await waitFor('drain', () => v4().state === 'draining');
  t.deepEqual(await spread(proxy.port, 20), { v6: 20 }, 'a drained backend takes no new request');
  agent.reply[4] = 'up\n';
  await asked(3);
  t.is(v4().state, 'draining', 'as in HAProxy, up is the operating state: it does not end a drain');
  agent.reply[4] = 'ready 100%\n';
  await waitFor('ready', () => v4().state === 'up' && v4().effective_weight === 1);

  agent.reply[4] = 'maint\n';
  await waitFor('maint', () => v4().state === 'down');
  t.deepEqual(await spread(proxy.port, 10), { v6: 10 }, 'a backend in maintenance takes nothing');
  agent.reply[4] = 'ready\n';
  await waitFor('ready after maint', () => v4().state === 'up');

  agent.reply[4] = 'down # overloaded\n';
  await waitFor('down', () => v4().state === 'down');
  t.like(v4().agent, { up: false });
  agent.reply[4] = 'up\n';
  await waitFor('up again', () => v4().state === 'up');

  agent.reply[4] = 'hello\n';
  await asked(3);
  t.like(v4(), { state: 'up', effective_weight: 1 }, 'a reply with no known word changes nothing');
  t.deepEqual(await spread(proxy.port, 20), { v4: 10, v6: 10 });
});
