// Fleet: several fairway instances sharing exact counts through a real redis-server. Counts are
// checked on the backend side (the sessions each test backend holds open).

import test, { type ExecutionContext } from 'ava';
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { ChildProcess } from 'node:child_process';
import type { WebSocket } from 'ws';
import { validateConfig, ConfigError } from '../dist/src/index.js';
import type { FleetView } from '../dist/src/primary/fleet.js';
import { closed, freePort, openSocket, pinged, rawExchange, runCli, START_DEADLINE, startBackend, startRedis, waitFor, type TestBackend, type TestRedis } from './helpers.js';

// The tests run one at a time: each starts two or three fairway processes, a Redis and sometimes
// a browser, as much as other files' heavy tests together.
// Each instance is a fairway process of its own with one worker thread, as instances are
// deployed; exactness across the threads of one instance is tested elsewhere (websocket, balancers).

/** Generous bounds: on a loaded 2-core machine a Redis answer must not count as lost. */
function fleetConfig(redis: string, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { redis, name, heartbeat: '300ms', sync: '50ms', timeout: '5s', ...extra };
}

/** A fairway instance in a process of its own, as deployed; inspected through its admin API. */
interface Instance {
  name: string;
  port: number;
  adminPort: number;
  child: ChildProcess;
  fleet(): Promise<FleetView>;
  /** The backend's state as the instance's admin API says it: up, draining, down, ejected. */
  state(backend: TestBackend): Promise<string>;
}

async function startInstance(t: ExecutionContext, redis: TestRedis | string, name: string, backends: { address: string }[], options: { maxConns?: number; tcpPort?: number; routes?: unknown[] } = {}): Promise<Instance> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(tmpdir(), `fairway-fleet-${process.pid}-${port}.yaml`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      workers: 1,
      log: { level: 'warn', access: false },
      admin: { listen: `127.0.0.1:${adminPort}` },
      fleet: fleetConfig(typeof redis === 'string' ? redis : redis.url, name),
      pools: { main: { backends: backends.map((b) => (options.maxConns ? { url: b.address, max_conns: options.maxConns } : b.address)) } },
      ...(options.tcpPort ? { tcp: [{ listen: `127.0.0.1:${options.tcpPort}`, pool: 'main' }] } : {}),
      ...(options.routes ? { routes: options.routes } : {}),
    }),
  );
  const { child, output } = await runCli(t, ['--config', file]);
  const admin = async (path: string) => {
    const { status, body } = await adminRequest(adminPort, 'GET', path);
    if (status !== 200) throw new Error(`GET ${path}: ${status}`);
    return JSON.parse(body);
  };
  const instance: Instance = {
    name,
    port,
    adminPort,
    child,
    fleet: () => admin('/api/fleet') as Promise<FleetView>,
    state: async (backend) => ((await admin(`/api/backends/${encodeURIComponent(idOf(backend))}`)) as { state: string }).state,
  };
  instancesByPort.set(port, instance);
  await listening(port, child, output);
  await listening(adminPort, child, output);
  return instance;
}

