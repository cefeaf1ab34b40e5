// WebSocket through the proxy: echo, subprotocols, close codes, exact least-connections, faults.

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { WebSocket } from 'ws';
import { ENGINE, activeOf, activeTotal, closed, deadPort, nextMessage, onePool, openHeld, openSocket, startBackend, startProxy, waitFor, type TestBackend } from './helpers.js';

test('echo of text, binary and large messages, with the subprotocol and headers passed on', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/chat?room=1`, ['chat.v2', 'chat.v1'], { cookie: 'sid=42', authorization: 'Bearer x' });
  t.is(ws.protocol, 'chat.v2');
  t.is(backend.lastHeaders.cookie, 'sid=42');
  t.is(backend.lastHeaders.authorization, 'Bearer x');
  t.is(backend.lastHeaders['x-forwarded-for'], '127.0.0.1');
  t.deepEqual(String(backend.lastHeaders['sec-websocket-protocol']).split(/\s*,\s*/), ['chat.v2', 'chat.v1']);

  ws.send('hello');
  const text = await nextMessage(ws);
  t.false(text.isBinary);
  t.is(text.data.toString(), 'hello');

  const large = Buffer.alloc(5 * 1024 * 1024);
  for (let i = 0; i < large.length; i++) large[i] = i % 253;
  ws.send(large);
  const echoed = await nextMessage(ws);
  t.true(echoed.isBinary);
  t.true(echoed.data.equals(large));

  // A message sent in fragments arrives whole.
  ws.send('frag-', { fin: false });
  ws.send('ment', { fin: true });
  t.is((await nextMessage(ws)).data.toString(), 'frag-ment');
  ws.close();
  await closed(ws);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('a message of exactly max_message passes (max_buffered as large, as by default), one byte more ends the session; 4 MiB in 64-byte fragments arrives whole', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { websocket: { max_message: '2mb', max_buffered: '2mb' }, ...onePool([backend]) });
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  const exact = Buffer.alloc(2 * 1024 * 1024, 7);
  ws.send(exact);
  t.true((await nextMessage(ws)).data.equals(exact), 'max_message is inclusive');
  const end = closed(ws);
  ws.send(Buffer.alloc(exact.length + 1));
  // uWS 20.30 closes the connection without a close frame (docs/engines.md).
  t.is((await end).code, ENGINE === 'uws' ? 1006 : 1009);
  await waitFor('backend leg closed too', () => backend.openSessions() === 0);

  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  const proxyWide = await startProxy(t, onePool([backend]));
  const many = await openSocket(`ws://127.0.0.1:${proxyWide.port}/`);
  for (let at = 0; at < big.length; at += 64) many.send(big.subarray(at, at + 64), { binary: true, fin: at + 64 >= big.length });
  t.true((await nextMessage(many)).data.equals(big), '65 536 fragments make one message');
  many.close();
  await waitFor('counters back to zero', () => activeTotal(proxy, 'main', [backend]) === 0 && activeTotal(proxyWide, 'main', [backend]) === 0);
});

/** Opens a WebSocket on a raw socket, sends `frame`, and reads the close frame fairway sends, if any. */
function breakProtocol(port: number, frame: Buffer, ms: number): Promise<{ closeCode: number | undefined; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let upgraded = false;
    const timer = setTimeout(() => finish(false), ms);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const at = received.indexOf('\r\n\r\n');
      const frames = at < 0 ? Buffer.alloc(0) : received.subarray(at + 4);
      // A close frame: 0x88, a length, then the code.
      resolve({ closeCode: frames.length >= 4 && frames[0] === 0x88 ? frames.readUInt16BE(2) : undefined, closed });
    };
    socket.on('connect', () =>
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
    );
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (!upgraded && received.includes('\r\n\r\n')) {
        upgraded = true;
        socket.write(frame);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
  });
}

/** A client frame with a zero mask (so the payload goes as it is). */
const masked = (first: number, payload: number[]) => Buffer.from([first, 0x80 | payload.length, 0, 0, 0, 0, ...payload]);

