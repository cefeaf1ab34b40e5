// Request body framing through real sockets: every shape that two HTTP parsers could read two ways
// is refused before a byte reaches a backend, and valid bodies reach it with fairway's own framing.

import test from 'ava';
import { ENGINE, rawExchange, startBackend, startProxy, startTap, waitFor } from './helpers.js';

/** A request that a backend reading the framing another way would see inside the first one's body. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
const BODY = `hello${SMUGGLED}`;
const post = (headers: string, body: string) => `POST /hash HTTP/1.1\r\nHost: x\r\n${headers}\r\n${body}`;
const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

/**
 * [case, raw request, status fairway answers, whether uWS 20.30 itself closes the connection
 * without a status line]. uWS parses the head and the chunk framing itself and closes the
 * connection on what it cannot parse (it has no way to answer 400 there); a request pipelined
 * behind one that fairway refuses is never read (docs/operations.md).
 */
const REFUSED: [string, string, number, boolean][] = [
  ['two Content-Lengths, the longer first', post(`Content-Length: ${BODY.length}\r\nContent-Length: 5\r\n`, BODY), 400, false],
  ['two Content-Lengths, the shorter first', post(`Content-Length: 5\r\nContent-Length: ${BODY.length}\r\n`, BODY), 400, true],
  ['two identical Content-Lengths', post('Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'), 400, false],
  ['a negative Content-Length', post('Content-Length: -74\r\n', BODY), 400, true],
  ['a Content-Length with a space inside', post('Content-Length: 0 80\r\n', BODY), 400, true],
  ['a Content-Length list', post('Content-Length: 5, 5\r\n', 'hello'), 400, true],
  ['a Content-Length with a sign', post('Content-Length: +5\r\n', 'hello'), 400, true],
  ['a decimal Content-Length', post('Content-Length: 5.0\r\n', 'hello'), 400, true],
  ['Transfer-Encoding with Content-Length', post('Transfer-Encoding: chunked\r\nContent-Length: 5\r\n', `0\r\n\r\n${SMUGGLED}`), 400, true],
  ['Content-Length with Transfer-Encoding', post('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\n${SMUGGLED}`), 400, true],
  ['chunked that is not the final coding', post('Transfer-Encoding: chunked, identity\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400, false],
  ['chunked twice, in two headers', post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400, false],
  ['a coding that only ends in chunked', post('Transfer-Encoding: xchunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 400, false],
  ['a coding before chunked', post('Transfer-Encoding: gzip, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'), 501, false],
  ['a WebSocket upgrade with a body', `GET / HTTP/1.1\r\nHost: x\r\n${UPGRADE}Content-Length: 5\r\n\r\nhello`, 400, false],
];

/**
 * Chunked bodies broken after a valid head. The body streams: the head may already be on its way
 * to the backend when the broken chunk line is read, so what is checked is that the backend never
 * gets a complete request (fairway writes its own chunk framing and cuts the connection).
 */
const BROKEN_CHUNKS: [string, string][] = [
  ['a chunk size that is not hex', `zz\r\nhello\r\n0\r\n\r\n${SMUGGLED}`],
  ['a chunk size with 0x', `0x5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`],
  ['a chunk size past 64 bits', `fffffffffffffffff1\r\nhello\r\n0\r\n\r\n${SMUGGLED}`],
  ['chunk data longer than its size', `5\r\nhelloXX0\r\n\r\n${SMUGGLED}`],
  ['chunk lines ended by LF alone', `5\nhello\n0\n\n${SMUGGLED}`],
];

test('requests whose body framing is ambiguous are refused and their connection closed; nothing reaches the backend', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { pools: { main: { backends: [tap.address] } } });
  for (const [name, payload, status, silentOnUws] of REFUSED) {
    const { reply, closedByPeer } = await rawExchange(proxy.port, payload, 20_000);
    if (ENGINE === 'uws' && silentOnUws) t.is(reply, '', `${name}: closed by uWS without an answer`);
    else t.is(reply.split('\r\n')[0], `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Not Implemented'}`, name);
    t.true(closedByPeer, `${name}: the connection is closed`);
    t.is(tap.received(), '', `${name}: nothing reaches the backend`);
  }
  t.is(tap.connections(), 0);
  t.is(backend.hits, 0);
  for (const [name, chunks] of BROKEN_CHUNKS) {
    const { reply, closedByPeer } = await rawExchange(proxy.port, post('Transfer-Encoding: chunked\r\n', chunks), 20_000);
    if (ENGINE === 'uws') t.is(reply, '', `${name}: closed by uWS without an answer`);
    else t.is(reply.split('\r\n')[0], 'HTTP/1.1 400 Bad Request', name);
    t.true(closedByPeer, `${name}: the connection is closed`);
    await waitFor(`${name}: every connection toward the backend closed`, () => tap.open() === 0);
    t.false(tap.received().includes('\r\n0\r\n\r\n'), `${name}: no complete body reached the backend`);
  }
  t.false(tap.received().includes('smuggled'));
  // The worker keeps serving.
  const { reply } = await rawExchange(proxy.port, 'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 20_000);
  t.regex(reply, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\na$/);
});

test('a valid body reaches the backend with one framing header of fairway’s own', async (t) => {
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const proxy = await startProxy(t, { pools: { main: { backends: [tap.address] } } });
  const hashOf = (reply: string) => JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)) as { length: number };
  const framingHeaders = (received: string) => received.split('\r\n').filter((line) => /^(content-length|transfer-encoding):/i.test(line));

  const byLength = await rawExchange(proxy.port, post('Content-Length: 5\r\nConnection: close\r\n', 'hello'), 20_000);
  t.is(hashOf(byLength.reply).length, 5);
  t.deepEqual(framingHeaders(tap.received()), ['content-length: 5']);
  t.true(tap.received().endsWith('\r\n\r\nhello'));

  const before = tap.received().length;
  const chunked = await rawExchange(proxy.port, post('Transfer-Encoding: Chunked\r\nConnection: close\r\n', '3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n'), 20_000);
  t.is(hashOf(chunked.reply).length, 5);
  t.deepEqual(framingHeaders(tap.received().slice(before)), ['transfer-encoding: chunked']);

  const empty = tap.received().length;
  const bodiless = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', 20_000);
  t.regex(bodiless.reply, /^HTTP\/1\.1 200 OK/);
  t.deepEqual(framingHeaders(tap.received().slice(empty)), ['content-length: 0']);
});