/** Waits until the instance shares the fleet view (or, with `degraded`, until it has lost it). */
async function fleetState(instance: Instance, degraded: boolean): Promise<void> {
  const deadline = Date.now() + START_DEADLINE;
  while ((await instance.fleet()).degraded !== degraded) {
    if (Date.now() > deadline) throw new Error(`${instance.name} did not become ${degraded ? 'degraded' : 'up'}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function joined(...instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((instance) => fleetState(instance, false)));
}

/** Polls until `check` holds (for checks that must ask over the network). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function redisClient(t: ExecutionContext, redis: TestRedis): Promise<Redis> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  await client.connect();
  t.teardown(() => client.disconnect());
  return client;
}

/** The fleet's session count per backend id, as Redis holds it. */
async function fleetSessions(client: Redis): Promise<number> {
  const all = await client.hgetall('fairway:sessions');
  return Object.values(all).reduce((sum, v) => sum + Number(v), 0);
}

const clientCloses: string[] = [];
/** Every session the tests opened, with the address it was opened through. */
const tracked = new Map<WebSocket, string>();
const closeCodes = new Map<WebSocket, number>();
/** Sessions the engine cut and the tests opened again: each to the one that stands in for it. */
const replacements = new Map<WebSocket, WebSocket>();
/** The instances by listening port: a session through one that was killed is not opened again. */
const instancesByPort = new Map<number, Instance>();
const clientStates = () => [...tracked.keys()].reduce<Record<number, number>>((m, ws) => ((m[ws.readyState] = (m[ws.readyState] ?? 0) + 1), m), {});

// Each test looks only at the sessions it opened itself.
test.beforeEach(() => {
  tracked.clear();
  closeCodes.clear();
  replacements.clear();
  clientCloses.length = 0;
});

function track(ws: WebSocket, url: string): WebSocket {
  tracked.set(ws, url);
  ws.on('close', (code: number, reason: Buffer) => {
    closeCodes.set(ws, code);
    clientCloses.push(`${code} ${reason}`);
  });
  ws.on('error', (err: Error) => clientCloses.push(`error ${err.message}`));
  return ws;
}

async function openMany(url: string, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i += 25) sockets.push(...(await Promise.all(Array.from({ length: Math.min(25, count - i) }, () => openSocket(url).then((ws) => track(ws, url))))));
  return sockets;
}

/** The session standing in for `ws` now: itself, or what replaced it after the engine cut it. */
function latest(ws: WebSocket): WebSocket {
  for (let next = replacements.get(ws); next; next = replacements.get(ws)) ws = next;
  return ws;
}

async function closeAll(t: ExecutionContext, sockets: WebSocket[]): Promise<void> {
  await Promise.all(sockets.map(latest).map((ws) => {
    const done = closed(ws);
    ws.close();
    return done;
  }));
  t.pass();
}

/**
 * Sessions the uws engine cut a millisecond after their upgrade (1006 on both legs: uWS 20.30's
 * cork, docs/engines.md) while their instance runs, not opened again yet. The tests close
 * sessions themselves with a code, and an instance they kill is waited for until it has exited.
 */
function cutSessions(): WebSocket[] {
  return [...tracked].filter(([ws, url]) => {
    if (ws.readyState !== ws.CLOSED || closeCodes.get(ws) !== 1006 || replacements.has(ws)) return false;
    const instance = instancesByPort.get(Number(new URL(url).port));
    return instance !== undefined && instance.child.exitCode === null && instance.child.signalCode === null;
  }).map(([ws]) => ws);
}

const counts = (backends: TestBackend[]) => backends.map((b) => b.openSessions());

/** Waits until the backends hold `total` sessions between them; the error says what they held. */
/**
 * Waits until the backends hold `total` sessions. A session the engine cut right after its
 * upgrade (cutSessions) is logged and opened again through the same instance, so that what the
 * tests check is where sessions land, not that engine fault.
 */
async function sessionsOnBackends(t: ExecutionContext, backends: TestBackend[], total: number): Promise<void> {
  const held = () => counts(backends).reduce((x, y) => x + y, 0);
  for (let round = 0; round < 5; round++) {
    await waitFor(`${total} sessions on the backends`, () => held() === total || cutSessions().length > 0).catch((err: Error) => {
      throw new Error(`${err.message}: clients closed ${clientCloses.join(';')}; they hold ${counts(backends).join('/')}, accepted ${backends.map((b) => b.sessions.length).join('/')}, closed with ${backends.flatMap((b) => b.closes.map((c) => `${b.name}: ${c}`)).join(',')}; client states ${JSON.stringify(clientStates())}`);
    });
    // A session cut as it opened may not have reached its client yet: a ping answered, or the
    // close, shows that each client has read everything its instance sent.
    if (cutSessions().length === 0) await Promise.all([...tracked.keys()].filter((ws) => ws.readyState === ws.OPEN).map(pinged));
    const cut = cutSessions();
    if (cut.length === 0 && held() === total) return;
    if (cut.length === 0) continue;
    t.log(`${cut.length} session(s) cut by the engine right after the upgrade (1006): opened again`);
    // Their backends see them end too; the ones that stand in for them go in after.
    await waitFor('the backends to see the cut sessions end', () => held() <= total - cut.length);
    await Promise.all(cut.map(async (ws) => {
      const url = tracked.get(ws)!;
      replacements.set(ws, track(await openSocket(url), url));
    }));
  }
  throw new Error(`sessions kept being cut right after their upgrade: ${clientCloses.join(';')}`);
}

async function threeBackends(t: ExecutionContext): Promise<TestBackend[]> {
  return Promise.all(['b1', 'b2', 'b3'].map((name) => startBackend(t, name)));
}

/** Resolves once `port` answers HTTP; fails at once, with what fairway printed, if it exits. */
async function listening(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_DEADLINE;
  for (;;) {
    try {
      await (await fetch(`http://127.0.0.1:${port}/`)).text();
      return;
    } catch (err) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`fairway exited (${child.exitCode ?? child.signalCode}) before port ${port} answered: ${output()}`);
      if (Date.now() > deadline) throw new Error(`port ${port} did not answer: ${(err as Error).message}; fairway printed: ${output()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

const idOf = (backend: TestBackend) => `main/${backend.address}`;

/**
 * One admin API request on a connection of its own: a pooled keep-alive connection that the
 * server closes as idle while a test waits would fail the next request for the test's reasons.
 */
function adminRequest(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false, headers: method === 'GET' ? {} : { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function adminPost(instance: Instance, backend: TestBackend, action: 'drain' | 'undrain'): Promise<void> {
  const { status, body } = await adminRequest(instance.adminPort, 'POST', `/api/backends/${encodeURIComponent(idOf(backend))}/${action}`);
  if (status !== 200) throw new Error(`${action} on ${instance.name}: ${status} ${body}`);
}

test.serial('fleet: 300 sessions opened 200 via A, 100 via B, 0 via C land exactly 100/100/100; closes and reopens stay exact', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b, c] = await Promise.all(['lb-a', 'lb-b', 'lb-c'].map((name) => startInstance(t, redis, name, backends)));
  await joined(a, b, c);
  const client = await redisClient(t, redis);

  const viaA = openMany(`ws://127.0.0.1:${a.port}/`, 200);
  const viaB = openMany(`ws://127.0.0.1:${b.port}/`, 100);
  const sockets = [...(await viaA), ...(await viaB)];
  await sessionsOnBackends(t, backends, 300);
  t.deepEqual(counts(backends), [100, 100, 100]);

  // The backends end 30, 20 and 10 sessions, whichever instances they came through: the fleet's
  // count follows, and 60 sessions opened through C (which holds none itself) fill exactly the gaps.
  [30, 20, 10].forEach((count, i) => backends[i].sessions.filter((ws) => ws.readyState === ws.OPEN).slice(0, count).forEach((ws) => ws.close(1000)));
  await sessionsOnBackends(t, backends, 240);
  await until('the fleet count to come down to 240', async () => (await fleetSessions(client)) === 240);
  const reopened = await openMany(`ws://127.0.0.1:${c.port}/`, 60);
  await sessionsOnBackends(t, backends, 300);
  t.deepEqual(counts(backends), [100, 100, 100]);
  t.is(await fleetSessions(client), 300);
  await closeAll(t, [...sockets, ...reopened]);
});