test('a client that breaks the WebSocket protocol is closed (with 1002 / 1007 on native-free), and so is the backend leg', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const cases: [string, Buffer, number][] = [
    ['an unmasked frame', Buffer.from([0x81, 0x02, 0x68, 0x69]), 1002],
    ['reserved bits set', masked(0xc1, [0x68, 0x69]), 1002],
    ['an unknown opcode', masked(0x83, [0x68, 0x69]), 1002],
    ['a continuation without a start', masked(0x80, [0x68, 0x69]), 1002],
    ['a fragmented ping', masked(0x09, [0x68]), 1002],
    ['a close code that may not be sent', masked(0x88, [0x03, 0xed]), 1002],
    ['invalid UTF-8 in a text message', masked(0x81, [0xff, 0xfe]), 1007],
  ];
  for (const [name, frame, code] of cases) {
    const before = backend.closes.length;
    if (ENGINE === 'uws' && name === 'an unmasked frame') {
      // uWS 20.30 does not check the mask bit: it reads the next four bytes as the mask and waits
      // for the rest (docs/operations.md).
      t.false((await breakProtocol(proxy.port, frame, 2000)).closed, `${name}: uWS waits for more bytes`);
      continue;
    }
    const result = await breakProtocol(proxy.port, frame, 20_000);
    t.true(result.closed, `${name}: closed`);
    // uWS 20.30 closes the connection without a close frame (docs/operations.md).
    t.is(result.closeCode, ENGINE === 'uws' ? undefined : code, name);
    await waitFor(`${name}: the backend leg closed`, () => backend.closes.length > before);
  }
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('close codes and reasons pass both ways', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));

  const fromBackend = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  fromBackend.send('close:4321:backend says bye');
  t.deepEqual(await closed(fromBackend), { code: 4321, reason: 'backend says bye' });

  const fromClient = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('backend session', () => backend.openSessions() === 1);
  const upstream = backend.sessions.at(-1)!;
  const upstreamClosed = new Promise<[number, string]>((resolve) => upstream.once('close', (code, reason) => resolve([code, reason.toString()])));
  fromClient.close(4000, 'client says bye');
  t.deepEqual(await upstreamClosed, [4000, 'client says bye']);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('a refused upgrade is answered with the backend status; a dead backend with 502', async (t) => {
  const backend = await startBackend(t, 'a');
  const dead = { address: `127.0.0.1:${await deadPort(t)}` };
  const proxy = await startProxy(t, {
    pools: { live: { backends: [backend.address] }, gone: { backends: [dead.address] } },
    routes: [
      { match: { path: '/gone' }, pool: 'gone' },
      { match: { path: '/' }, pool: 'live' },
    ],
  });
  const refused = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/refuse`));
  t.regex(refused!.message, /unexpected response 403/);
  const unreachable = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/gone`));
  t.regex(unreachable!.message, /unexpected response 502/);
  await waitFor('counters back to zero', () => activeTotal(proxy, 'gone', [dead]) + activeTotal(proxy, 'live', [backend]) === 0);
  const ok = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  ok.close();
  await closed(ok);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'live', [backend]) === 0);
});

/** Opens `count` sessions at once and reports, per backend, how many each holds (backend side). */
async function openMany(port: number, count: number): Promise<WebSocket[]> {
  return Promise.all(Array.from({ length: count }, () => openSocket(`ws://127.0.0.1:${port}/`)));
}

function counts(backends: TestBackend[]): number[] {
  return backends.map((b) => b.openSessions());
}

test('least-conn with 2 workers: N×3 concurrent sessions land exactly N on each backend, and stay exact', async (t) => {
  const backends = [await startBackend(t, 'a'), await startBackend(t, 'b'), await startBackend(t, 'c')];
  const proxy = await startProxy(t, { workers: 2, ...onePool(backends) });
  const N = 40;
  const sockets = await openHeld(t, proxy.port, N * 3, backends, N * 3);
  t.deepEqual(counts(backends), [N, N, N]);
  t.deepEqual(backends.map((b) => activeOf(proxy, 'main', b)), [N, N, N]);

  // Close a random third, then open as many again: the new ones fill exactly the holes.
  for (let round = 0; round < 3; round++) {
    const shuffled = sockets.sort(() => Math.random() - 0.5);
    const leaving = shuffled.splice(0, N);
    await Promise.all(leaving.map((ws) => (ws.close(), closed(ws))));
    await waitFor('backends to see the closes', () => counts(backends).reduce((a, b) => a + b) === N * 2);
    await waitFor('table to see the closes', () => activeTotal(proxy, 'main', backends) === N * 2);
    sockets.push(...(await openHeld(t, proxy.port, N, backends, N * 3)));
    t.deepEqual(counts(backends), [N, N, N], `round ${round}`);
    t.deepEqual(backends.map((b) => activeOf(proxy, 'main', b)), [N, N, N], `round ${round}`);
  }
  for (const ws of sockets) ws.terminate();
  await waitFor('counters back to zero after abrupt drops', () => activeTotal(proxy, 'main', backends) === 0);
  t.pass();
});

