// Request heads through real sockets on both engines: Host, header names a backend could take for
// the forwarding headers, size limits (414, 431), and clients that stop sending (408).

import test from 'ava';
import { ENGINE, rawExchange, startBackend, startProxy, startTap } from './helpers.js';

const get = (headers: string, target = '/') => `GET ${target} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`;
const statusLine = (reply: string) => reply.split('\r\n')[0];

test('a duplicated or invalid Host is refused with 400 and the connection closed; nothing reaches the backend', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { pools: { main: { backends: [tap.address] } } });
  const refused: [string, string][] = [
    ['two Host headers', 'Host: a.example\r\nHost: b.example\r\n'],
    ['two identical Host headers', 'Host: a.example\r\nHost: a.example\r\n'],
    ['a Host with a path', 'Host: a.example/evil\r\n'],
    ['a Host with userinfo', 'Host: user@a.example\r\n'],
    ['a Host with a space', 'Host: a.example b.example\r\n'],
    ['a Host with a port that is not digits', 'Host: a.example:http\r\n'],
    ['a Host with a port past 65535', 'Host: a.example:99999\r\n'],
    ['an empty Host', 'Host:\r\n'],
  ];
  for (const [name, headers] of refused) {
    const { reply, closedByPeer } = await rawExchange(proxy.port, get(headers), 20_000);
    t.is(statusLine(reply), 'HTTP/1.1 400 Bad Request', name);
    t.regex(reply, /x-fairway-error: bad-host/i, name);
    t.true(closedByPeer, `${name}: the connection is closed`);
  }
  t.is(tap.received(), '', 'nothing reached the backend');
  for (const host of ['a.example', 'a.example:8080', '127.0.0.1:80', '[::1]:8080', 'xn--bcher-kva.example']) {
    const { reply } = await rawExchange(proxy.port, get(`Host: ${host}\r\n`), 20_000);
    t.is(statusLine(reply), 'HTTP/1.1 200 OK', host);
    t.true(tap.received().includes(`\r\nhost: ${host}\r\n`), `${host} reaches the backend`);
  }
});

test('a target that is not a path is refused unless it is an absolute URL naming the Host; HTTP/1.1 without Host is refused', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, {
    pools: { main: { backends: [tap.address] }, admin: { backends: [backend.address] } },
    routes: [
      { match: { path: '/admin' }, pool: 'admin', deny: ['0.0.0.0/0'] },
      { match: { path: '/' }, pool: 'main' },
    ],
  });
  const noHost = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n', 20_000);
  // uWS 20.30 closes such a request itself, at once and without an answer.
  if (ENGINE === 'uws') t.is(noHost.reply, '', 'HTTP/1.1 without Host');
  else t.is(statusLine(noHost.reply), 'HTTP/1.1 400 Bad Request', 'HTTP/1.1 without Host');
  t.true(noHost.closedByPeer);
  if (ENGINE === 'uws') {
    // uWS 20.30 takes only targets that start with `/`: any other it holds ~10 s and closes
    // without an answer (docs/operations.md), so nothing of it can reach a backend.
    const { reply, closedByPeer } = await rawExchange(proxy.port, 'GET http://admin.internal/admin HTTP/1.1\r\nHost: a.example\r\n\r\n', 30_000);
    t.is(reply, '');
    t.true(closedByPeer);
    t.is(tap.received(), '', 'nothing reached a backend');
    return;
  }
  for (const [name, payload] of [
    ['an absolute URL naming another host', 'GET http://admin.internal/admin HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n'],
    ['a target without a slash', 'GET admin HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n'],
  ]) {
    const { reply, closedByPeer } = await rawExchange(proxy.port, payload, 20_000);
    t.is(statusLine(reply), 'HTTP/1.1 400 Bad Request', name);
    // node:http's parser refuses a target without a slash itself.
    t.regex(reply, /x-fairway-error: bad-(target|request)/i, name);
    t.true(closedByPeer, name);
  }
  t.is(tap.received(), '', 'nothing reached a backend');
  // Its own Host in absolute form: taken as the path, and routed by it (here: refused by /admin's deny).
  const denied = await rawExchange(proxy.port, 'GET http://a.example/admin HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n', 20_000);
  t.is(statusLine(denied.reply), 'HTTP/1.1 403 Forbidden');
  const ok = await rawExchange(proxy.port, 'GET http://A.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n', 20_000);
  t.is(statusLine(ok.reply), 'HTTP/1.1 200 OK');
  t.true(tap.received().startsWith('GET /x?y=1 HTTP/1.1\r\n'), 'the backend gets the origin form');
});