test.serial('fleet: max_conns 50 on each of 3 backends, 200 sessions opened at once over 3 instances: exactly 150 accepted, never 51 on one', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const instances = await Promise.all(['lb-a', 'lb-b', 'lb-c'].map((name) => startInstance(t, redis, name, backends, { maxConns: 50 })));
  await joined(...instances);
  let highest = 0;
  const watch = setInterval(() => (highest = Math.max(highest, ...counts(backends))), 1);
  const url = (i: number) => `ws://127.0.0.1:${instances[i % 3].port}/`;
  const attempts = Array.from({ length: 200 }, (_, i) => openSocket(url(i)).then(
    (ws) => track(ws, url(i)),
    (err: Error) => err,
  ));
  const results = await Promise.all(attempts);
  clearInterval(watch);
  const opened = results.filter((r): r is WebSocket => !(r instanceof Error));
  const refused = results.filter((r): r is Error => r instanceof Error);
  t.is(opened.length, 150);
  t.true(refused.every((err) => err.message === 'unexpected response 503'), refused.map((e) => e.message).join(', '));
  await sessionsOnBackends(t, backends, 150);
  t.deepEqual(counts(backends), [50, 50, 50]);
  t.true(highest <= 50, `a backend had ${highest} sessions`);
  await closeAll(t, opened);
});

