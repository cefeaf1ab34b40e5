// L4 TCP mode: raw connections through the same pools, with exact counts, half-close, PROXY
// protocol both ways, connect failures, idle timeout and draining.

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { encodeProxyHeader, parseProxyHeader } from '../dist/src/core/proxyProtocol.js';
import { BACKEND_DOWN, ConfigError, validateConfig } from '../dist/src/index.js';
import { deadPort, freePort, startBackend, startProxy, waitFor } from './helpers.js';

interface TcpBackend {
  name: string;
  address: string;
  open(): number;
  /** Client address each connection's PROXY header gave, in order ('' without one). */
  proxied: string[];
}

/**
 * Answers each chunk with "<name>:<chunk>"; when the client half-closes, answers "bye from <name>"
 * and closes its side. With `proxy`, reads a PROXY header first.
 */
async function startTcpBackend(t: ExecutionContext, name: string, proxy = false): Promise<TcpBackend> {
  const sockets = new Set<Socket>();
  const proxied: string[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let header = proxy;
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      if (header) {
        pending = Buffer.concat([pending, chunk]);
        const parsed = parseProxyHeader(pending);
        if (parsed.kind === 'incomplete') return;
        header = false;
        proxied.push(parsed.kind === 'complete' ? (parsed.addresses?.source ?? '') : 'invalid');
        chunk = pending.subarray(parsed.kind === 'complete' ? parsed.length : 0);
        if (chunk.length === 0) return;
      }
      socket.write(`${name}:${chunk.toString()}`);
    });
    socket.on('end', () => socket.end(`bye from ${name}`));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { name, address: `127.0.0.1:${(server.address() as { port: number }).port}`, open: () => sockets.size, proxied };
}

async function dial(port: number): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  // fairway closes with a reset when it cuts a connection that has unread data: that is expected.
  socket.on('error', () => undefined);
  return socket;
}

function closedTcp(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));
}

async function ask(socket: Socket, text: string | Buffer): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

function activeOfTcp(proxy: Awaited<ReturnType<typeof startProxy>>, backend: TcpBackend): number {
  return proxy.table.active(proxy.plan.backendSlots[`db/${backend.address}`]);
}

test('TCP connections are balanced with exact counts and pass data both ways, with half-close', async (t) => {
  const a = await startTcpBackend(t, 'a');
  const b = await startTcpBackend(t, 'b');
  const proxy = await startProxy(t, {
    pools: { web: { backends: ['127.0.0.1:1'] }, db: { backends: [a.address, b.address] } },
    tcp: [{ listen: '127.0.0.1:0', pool: 'db' }],
  });
  const port = proxy.tcpPorts[0];
  const sockets = await Promise.all(Array.from({ length: 10 }, () => dial(port)));
  const answers = await Promise.all(sockets.map((socket, i) => ask(socket, `ping ${i}`)));
  t.deepEqual(answers.map((text) => text.slice(2)).sort(), Array.from({ length: 10 }, (_, i) => `ping ${i}`).sort());
  t.is(answers.filter((text) => text.startsWith('a:')).length, 5);
  await waitFor('both backends to hold 5 connections', () => a.open() === 5 && b.open() === 5);
  t.is(activeOfTcp(proxy, a), 5);
  t.is(activeOfTcp(proxy, b), 5);

  // Half-close: the client ends its side, still hears the backend's last words, then both close.
  const last = sockets[0];
  const heard: Buffer[] = [];
  last.on('data', (chunk: Buffer) => heard.push(chunk));
  last.end('last words');
  await closedTcp(last);
  t.regex(Buffer.concat(heard).toString(), /^[ab]:last words(bye from [ab])?$/);
  t.regex(Buffer.concat(heard).toString(), /bye from [ab]$/);

  for (const socket of sockets.slice(1, 5)) socket.destroy();
  await waitFor('5 connections left', () => activeOfTcp(proxy, a) + activeOfTcp(proxy, b) === 5);
  for (const socket of sockets.slice(5)) socket.destroy();
  await waitFor('every count back to 0', () => activeOfTcp(proxy, a) === 0 && activeOfTcp(proxy, b) === 0 && a.open() === 0 && b.open() === 0);
  t.pass();
});

