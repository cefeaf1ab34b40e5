// Worker crashes and their recovery, graceful shutdown of the real CLI, and port pre-flight.

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { ENGINE, activeTotal, closed, freePort, onePool, openHeld, openSocket, runCli, START_DEADLINE, startBackend, startProxy, waitFor } from './helpers.js';


test('a crashed worker is replaced and its sessions are no longer counted', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 2, ...onePool([backend]) });
  const sockets = await openHeld(t, proxy.port, 30, [backend], 30);
  t.is(activeTotal(proxy, 'main', [backend]), 30);
  const ends = sockets.map((ws) => closed(ws));

  // The fault makes the worker that takes this request throw outside any handler; the request
  // itself may or may not be answered before that worker closes its connections.
  await request(`http://127.0.0.1:${proxy.port}/`, { headers: { 'x-fairway-test-fault': 'crash' } }).then((r) => r.body.text(), () => '');
  await waitFor('the worker to be replaced', () => proxy.supervisor.restarts === 1, START_DEADLINE);

  const lost = sockets.filter((ws) => ws.readyState !== WebSocket.OPEN);
  for (const [i, ws] of sockets.entries()) if (lost.includes(ws)) t.is((await ends[i]).code, 1011);
  const kept = sockets.filter((ws) => ws.readyState === WebSocket.OPEN);
  t.true(lost.length > 0, 'the crashed worker held sessions');
  await waitFor('backend to see the lost sessions end', () => backend.openSessions() === kept.length);
  t.is(activeTotal(proxy, 'main', [backend]), kept.length);

  // The replacement listens and serves; sessions on the surviving worker are untouched. (With one
  // worker thread, as native-free has on Node 20, nobody listens until the replacement does.)
  const deadline = Date.now() + START_DEADLINE;
  while (Date.now() < deadline) {
    const ok = await request(`http://127.0.0.1:${proxy.port}/`, { headers: { connection: 'close' } }).then((r) => (r.body.dump(), true), () => false);
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (let i = 0; i < 10; i++) {
    const res = await request(`http://127.0.0.1:${proxy.port}/`, { headers: { connection: 'close' } });
    t.is(await res.body.text(), 'a');
  }
  const fresh = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('requests released, the fresh session counted', () => activeTotal(proxy, 'main', [backend]) === kept.length + 1);
  for (const ws of [...kept, fresh]) ws.terminate();
  await waitFor('counters back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('SIGTERM: WebSockets close with 1001, requests in flight finish, new connections are refused, exit 0', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--workers', '2']);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);

  const ws = await openSocket(`ws://127.0.0.1:${port}/`);
  const wsEnd = closed(ws);
  const slow = request(`http://127.0.0.1:${port}/slow?ms=1500`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
  await waitFor('the slow request to reach the backend', () => backend.hits === 1);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');

  t.is((await wsEnd).code, 1001);
  // The listeners close at once; the request in flight still finishes after that.
  let slowDone = false;
  void slow.finally(() => (slowDone = true));
  const refusedWhileServing = await (async () => {
    while (!slowDone) {
      const refused = await new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => (socket.destroy(), resolve(false)));
        socket.once('error', () => resolve(true));
      });
      if (refused) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return false;
  })();
  t.true(refusedWhileServing, 'new connections are refused while the request in flight finishes');
  t.deepEqual(await slow, { status: 200, body: 'a' });
  const [code] = await exited;
  t.is(code, 0);
  t.regex(output(), ENGINE === 'uws' ? /engine uws: loaded uWebSockets\.js/ : /engine native-free/);
  t.regex(output(), /fairway stopped/);
});

test('clients that connect while fairway starts do not keep it from listening', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  // Connections opened as early as possible, each sending half a request and then waiting.
  const early: Socket[] = [];
  let connecting = true;
  const dial = async () => {
    while (connecting) {
      const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n'));
      socket.on('error', () => {});
      early.push(socket);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  t.teardown(() => early.forEach((s) => s.destroy()));
  const dialing = dial();
  const { output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--workers', '2']);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  connecting = false;
  await dialing;
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } });
  t.is(res.statusCode, 200);
  t.is(await res.body.text(), 'a');
});

test('each worker listens as soon as it is ready: one slow to start does not keep the port shut', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  // Worker 1 reports ready only once a request on the port is answered, which only worker 0 can do.
  const hold = { FAIRWAY_TEST_HOOKS: '1', FAIRWAY_TEST_HOLD_WORKER: '1' };
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--workers', '2'], hold);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  const workers = Number(/"workers":(\d+)/.exec(output())?.[1]);
  if (workers === 2) {
    t.regex(output(), /test hold: another worker answered before this one was ready/);
    t.notRegex(output(), /test hold: no worker answered/);
  } else {
    t.log(`${ENGINE} runs ${workers} worker thread here: no second worker to hold`);
    t.is(workers, 1);
  }
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } });
  t.is(await res.body.text(), 'a');
  child.kill('SIGTERM');
  t.is((await once(child, 'exit'))[0], 0);
});

test('a port already in use is refused before any worker starts', async (t) => {
  const blocker = createServer().listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  const { port } = blocker.address() as { port: number };
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', '127.0.0.1:9']);
  const [code] = await once(child, 'exit');
  t.is(code, 1);
  t.regex(output(), new RegExp(`cannot listen on 127.0.0.1:${port}: the address is already in use`));
});

test('engine auto falls back to native-free when no uWS build loads, and says why; engine uws then refuses to start', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  const noUws = { FAIRWAY_UWS_PACKAGES: 'fairway-no-such-uws-build' };
  const auto = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--engine', 'auto'], noUws);
  await waitFor('fairway to listen', () => auto.output().includes('fairway is listening'), START_DEADLINE);
  t.regex(auto.output(), /engine native-free: no uWebSockets\.js build loads on this host \(fairway-no-such-uws-build: /);
  const res = await request(`http://127.0.0.1:${port}/`);
  t.is(await res.body.text(), 'a');
  const ws = await openSocket(`ws://127.0.0.1:${port}/`);
  ws.send('through native-free');
  const [echo] = (await once(ws, 'message')) as [Buffer];
  t.is(echo.toString(), 'through native-free');
  ws.close();
  auto.child.kill('SIGTERM');
  t.is((await once(auto.child, 'exit'))[0], 0);

  const forced = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--engine', 'uws'], noUws);
  const [code] = await once(forced.child, 'exit');
  t.is(code, 1);
  t.regex(forced.output(), /engine uws was asked for, but no uWebSockets\.js build loads/);
});