test.serial('fleet: kill -9 of an instance holding sessions: the survivors drop its counts and new sessions refill exactly', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b] = await Promise.all(['lb-a', 'lb-b'].map((name) => startInstance(t, redis, name, backends)));
  await joined(a, b);

  // Drained through A's admin API, b2 and b3 are drained on B too; A's 60 sessions all go to b1.
  await adminPost(a, backends[1], 'drain');
  await adminPost(a, backends[2], 'drain');
  await until('B to apply the drains made on A', async () => (await b.state(backends[1])) === 'draining' && (await b.state(backends[2])) === 'draining');
  await openMany(`ws://127.0.0.1:${a.port}/`, 60);
  await sessionsOnBackends(t, backends, 60);
  t.deepEqual(counts(backends), [60, 0, 0]);
  await adminPost(b, backends[1], 'undrain');
  await adminPost(b, backends[2], 'undrain');
  await until('A and B to take b2 and b3 back', async () => (await Promise.all([a, b].flatMap((x) => [x.state(backends[1]), x.state(backends[2])]))).every((state) => state === 'up'));

  a.child.kill('SIGKILL');
  // Its sessions end with 1006 too: once it has exited, they are not taken for sessions the engine cut.
  await once(a.child, 'exit');
  await sessionsOnBackends(t, backends, 0);
  await until('B to see that A is dead', async () => {
    const view = await b.fleet();
    return !view.instances.includes('lb-a') && view.backends.every((x) => x.sessions === 0);
  });
  // Had A's 60 stayed counted on b1, these 90 would avoid it.
  const sockets = await openMany(`ws://127.0.0.1:${b.port}/`, 90);
  await sessionsOnBackends(t, backends, 90);
  t.deepEqual(counts(backends), [30, 30, 30]);
  await closeAll(t, sockets);
});

test.serial('fleet: Redis killed under load costs no client a request or a session; restarted empty, the fleet count converges to the backends\' truth', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b] = await Promise.all(['lb-a', 'lb-b'].map((name) => startInstance(t, redis, name, backends)));
  await joined(a, b);
  const client = await redisClient(t, redis);
  const sockets = [...(await openMany(`ws://127.0.0.1:${a.port}/`, 30)), ...(await openMany(`ws://127.0.0.1:${b.port}/`, 30))];
  const failures: string[] = [];
  let requests = 0;
  let stop = false;
  // Bounded load: HTTP requests and new sessions through both instances until told to stop (or 90 s).
  const until90 = Date.now() + 90_000;
  const load = (async () => {
    for (let i = 0; !stop && Date.now() < until90; i++) {
      const target = i % 2 === 0 ? a : b;
      try {
        const res = await fetch(`http://127.0.0.1:${target.port}/`);
        await res.text();
        if (res.status !== 200) failures.push(`HTTP ${res.status}`);
        requests++;
        const url = `ws://127.0.0.1:${target.port}/`;
        if (i % 20 === 0 && sockets.length < 300) sockets.push(track(await openSocket(url), url));
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  })();
  await waitFor('some load before Redis dies', () => requests >= 50);
  await redis.kill();
  await Promise.all([fleetState(a, true), fleetState(b, true)]);
  const before = requests;
  await waitFor('load while Redis is down', () => requests >= before + 100);
  await redis.restart();
  await joined(a, b);
  const after = requests;
  await waitFor('load after Redis is back', () => requests >= after + 50);
  stop = true;
  await load;
  t.deepEqual(failures, []);
  // The fleet count is rebuilt from each instance's truth: per backend, what the backend holds.
  await sessionsOnBackends(t, backends, sockets.length);
  let fleet: number[] = [];
  await until('the fleet count to match the backends', async () => {
    const held = await client.hgetall('fairway:sessions');
    fleet = backends.map((x) => Number(held[idOf(x)] ?? 0));
    return JSON.stringify(fleet) === JSON.stringify(counts(backends));
  }).catch((err: Error) => {
    throw new Error(`${err.message}: fleet ${fleet} vs backends ${counts(backends)}`);
  });
  t.pass();
  await closeAll(t, sockets);
});