test('Host listed in Connection still reaches the backend, once; underscore twins of the forwarding headers are dropped', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { pools: { main: { backends: [tap.address] } } });
  const { reply } = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close, host, x-dropped\r\nX-Dropped: 1\r\n\r\n', 20_000);
  t.is(statusLine(reply), 'HTTP/1.1 200 OK');
  const seen = tap.received().toLowerCase();
  t.is(seen.split('\r\nhost: ').length, 2, 'one Host header');
  t.true(seen.includes('\r\nhost: a.example\r\n'));
  t.false(seen.includes('x-dropped'), 'other headers listed in Connection are hop-by-hop');

  const before = tap.received().length;
  const twins = 'X_Forwarded_For: 6.6.6.6\r\nX_Forwarded_Host: evil.example\r\nx_forwarded_proto: https\r\nContent_Length: 5\r\nTransfer_Encoding: chunked\r\n';
  const sent = await rawExchange(proxy.port, get(`Host: a.example\r\n${twins}`), 20_000);
  if (ENGINE === 'uws') {
    // uWS 20.30 takes no header name with `_`: it closes the connection without an answer
    // (docs/engines.md).
    t.is(sent.reply, '', 'uWS closes the connection');
  } else {
    t.is(statusLine(sent.reply), 'HTTP/1.1 200 OK');
    const upstream = tap.received().slice(before).toLowerCase();
    t.false(upstream.includes('_'), 'no underscore twin reaches the backend');
    t.true(upstream.includes('\r\nx-forwarded-for: 127.0.0.1\r\n'), 'fairway’s own X-Forwarded-For');
    const other = await rawExchange(proxy.port, get('Host: a.example\r\nX_Custom_Name: kept\r\n'), 20_000);
    t.is(statusLine(other.reply), 'HTTP/1.1 200 OK');
    t.true(tap.received().includes('\r\nx_custom_name: kept\r\n'), 'other names with `_` pass');
  }
});

test('a request line past limits.max_request_line is 414, headers past limits.max_request_head are 431; the worker keeps serving', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { admin: { listen: '127.0.0.1:0' }, limits: { max_request_line: '2kb', max_request_head: '3kb' }, pools: { main: { backends: [tap.address] } } });
  const cases: [string, string, string, string][] = [
    ['a 2100-byte target', get('Host: a.example\r\n', `/${'a'.repeat(2100)}`), '414 URI Too Long', 'uri-too-long'],
    ['a 100 KB target', get('Host: a.example\r\n', `/${'a'.repeat(100_000)}`), '414 URI Too Long', 'uri-too-long'],
    ['a 3.5 KB header section', get(`Host: a.example\r\nCookie: ${'c'.repeat(3500)}\r\n`), '431 Request Header Fields Too Large', 'head-too-large'],
  ];
  const answered = new Map<string, number>();
  for (const [name, payload, status, code] of cases) {
    const { reply, closedByPeer } = await rawExchange(proxy.port, payload, 20_000);
    if (ENGINE === 'uws' && payload.length > 64 * 1024 && reply === '') {
      // uWS 20.30 reads a head that came in one read whatever its size, but closes one split
      // over reads past its 4 KB buffer without an answer (docs/engines.md).
      t.pass(`${name}: closed by uWS`);
    } else {
      t.is(statusLine(reply), `HTTP/1.1 ${status}`, name);
      answered.set(code, (answered.get(code) ?? 0) + 1);
    }
    t.true(closedByPeer, `${name}: the connection is closed`);
  }
  t.is(tap.received(), '', 'nothing reached the backend');
  // Every answer is counted, including those node:http refuses before fairway's checks
  // (native-free's 100 KB target).
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  for (const [code, count] of answered) t.regex(metrics, new RegExp(`^fairway_errors_total\\{code="${code}"\\} ${count}$`, 'm'), code);
  const within = await rawExchange(proxy.port, get(`Host: a.example\r\nCookie: ${'c'.repeat(2000)}\r\n`, `/${'a'.repeat(1900)}`), 20_000);
  t.is(statusLine(within.reply), 'HTTP/1.1 200 OK', 'a head within both limits passes');
});

test('a client that stops sending its head gets 408 (native-free) or is closed (uws); one that stops sending its body gets 408', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { timeouts: { request_head: '1s', request_body: '1s' }, pools: { main: { backends: [backend.address] } } });
  const startedAt = Date.now();
  const head = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: a.example\r\nX-Slow: ', 30_000);
  // uWS closes a connection whose head is not complete after its own 10 s, without an answer.
  if (ENGINE === 'uws') t.is(head.reply, '');
  else {
    t.is(statusLine(head.reply), 'HTTP/1.1 408 Request Timeout');
    t.regex(head.reply, /x-fairway-error: head-timeout/);
  }
  t.true(head.closedByPeer, 'the connection is closed');
  t.true(Date.now() - startedAt >= 900, 'not before the timeout');

  const body = await rawExchange(proxy.port, 'POST /hash HTTP/1.1\r\nHost: a.example\r\nContent-Length: 10\r\n\r\nhello', 30_000);
  t.is(statusLine(body.reply), 'HTTP/1.1 408 Request Timeout');
  t.regex(body.reply, /x-fairway-error: body-timeout/);
  t.true(body.closedByPeer, 'the connection is closed');
  const after = await rawExchange(proxy.port, get('Host: a.example\r\n'), 20_000);
  t.is(statusLine(after.reply), 'HTTP/1.1 200 OK', 'the worker keeps serving');
});
