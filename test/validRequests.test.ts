// Valid requests of every shape clients send, through the engine a config without `engine` gets:
// each is answered, and reaches the backend as sent (docs/engines.md: why the default is
// native-free).

import test from 'ava';
import { rawExchange, startBackend, startProxy, startTap } from './helpers.js';

const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const COOKIE = `Cookie: session=${'c'.repeat(6000)}\r\n`;
/** Status lines in a reply (a body of `a` runs into the next status line: no line anchor). */
const statuses = (reply: string) => reply.match(/HTTP\/1\.1 \d{3}/g) ?? [];
/** The reply holds `count` complete responses (each backend answer is the backend's name, `a`). */
const answered = (count: number) => (reply: string) => (reply.match(/\r\n\r\na/g) ?? []).length >= count;

test('the default engine is native-free, and it answers every valid request shape: HTTP/1.0, pipelining, many headers, `_` names, heads split over segments', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { pools: { main: { backends: [tap.address] } } }, null);
  t.is(proxy.engine, 'native-free');
  const seen = () => tap.received();

  // HTTP/1.0 without Host (optional in 1.0), then with keep-alive: the connection is kept for the
  // second request and closed after the one without keep-alive.
  const old = await rawExchange(proxy.port, 'GET /ten HTTP/1.0\r\n\r\n', 20_000);
  t.deepEqual(statuses(old.reply), ['HTTP/1.1 200'], 'HTTP/1.0 without Host');
  t.true(old.closedByPeer, 'an HTTP/1.0 connection without keep-alive is closed after its answer');
  const kept = await rawExchange(proxy.port, 'GET /ka1 HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\nGET /ka2 HTTP/1.0\r\nHost: a.example\r\n\r\n', 20_000);
  t.deepEqual(statuses(kept.reply), ['HTTP/1.1 200', 'HTTP/1.1 200'], 'HTTP/1.0 keep-alive carries a second request');
  t.true(kept.closedByPeer);
  t.true(seen().includes('GET /ka1 HTTP/1.1\r\n') && seen().includes('GET /ka2 HTTP/1.1\r\n'));

  // Three pipelined requests in one write, the first slow: the answers come in request order.
  const pipelined = await rawExchange(
    proxy.port,
    'GET /p1/slow?ms=200 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n',
    20_000,
  );
  t.deepEqual(statuses(pipelined.reply), ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200'], 'every pipelined request is answered');
  t.true(seen().indexOf('GET /p1/slow') < seen().indexOf('GET /p2 ') && seen().indexOf('GET /p2 ') < seen().indexOf('GET /p3 '));

  // 60 headers, and a header name with `_` that is no twin of a forwarding header.
  const many = Array.from({ length: 60 }, (_, i) => `X-Header-${i}: ${i}\r\n`).join('');
  const wide = await rawExchange(proxy.port, `GET /many HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n${many}X_Trace_Id: 42\r\n\r\n`, 20_000);
  t.deepEqual(statuses(wide.reply), ['HTTP/1.1 200'], '60 headers and an `_` name');
  t.true(seen().toLowerCase().includes('\r\nx-header-59: 59\r\n'), 'the 60th header reaches the backend');
  t.true(seen().toLowerCase().includes('\r\nx_trace_id: 42\r\n'), 'the `_` name reaches the backend');

  // A 6 KB Cookie sent in 1460-byte segments, on a request and on a WebSocket upgrade.
  const split = await rawExchange(proxy.port, `GET /cookie HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n${COOKIE}\r\n`, 20_000, { segment: 1460 });
  t.deepEqual(statuses(split.reply), ['HTTP/1.1 200'], 'a 6 KB head in 1460-byte segments');
  t.true(seen().toLowerCase().includes(COOKIE.toLowerCase()), 'the whole Cookie reaches the backend');
  const upgrade = await rawExchange(proxy.port, `GET /ws HTTP/1.1\r\nHost: a.example\r\n${UPGRADE}${COOKIE}\r\n`, 20_000, {
    segment: 1460,
    until: (reply) => reply.includes('\r\n\r\n'),
  });
  t.deepEqual(statuses(upgrade.reply), ['HTTP/1.1 101'], 'a WebSocket upgrade with a 6 KB head in 1460-byte segments');

  // And the worker keeps serving ordinary requests on a kept-alive connection.
  const after = await rawExchange(proxy.port, 'GET /x HTTP/1.1\r\nHost: a.example\r\n\r\nGET /y HTTP/1.1\r\nHost: a.example\r\n\r\n', 20_000, { until: answered(2) });
  t.deepEqual(statuses(after.reply), ['HTTP/1.1 200', 'HTTP/1.1 200']);
});