test.serial('fleet: a drain on one instance applies on every instance, also on one that starts later; undrain too', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b] = await Promise.all(['lb-a', 'lb-b'].map((name) => startInstance(t, redis, name, backends)));
  await joined(a, b);
  await adminPost(a, backends[0], 'drain');
  await until('B to apply the drain', async () => (await b.state(backends[0])) === 'draining');
  const viaB = await openMany(`ws://127.0.0.1:${b.port}/`, 30);
  const c = await startInstance(t, redis, 'lb-c', backends);
  await joined(c);
  t.is(await c.state(backends[0]), 'draining', 'an instance started after the drain applies it');
  const viaC = await openMany(`ws://127.0.0.1:${c.port}/`, 30);
  await sessionsOnBackends(t, backends, 60);
  t.deepEqual(counts(backends), [0, 30, 30]);
  await adminPost(a, backends[0], 'undrain');
  await until('B and C to apply the undrain', async () => (await b.state(backends[0])) === 'up' && (await c.state(backends[0])) === 'up');
  const refill = await openMany(`ws://127.0.0.1:${c.port}/`, 30);
  await sessionsOnBackends(t, backends, 90);
  t.deepEqual(counts(backends), [30, 30, 30]);
  // The admin API's view is as of the last sync.
  await until('A\'s fleet view to show the 90 sessions', async () => JSON.stringify((await a.fleet()).backends.map((x) => x.sessions)) === '[30,30,30]');
  t.deepEqual([...(await a.fleet()).instances].sort(), ['lb-a', 'lb-b', 'lb-c']);
  const metrics = (await adminRequest(a.adminPort, 'GET', '/metrics')).body;
  t.regex(metrics, /fairway_fleet_degraded\{instance="lb-a"\} 0/);
  t.regex(metrics, /fairway_fleet_instances 3/);
  await closeAll(t, [...viaB, ...viaC, ...refill]);
});

test.serial('fleet: an instance started while Redis is down serves at once from local counts, and joins the fleet when Redis comes', async (t) => {
  const backends = await threeBackends(t);
  const redisPort = await freePort();
  const a = await startInstance(t, `redis://127.0.0.1:${redisPort}`, 'lb-a', backends);
  t.true((await a.fleet()).degraded);
  const early = await openMany(`ws://127.0.0.1:${a.port}/`, 6);
  await startRedis(t, { port: redisPort });
  await joined(a);
  // The sessions opened while Redis was away are in the fleet's count, exactly.
  await sessionsOnBackends(t, backends, 6);
  await until('the fleet view to show them', async () => JSON.stringify((await a.fleet()).backends.map((x) => x.sessions)) === JSON.stringify(counts(backends)));
  t.is(counts(backends).reduce((x, y) => x + y, 0), 6);
  await closeAll(t, early);
});

test.serial('fleet config: a bad URL, a heartbeat of 0 and a sync longer than the heartbeat are named', (t) => {
  const pools = { main: { backends: ['127.0.0.1:9001'] } };
  const problems = (fleet: unknown) => {
    try {
      validateConfig({ fleet, pools });
      return [];
    } catch (err) {
      return (err as InstanceType<typeof ConfigError>).problems;
    }
  };
  t.regex(problems({ redis: 'http://127.0.0.1:6379' }).join('\n'), /fleet\.redis: expected a redis:\/\/ or rediss:\/\/ URL/);
  t.regex(problems({ redis: 'redis://127.0.0.1:6379', heartbeat: '0s' }).join('\n'), /fleet\.heartbeat: expected a duration above zero/);
  t.regex(problems({ redis: 'redis://127.0.0.1:6379', heartbeat: '1s', sync: '2s' }).join('\n'), /fleet\.sync: expected at most fleet\.heartbeat/);
  t.regex(problems({ redis: 'redis://127.0.0.1:6379', name: 'a b' }).join('\n'), /fleet\.name: expected up to 64 letters/);
  t.regex(problems({ redis: 'redis://127.0.0.1:6379', exact: true }).join('\n'), /fleet\.exact: unknown key/);
  const config = validateConfig({ fleet: { redis: 'rediss://user:pw@redis.internal:6380' }, pools });
  t.like(config.fleet, { heartbeat: 1000, sync: 100, timeout: 50, exactSessions: true });
  t.true(config.fleet!.name.length > 0);
});