test('a backend kill ends only its sessions, with 1014; counters follow exactly', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const proxy = await startProxy(t, onePool([a, b]));
  const sockets = await openMany(proxy.port, 20);
  const owners = await Promise.all(
    sockets.map(async (ws) => {
      ws.send('whoami');
      return (await nextMessage(ws)).data.toString();
    }),
  );
  const onA = sockets.filter((_, i) => owners[i] === 'a');
  const onB = sockets.filter((_, i) => owners[i] === 'b');
  t.is(onA.length, 10);
  const ends = onA.map((ws) => closed(ws));
  await a.kill();
  for (const end of await Promise.all(ends)) t.is(end.code, 1014);
  t.true(onB.every((ws) => ws.readyState === WebSocket.OPEN));
  await waitFor('table to drop the killed sessions', () => activeOf(proxy, 'main', a) === 0);
  t.is(activeOf(proxy, 'main', b), 10);
  onB[0].send('whoami');
  t.is((await nextMessage(onB[0])).data.toString(), 'b');
  for (const ws of onB) ws.terminate();
  await waitFor('counters back to zero after abrupt client drops', () => activeTotal(proxy, 'main', [a, b]) === 0);
});

test('a client that outruns a stalled backend is closed with 1013; the counter is released', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { websocket: { max_buffered: '1mb' }, ...onePool([backend]) });
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('backend session', () => backend.openSessions() === 1);
  // The backend stops reading: the proxy's writes toward it pile up.
  (backend.sessions[0] as unknown as { _socket: { pause(): void } })._socket.pause();
  const end = closed(ws);
  const chunk = Buffer.alloc(256 * 1024);
  for (let i = 0; i < 200 && ws.readyState === WebSocket.OPEN; i++) {
    ws.send(chunk);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.is((await end).code, 1013);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('a slow client pauses the backend instead of buffering without bound', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, ...onePool([backend]) });
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('backend session', () => backend.openSessions() === 1);
  const upstream = backend.sessions[0];
  // The client stops reading; the backend keeps sending until its own socket backs up.
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const chunk = Buffer.alloc(64 * 1024);
  let sent = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && upstream.bufferedAmount < 4 * 1024 * 1024) {
    upstream.send(chunk);
    sent += chunk.length;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  // The backend's own buffer grew: the proxy stopped reading from it rather than holding it all.
  t.true(upstream.bufferedAmount >= 4 * 1024 * 1024, `backend buffered ${upstream.bufferedAmount} of ${sent} sent`);
  let received = 0;
  ws.on('message', (data: Buffer) => (received += data.length));
  (ws as unknown as { _socket: { resume(): void } })._socket.resume();
  await waitFor('every byte to arrive once the client reads again', () => received === sent);
  ws.close();
  await closed(ws);
});

test('a client that leaves mid-handshake frees the slot and the upstream connection', async (t) => {
  // A backend that accepts TCP connections and never answers the upgrade.
  const held: Socket[] = [];
  // It reads (and drops) what it is sent, so that it sees the proxy close the connection.
  const silent = createServer((socket) => held.push(socket.resume()));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => {
    for (const socket of held) socket.destroy();
    silent.close();
  });
  const address = `127.0.0.1:${(silent.address() as { port: number }).port}`;
  const proxy = await startProxy(t, { pools: { main: { backends: [address] } } });
  const slot = proxy.plan.backendSlots[`main/${address}`];
  const client = connect(proxy.port, '127.0.0.1', () =>
    client.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
  );
  await waitFor('the upstream handshake to start', () => held.length === 1 && proxy.table.active(slot) === 1);
  const upstreamClosed = once(held[0], 'close');
  client.destroy();
  await upstreamClosed;
  await waitFor('counter back to zero', () => proxy.table.active(slot) === 0);
  t.pass();
});

test('keepalive pings cut a backend that stopped answering, and keep a quiet healthy session', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, websocket: { ping_interval: '10s' }, ...onePool([backend]) });
  const frozen = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('first backend session', () => backend.sessions.length === 1);
  const quiet = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('second backend session', () => backend.sessions.length === 2);
  // The backend side of the first session stops reading: it sees no ping, so it sends no pong.
  (backend.sessions[0] as unknown as { _socket: { pause(): void } })._socket.pause();
  const started = Date.now();
  t.is((await closed(frozen)).code, 1014);
  t.log(`cut after ${Date.now() - started} ms`);
  // Two ping rounds have passed with no traffic: the healthy quiet session is still open.
  t.is(quiet.readyState, WebSocket.OPEN);
  quiet.send('still here');
  t.is((await nextMessage(quiet)).data.toString(), 'still here');
  quiet.close();
  await closed(quiet);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