test('PROXY protocol: read from clients (v1 and v2), sent to backends (v1 and v2); a bad header closes', async (t) => {
  const v2 = await startTcpBackend(t, 'v2', true);
  const v1 = await startTcpBackend(t, 'v1', true);
  const proxy = await startProxy(t, {
    pools: { web: { backends: ['127.0.0.1:1'] }, db: { backends: [v2.address] }, plain: { backends: [v1.address] } },
    routes: [{ pool: 'web' }],
    tcp: [
      { listen: '127.0.0.1:0', pool: 'db', accept_proxy: true, send_proxy: 'v2' },
      { listen: '127.0.0.1:0', pool: 'plain', send_proxy: 'v1' },
    ],
  });
  const [behindBalancer, direct] = proxy.tcpPorts;
  const one = await dial(behindBalancer);
  t.is(await ask(one, 'PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\nhello'), 'v2:hello');
  const two = await dial(behindBalancer);
  const header = Buffer.from('0d0a0d0a000d0a515549540a2111000ccb007105' + '7f000001' + '1f900050', 'hex');
  t.is(await ask(two, Buffer.concat([header, Buffer.from('hi')])), 'v2:hi');
  t.deepEqual(v2.proxied, ['198.51.100.7', '203.0.113.5']);

  const three = await dial(direct);
  t.is(await ask(three, 'plain'), 'v1:plain');
  t.deepEqual(v1.proxied, ['127.0.0.1']);

  const bad = await dial(behindBalancer);
  bad.write('GET / HTTP/1.1\r\n\r\n');
  await closedTcp(bad);
  for (const socket of [one, two, three]) socket.destroy();
  await waitFor('counts back to 0', () => proxy.table.active(proxy.plan.backendSlots[`db/${v2.address}`]) === 0 && proxy.table.active(proxy.plan.backendSlots[`plain/${v1.address}`]) === 0);
  t.is(v2.proxied.length, 2);
});

test('an unreachable backend is passed over; with none reachable the connection closes; idle connections close', async (t) => {
  const live = await startTcpBackend(t, 'live');
  const dead = `127.0.0.1:${await deadPort(t)}`;
  const proxy = await startProxy(t, {
    pools: { web: { backends: ['127.0.0.1:1'] }, db: { algorithm: 'round-robin', backends: [dead, live.address] }, gone: { backends: [dead] } },
    routes: [{ pool: 'web' }],
    tcp: [
      { listen: '127.0.0.1:0', pool: 'db', idle_timeout: '400ms' },
      { listen: '127.0.0.1:0', pool: 'gone' },
    ],
  });
  const sockets = await Promise.all([1, 2, 3, 4].map(() => dial(proxy.tcpPorts[0])));
  const answers = await Promise.all(sockets.map((socket) => ask(socket, 'x')));
  t.deepEqual(answers, ['live:x', 'live:x', 'live:x', 'live:x']);
  // Idle for longer than idle_timeout: fairway closes both sides.
  const started = Date.now();
  await Promise.all(sockets.map((socket) => closedTcp(socket)));
  t.true(Date.now() - started >= 300);
  await waitFor('the live backend to see them closed, and fairway to count them gone', () => live.open() === 0 && activeOfTcp(proxy, live) === 0);

  const nowhere = await dial(proxy.tcpPorts[1]);
  nowhere.write('anyone?');
  const received: Buffer[] = [];
  nowhere.on('data', (chunk: Buffer) => received.push(chunk));
  await closedTcp(nowhere);
  t.is(received.length, 0);
  await waitFor('the refused connection released', () => proxy.table.active(proxy.plan.backendSlots[`gone/${dead}`]) === 0);
  t.true(proxy.table.failures(proxy.plan.backendSlots[`gone/${dead}`]) >= 1n);
});

test('draining a TCP backend closes its connections after drain.timeout; new ones go elsewhere', async (t) => {
  const a = await startTcpBackend(t, 'a');
  const b = await startTcpBackend(t, 'b');
  const proxy = await startProxy(t, {
    pools: { web: { backends: ['127.0.0.1:1'] }, db: { algorithm: 'round-robin', backends: [a.address, b.address], drain: { timeout: '200ms', window: '200ms' } } },
    routes: [{ pool: 'web' }],
    tcp: [{ listen: '127.0.0.1:0', pool: 'db' }],
  });
  const sockets = await Promise.all([1, 2, 3, 4].map(() => dial(proxy.tcpPorts[0])));
  const answers = await Promise.all(sockets.map((socket) => ask(socket, 'x')));
  const onA = sockets.filter((_, i) => answers[i] === 'a:x');
  t.is(onA.length, 2);
  proxy.control.drain(`db/${a.address}`);
  await Promise.all(onA.map((socket) => closedTcp(socket)));
  const later = await dial(proxy.tcpPorts[0]);
  t.is(await ask(later, 'y'), 'b:y');
  sockets.push(later);
  await waitFor('a holds nothing', () => activeOfTcp(proxy, a) === 0 && a.open() === 0);
  t.is(activeOfTcp(proxy, b), 3);
  for (const socket of sockets) socket.destroy();
});