test.serial('fleet config: the CLI refuses a bad fleet section with exit 2', async (t) => {
  const file = join(tmpdir(), `fairway-fleet-bad-${process.pid}.yaml`);
  writeFileSync(file, 'fleet: { redis: "127.0.0.1:6379", sync: 5s }\npools: { main: { backends: ["127.0.0.1:9001"] } }\n');
  const { child, output } = await runCli(t, ['--config', file, '--check']);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  t.is(code, 2);
  t.regex(output(), /fleet\.redis: expected a redis:\/\/ or rediss:\/\/ URL/);
  t.regex(output(), /fleet\.sync: expected at most fleet\.heartbeat/);
});

test.serial('fleet: TCP sessions are fleet-exact too: max_conns 10 on 2 backends, 30 connections over 2 instances, exactly 20 reach a backend', async (t) => {
  const redis = await startRedis(t);
  const open: Set<Socket>[] = [new Set(), new Set()];
  let highest = 0;
  const backends = await Promise.all(
    open.map(async (sockets) => {
      const server = createTcpServer((socket) => {
        sockets.add(socket);
        highest = Math.max(highest, sockets.size);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => socket.destroy());
        socket.on('data', (chunk) => socket.write(chunk));
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.teardown(() => {
        for (const socket of sockets) socket.destroy();
        server.close();
      });
      return { address: `127.0.0.1:${(server.address() as { port: number }).port}` };
    }),
  );
  const tcpPorts = [await freePort(), await freePort()];
  const instances = await Promise.all(['lb-a', 'lb-b'].map((name, i) => startInstance(t, redis, name, backends, { maxConns: 10, tcpPort: tcpPorts[i] })));
  await joined(...instances);
  // Each connection says hello; one that reaches a backend hears it back, one refused is closed.
  const outcomes = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      new Promise<{ socket: Socket; echoed: boolean }>((resolve) => {
        const socket = connectTcp({ host: '127.0.0.1', port: tcpPorts[i % 2] });
        socket.on('error', () => undefined);
        socket.once('data', () => resolve({ socket, echoed: true }));
        socket.once('close', () => resolve({ socket, echoed: false }));
        socket.write('hello');
      }),
    ),
  );
  t.is(outcomes.filter((o) => o.echoed).length, 20);
  t.deepEqual(open.map((s) => s.size), [10, 10]);
  t.true(highest <= 10, `a backend had ${highest} connections`);
  for (const { socket } of outcomes) socket.destroy();
  await waitFor('the backends to see every connection close', () => open.every((s) => s.size === 0));
});

test.serial('fleet: a backend added on one instance joins every pool of the fleet, also on an instance that starts later; removed on another, it leaves all', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b] = await Promise.all(['lb-a', 'lb-b'].map((name) => startInstance(t, redis, name, backends.slice(0, 2))));
  await joined(a, b);
  const status = async (instance: Instance, backend: TestBackend) => (await adminRequest(instance.adminPort, 'GET', `/api/backends/${encodeURIComponent(idOf(backend))}`)).status;
  const added = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: a.adminPort, method: 'POST', path: '/api/pools/main/backends', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ url: backends[2].address }));
  });
  t.is(added, 201);
  await until('B to add the backend', async () => (await status(b, backends[2])) === 200);
  const c = await startInstance(t, redis, 'lb-c', backends.slice(0, 2));
  await joined(c);
  t.is(await status(c, backends[2]), 200, 'an instance started after the add has the backend');
  const sockets = await openMany(`ws://127.0.0.1:${c.port}/`, 30);
  await sessionsOnBackends(t, backends, 30);
  t.deepEqual(counts(backends), [10, 10, 10]);

  const removed = await adminRequest(b.adminPort, 'DELETE', `/api/backends/${encodeURIComponent(idOf(backends[2]))}`);
  t.is(removed.status, 202);
  await until('A and C to drain it', async () => (await a.state(backends[2])) === 'draining' && (await c.state(backends[2])) === 'draining');
  const more = await openMany(`ws://127.0.0.1:${a.port}/`, 20);
  await sessionsOnBackends(t, backends, 50);
  t.deepEqual(counts(backends), [20, 20, 10]);
  await closeAll(t, [...sockets, ...more]);
  await until('every instance to take it out once its sessions ended', async () => (await Promise.all([a, b, c].map((x) => status(x, backends[2])))).every((s) => s === 404));
});

test.serial('fleet dashboard: the page shows the live instances, each backend\'s fleet total, every instance\'s rates, errors and latency and their sum, and when Redis is lost', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const [a, b] = await Promise.all(['lb-a', 'lb-b'].map((name) => startInstance(t, redis, name, backends)));
  await joined(a, b);
  const sockets = [...(await openMany(`ws://127.0.0.1:${a.port}/`, 4)), ...(await openMany(`ws://127.0.0.1:${b.port}/`, 5))];
  await sessionsOnBackends(t, backends, 9);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${a.adminPort}/`);
  // A's page: its own 4 sessions in "Active", the fleet's 9 in "Fleet", 3 on each backend.
  await page.waitForFunction(() => [...document.querySelectorAll('#rows td.fleet-total')].map((c) => c.textContent).join() === '3,3,3', undefined, { timeout: 20_000 });
  t.is(await page.$$eval('#rows td.active', (cells) => cells.reduce((n, c) => n + Number(c.textContent), 0)), 4);
  t.regex((await page.textContent('#fleet-text')) ?? '', /this is lb-a; 2 instance\(s\) live: lb-a, lb-b/);
  t.is(await page.textContent('#fleet-state'), 'shared');
  const perInstance = await page.$$eval('#rows td.fleet-total', (cells) => cells.map((c) => c.getAttribute('title')));
  t.true(perInstance.every((title) => /lb-a: \d+, lb-b: \d+/.test(title ?? '')), perInstance.join(' | '));
  // The charts: each instance's line and the fleet's sum.
  type Page = { fairway?: { charts: Record<string, { plot: { series: { label?: string }[]; data: (number | null)[][] } }> } };
  await page.waitForFunction(() => {
    const chart = (window as unknown as Page).fairway?.charts.fleetInstances;
    return chart !== undefined && chart.plot.data.length === 4 && chart.plot.data[3].at(-1) === 9;
  }, undefined, { timeout: 30_000 });
  const lines = await page.evaluate(() => {
    const { plot } = (window as unknown as Required<Page>).fairway.charts.fleetInstances;
    return Object.fromEntries(plot.series.slice(1).map((s, i) => [s.label, plot.data[i + 1].at(-1)]));
  });
  t.deepEqual(lines, { 'lb-a': 4, 'lb-b': 5, 'fleet total': 9 });
  // B's requests, errors and latency reach A's history through the fleet, each second, and add up.
  type Rates = { rps: number; errors: number; p50: number | null; p99: number | null };
  type FleetPoint = { fleet?: { rates: Record<string, Rates>; total: Rates | null } };
  const fleetPoints = async () => ((await JSON.parse((await adminRequest(a.adminPort, 'GET', '/api/history')).body)) as { points: FleetPoint[] }).points.flatMap((p) => (p.fleet ? [p.fleet] : []));
  const seenFromB = (points: Awaited<ReturnType<typeof fleetPoints>>) => points.find((p) => (p.rates['lb-b']?.rps ?? 0) > 0 && (p.rates['lb-b']?.errors ?? 0) > 0);
  for (const deadline = Date.now() + 30_000; !seenFromB(await fleetPoints()); ) {
    if (Date.now() > deadline) t.fail('A never showed B\'s requests and errors');
    await Promise.all(Array.from({ length: 10 }, () => fetch(`http://127.0.0.1:${b.port}/`).then((res) => res.text())));
    const refused = await rawExchange(b.port, 'POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', 20_000);
    t.regex(refused.reply, /^HTTP\/1\.1 400 /);
  }
  const points = await fleetPoints();
  const fromB = seenFromB(points)!;
  t.not(fromB.rates['lb-b'].p99, null, 'B\'s latency too');
  t.not(fromB.total, null);
  for (const point of points) {
    const named = Object.values(point.rates);
    // No total while A was not yet sharing the fleet's view (before it joined).
    if (point.total) {
      t.is(point.total.rps, named.reduce((n, r) => n + r.rps, 0));
      t.is(point.total.errors, named.reduce((n, r) => n + r.errors, 0));
    }
    t.is(point.rates['lb-a']?.errors ?? 0, 0, 'A itself answered no error');
  }
  // The page draws them: a line per instance and the fleet's.
  await page.waitForFunction(() => {
    const chart = (window as unknown as Page).fairway?.charts.fleetErrors;
    return chart !== undefined && chart.plot.data[2]?.some((v) => (v ?? 0) > 0);
  }, undefined, { timeout: 30_000 });
  for (const key of ['fleetRps', 'fleetErrors', 'fleetLatency']) {
    const labels = await page.evaluate((k) => (window as unknown as Required<Page>).fairway.charts[k].plot.series.slice(1).map((s) => s.label), key);
    t.deepEqual(labels, ['lb-a', 'lb-b', 'fleet total'], key);
  }
  await redis.kill();
  await page.waitForFunction(() => document.getElementById('fleet-state')?.textContent === 'degraded', undefined, { timeout: 20_000 });
  t.pass();
  await closeAll(t, sockets);
});