test('TCP listeners are validated, naming the field', (t) => {
  const error = t.throws(
    () =>
      validateConfig({
        pools: { web: { backends: ['127.0.0.1:1'] }, db: { backends: ['127.0.0.1:2'] } },
        tcp: [{ listen: 'nowhere', pool: 'cache', send_proxy: 'v3', accept_proxy: 1, idle_timeout: 'long', mode: 'udp' }],
      }),
    { instanceOf: ConfigError },
  );
  for (const field of ['tcp[0].listen', 'tcp[0].pool', 'tcp[0].send_proxy', 'tcp[0].accept_proxy', 'tcp[0].idle_timeout', 'tcp[0].mode']) {
    t.true(error!.problems.some((p) => p.startsWith(`${field}:`)), field);
  }
  // A pool used by a TCP listener does not count as an HTTP pool needing routes.
  t.notThrows(() => validateConfig({ pools: { web: { backends: ['127.0.0.1:1'] }, db: { backends: ['127.0.0.1:2'] } }, tcp: [{ listen: '127.0.0.1:0', pool: 'db' }] }));
});

test('TCP pools use active health checks: a backend found down takes no connections', async (t) => {
  const live = await startTcpBackend(t, 'live');
  const dead = `127.0.0.1:${await deadPort(t)}`;
  const proxy = await startProxy(t, {
    pools: {
      web: { backends: ['127.0.0.1:1'] },
      db: { algorithm: 'round-robin', backends: [dead, live.address], retries: { count: 0 }, health: { type: 'tcp', interval: '200ms', timeout: '200ms', fall: 1 } },
    },
    routes: [{ pool: 'web' }],
    tcp: [{ listen: '127.0.0.1:0', pool: 'db' }],
  });
  await waitFor('the dead backend marked down', () => proxy.table.state(proxy.plan.backendSlots[`db/${dead}`]) === BACKEND_DOWN);
  const sockets = await Promise.all([1, 2, 3, 4].map(() => dial(proxy.tcpPorts[0])));
  t.deepEqual(await Promise.all(sockets.map((socket) => ask(socket, 'x'))), ['live:x', 'live:x', 'live:x', 'live:x']);
  t.is(proxy.table.failures(proxy.plan.backendSlots[`db/${dead}`]), 0n);
  for (const socket of sockets) socket.destroy();
});

test('PROXY headers round-trip for IPv4 and IPv6 in both versions; truncated and garbage input is told apart', (t) => {
  const v4 = { source: '198.51.100.7', sourcePort: 5555, destination: '::ffff:127.0.0.1', destinationPort: 80 };
  const v6 = { source: '2001:db8::7', sourcePort: 1, destination: '::1', destinationPort: 65535 };
  for (const version of [1, 2] as const) {
    const four = parseProxyHeader(encodeProxyHeader(version, v4));
    t.deepEqual(four.kind === 'complete' && four.addresses, { ...v4, destination: '127.0.0.1' });
    const six = parseProxyHeader(Buffer.concat([encodeProxyHeader(version, v6), Buffer.from('data')]));
    t.is(six.kind, 'complete');
    if (six.kind === 'complete') {
      t.is(six.addresses?.sourcePort, 1);
      t.is(six.addresses?.destinationPort, 65535);
      t.true(['2001:db8::7', '2001:db8:0:0:0:0:0:7'].includes(six.addresses!.source));
    }
    const whole = encodeProxyHeader(version, v4);
    t.is(parseProxyHeader(whole.subarray(0, whole.length - 3)).kind, 'incomplete');
  }
  t.is(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'invalid');
  t.is(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n')).kind, 'invalid');
  t.is(parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(120)}`)).kind, 'invalid');
});

test('PROXY v1 in front of the HTTP listener: a tcp listener turns it into v2 for the uWS listener', async (t) => {
  const web = await startBackend(t, 'web');
  const httpPort = await freePort();
  const proxy = await startProxy(t, {
    listen: `127.0.0.1:${httpPort}`,
    proxy_protocol: true,
    pools: { web: { backends: [web.address] }, self: { backends: [`127.0.0.1:${httpPort}`] } },
    routes: [{ match: { path: '/' }, pool: 'web', allow: ['192.0.2.0/24'] }],
    tcp: [{ listen: '127.0.0.1:0', pool: 'self', accept_proxy: true, send_proxy: 'v2' }],
  });
  const fetchVia = async (source: string) => {
    const socket = await dial(proxy.tcpPorts[0]);
    socket.write(`PROXY TCP4 ${source} 127.0.0.1 40000 443\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n`);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    return chunk.toString().split('\r\n')[0];
  };
  t.is(await fetchVia('192.0.2.10'), 'HTTP/1.1 200 OK');
  t.is(web.lastHeaders['x-forwarded-for'], '192.0.2.10');
  t.regex(await fetchVia('198.51.100.1'), /^HTTP\/1.1 403/);
});