test.serial('fleet rate limit: a burst of 40 requests spread over 3 instances passes exactly the burst of 10; scope instance would pass 30', async (t) => {
  const redis = await startRedis(t);
  const backends = await threeBackends(t);
  const routes = [
    { match: { path: '/fleet' }, pool: 'main', rate_limit: { scope: 'fleet', requests: { rate: '1/m', burst: 10 } } },
    { match: { path: '/local' }, pool: 'main', rate_limit: { requests: { rate: '1/m', burst: 10 } } },
    { match: { path: '/cached' }, pool: 'main', rate_limit: { scope: 'fleet', requests: { rate: '1/m', burst: 10 } }, cache: { size: '1mb', default_ttl: '60s' } },
    { match: { path: '/sessions' }, pool: 'main', rate_limit: { scope: 'fleet', new_sessions: { rate: '1/m', burst: 4 } } },
    { match: { path: '/' }, pool: 'main' },
  ];
  const instances = await Promise.all(['lb-a', 'lb-b', 'lb-c'].map((name) => startInstance(t, redis, name, backends, { routes })));
  await joined(...instances);
  const burst = async (path: string) => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(`http://127.0.0.1:${instances[i % 3].port}${path}`).then(async (res) => ({ status: res.status, retryAfter: res.headers.get('retry-after'), cache: res.headers.get('x-fairway-cache'), body: await res.text() }))));
    return answers;
  };
  const fleet = await burst('/fleet');
  t.is(fleet.filter((a) => a.status === 200).length, 10);
  const refused = fleet.filter((a) => a.status === 429);
  t.is(refused.length, 30);
  t.true(refused.every((a) => Number(a.retryAfter) >= 1), refused.map((a) => a.retryAfter).join());
  // The same limit counted per instance lets each instance's burst through.
  const local = await burst('/local');
  t.is(local.filter((a) => a.status === 200).length, 30);
  // Answers from a route's cache take their tokens in the fleet too.
  const cached = await burst('/cached');
  const passed = cached.filter((a) => a.status === 200);
  t.is(passed.length, 10);
  t.true(passed.some((a) => a.cache === 'hit'), passed.map((a) => a.cache).join());
  t.is(cached.filter((a) => a.status === 429).length, 30);
  const metrics = (await adminRequest(instances[0].adminPort, 'GET', '/metrics')).body;
  t.regex(metrics, /fairway_rate_limited_total\{reason="requests"\} [1-9]/);
  // New WebSocket sessions too: 12 upgrades over the 3 instances against a fleet burst of 4.
  const upgrades = await Promise.all(Array.from({ length: 12 }, (_, i) => openSocket(`ws://127.0.0.1:${instances[i % 3].port}/sessions`).then((ws) => ws, (err: Error) => err)));
  const opened = upgrades.filter((u): u is WebSocket => !(u instanceof Error));
  t.is(opened.length, 4);
  t.true(upgrades.filter((u) => u instanceof Error).every((err) => (err as Error).message === 'unexpected response 429'));
  await closeAll(t, opened);
});

test.serial('fleet rate limit config: scope fleet without a fleet section is named', (t) => {
  const error = t.throws(() => validateConfig({ pools: { main: { backends: ['127.0.0.1:9001'] } }, routes: [{ match: { path: '/' }, pool: 'main', rate_limit: { scope: 'fleet', requests: { rate: '1/s' } } }] }));
  t.regex(error!.message, /routes\[0\]\.rate_limit\.scope: expected instance, or a fleet section for fleet/);
});
