// Routing on method and query parameters, and allow/deny lists of client addresses per route.

import { once } from 'node:events';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import test from 'ava';
import { request } from 'undici';
import { AccessList } from '../dist/src/core/accessList.js';
import { ConfigError, validateConfig } from '../dist/src/index.js';
import { openSocket, startBackend, startProxy } from './helpers.js';

async function call(port: number, path: string, method = 'GET') {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method: method as 'GET' });
  return { status: res.statusCode, error: res.headers['x-fairway-error'], body: await res.body.text() };
}

test('routes match on method and on query parameters, in order', async (t) => {
  const reads = await startBackend(t, 'reads');
  const writes = await startBackend(t, 'writes');
  const v2 = await startBackend(t, 'v2');
  const proxy = await startProxy(t, {
    pools: { reads: { backends: [reads.address] }, writes: { backends: [writes.address] }, v2: { backends: [v2.address] } },
    routes: [
      { match: { path: '/api', query: { version: '2' } }, pool: 'v2' },
      { match: { path: '/api', method: ['POST', 'put'] }, pool: 'writes' },
      { match: { path: '/api' }, pool: 'reads' },
    ],
  });
  t.is((await call(proxy.port, '/api/items')).body, 'reads');
  t.is((await call(proxy.port, '/api/items', 'POST')).body, 'writes');
  t.is((await call(proxy.port, '/api/items', 'PUT')).body, 'writes');
  t.is((await call(proxy.port, '/api/items?version=2', 'POST')).body, 'v2');
  t.is((await call(proxy.port, '/api/items?version=3')).body, 'reads');
  t.is((await call(proxy.port, '/other')).status, 404);
});

test('host matches exactly or by wildcard', async (t) => {
  const apex = await startBackend(t, 'apex');
  const tenants = await startBackend(t, 'tenants');
  const proxy = await startProxy(t, {
    pools: { apex: { backends: [apex.address] }, tenants: { backends: [tenants.address] } },
    routes: [
      { match: { host: 'example.com' }, pool: 'apex' },
      { match: { host: '*.example.com' }, pool: 'tenants' },
    ],
  });
  const via = async (host: string) => {
    const res = await request(`http://127.0.0.1:${proxy.port}/`, { headers: { host } });
    return res.statusCode === 200 ? res.body.text() : (await res.body.text(), res.statusCode);
  };
  t.is(await via('example.com'), 'apex');
  t.is(await via('Example.COM:8080'), 'apex');
  t.is(await via('acme.example.com'), 'tenants');
  t.is(await via('a.b.example.com'), 'tenants');
  t.is(await via('badexample.com'), 404);
});

test('allow and deny lists: 403 for HTTP and for WebSocket upgrades, the rest passes', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, {
    pools: { main: { backends: [backend.address] } },
    routes: [
      { match: { path: '/internal' }, pool: 'main', allow: ['10.0.0.0/8', '192.168.0.0/16'] },
      { match: { path: '/blocked' }, pool: 'main', deny: ['127.0.0.1'] },
      { match: { path: '/local' }, pool: 'main', allow: ['127.0.0.0/8', '::1'], deny: ['127.0.0.2'] },
    ],
  });
  const internal = await call(proxy.port, '/internal');
  t.is(internal.status, 403);
  t.is(internal.error, 'forbidden');
  t.is((await call(proxy.port, '/blocked')).status, 403);
  t.is((await call(proxy.port, '/local')).body, 'a');
  const refused = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/blocked`));
  t.regex(refused!.message, /unexpected response 403/);
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/local`);
  ws.close();
  t.is(backend.hits, 1);
});

test('access lists: IPv4, IPv6 and IPv4-mapped IPv6 addresses', (t) => {
  const list = new AccessList(['10.0.0.0/8', '2001:db8::/32', '::1'], ['10.1.2.3']);
  t.true(list.permits('10.9.8.7'));
  t.false(list.permits('10.1.2.3'));
  t.false(list.permits('11.0.0.1'));
  t.true(list.permits('2001:db8::42'));
  t.true(list.permits('::1'));
  t.true(list.permits('::ffff:10.0.0.1'), 'a mapped address is checked as IPv4');
  t.false(list.permits('not an address'));
  t.true(new AccessList(undefined, ['::1']).permits('127.0.0.1'));
});

test('bad ranges, methods and query matches are config errors naming the field', (t) => {
  const error = t.throws(
    () =>
      validateConfig({
        pools: { a: { backends: ['127.0.0.1:1'] } },
        routes: [{ match: { method: 'G E T', query: { v: 2 } }, pool: 'a', allow: ['10.0.0.0/33'] }],
      }),
    { instanceOf: ConfigError },
  );
  t.regex(error!.message, /routes\[0\]\.allow: expected a list of addresses or CIDR ranges/);
  t.regex(error!.message, /routes\[0\]\.match\.method: expected a method or a list of methods/);
  t.regex(error!.message, /routes\[0\]\.match\.query\.v: expected a non-empty string, got 2/);
});

test('per route: WebSocket not allowed (403), request bodies over max_body (413) with or without a length', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, {
    pools: { main: { backends: [backend.address] } },
    routes: [
      { match: { path: '/api' }, pool: 'main', websocket: false, max_body: '1kb' },
      { match: { path: '/' }, pool: 'main' },
    ],
  });
  const upgrade = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/api/live`));
  t.regex(upgrade!.message, /unexpected response 403/);
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/live`);
  ws.close();

  const small = await request(`http://127.0.0.1:${proxy.port}/api/hash`, { method: 'POST', body: Buffer.alloc(1000) });
  t.is(small.statusCode, 200);
  await small.body.text();
  const declared = await request(`http://127.0.0.1:${proxy.port}/api/hash`, { method: 'POST', body: Buffer.alloc(5000) });
  t.is(declared.statusCode, 413);
  t.is(declared.headers['x-fairway-error'], 'body-too-large');
  await declared.body.text();
  async function* chunks() {
    for (let i = 0; i < 8; i++) yield Buffer.alloc(512);
  }
  const streamed = await request(`http://127.0.0.1:${proxy.port}/api/hash`, { method: 'POST', body: Readable.from(chunks()) }).then(
    async (res) => [res.statusCode, await res.body.text().catch(() => '')] as const,
    () => [0, 'connection cut'] as const,
  );
  t.true(streamed[0] === 413 || streamed[0] === 0, `chunked over the limit: ${streamed}`);
  t.is((await request(`http://127.0.0.1:${proxy.port}/`)).statusCode, 200, 'the worker keeps serving');
  t.is(Number(proxy.table.failures(proxy.plan.backendSlots[`main/${backend.address}`])), 0, 'not counted against the backend');
});

test('per-route path rewrite and header edits, on HTTP and on WebSocket upgrades', async (t) => {
  const api = await startBackend(t, 'api');
  const proxy = await startProxy(t, {
    pools: { api: { backends: [api.address] } },
    routes: [
      {
        match: { path: '/api' },
        pool: 'api',
        strip_prefix: '/api',
        add_prefix: '/v1',
        request_headers: { set: { 'x-route': 'api', 'X-Forwarded-Host': 'public.example' }, remove: ['x-debug'] },
        response_headers: { set: { 'strict-transport-security': 'max-age=63072000', 'x-backend': 'hidden' }, remove: ['x-powered-by'] },
      },
      { match: { path: '/' }, pool: 'api' },
    ],
  });
  const res = await request(`http://127.0.0.1:${proxy.port}/api/users?page=2`, { headers: { 'x-debug': '1', 'x-keep': 'yes' } });
  t.is(await res.body.text(), 'api');
  t.is(api.lastPath, '/v1/users?page=2');
  t.is(api.lastHeaders['x-route'], 'api');
  t.is(api.lastHeaders['x-forwarded-host'], 'public.example');
  t.is(api.lastHeaders['x-debug'], undefined);
  t.is(api.lastHeaders['x-keep'], 'yes');
  t.is(res.headers['strict-transport-security'], 'max-age=63072000');
  t.is(res.headers['x-backend'], 'hidden');
  t.is(res.headers['x-powered-by'], undefined);

  await (await request(`http://127.0.0.1:${proxy.port}/api`)).body.text();
  t.is(api.lastPath, '/v1');

  // Other routes are untouched.
  const plain = await request(`http://127.0.0.1:${proxy.port}/other?x=1`, { headers: { 'x-debug': '1' } });
  await plain.body.text();
  t.is(api.lastPath, '/other?x=1');
  t.is(api.lastHeaders['x-debug'], '1');
  t.is(plain.headers['x-powered-by'], 'test-backend');
  t.is(plain.headers['strict-transport-security'], undefined);

  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/api/chat?room=7`, [], { 'x-debug': '1' });
  t.is(api.lastPath, '/v1/chat?room=7');
  t.is(api.lastHeaders['x-route'], 'api');
  t.is(api.lastHeaders['x-debug'], undefined);
  ws.close();
});

test('per-route response timeout: 504 on the short route, the default elsewhere', async (t) => {
  const backend = await startBackend(t, 'slow');
  const proxy = await startProxy(t, {
    pools: { main: { backends: [backend.address] } },
    routes: [
      { match: { path: '/quick' }, pool: 'main', timeouts: { response: '200ms' } },
      { match: { path: '/' }, pool: 'main' },
    ],
  });
  const short = await call(proxy.port, '/quick/slow?ms=1500');
  t.is(short.status, 504);
  t.is(short.error, 'response-timeout');
  const long = await call(proxy.port, '/other/slow?ms=600');
  t.is(long.status, 200);
  t.is(long.body, 'slow');
});

test('route options are validated: header names, framing headers, prefixes, timeouts', (t) => {
  const base = { pools: { a: { backends: ['127.0.0.1:1'] } } };
  const error = t.throws(
    () =>
      validateConfig({
        ...base,
        routes: [
          {
            pool: 'a',
            strip_prefix: 'api',
            add_prefix: '/v1?x',
            request_headers: { set: { 'bad name': 'x', 'content-length': '3' }, remove: ['host'] },
            response_headers: { set: { 'x-ok': 'a\nb' }, other: 1 },
            timeouts: { response: 'soon', connect: '1s' },
          },
        ],
      }),
    { instanceOf: ConfigError },
  );
  for (const field of [
    'routes[0].strip_prefix',
    'routes[0].add_prefix',
    'routes[0].request_headers.set.bad name',
    'routes[0].request_headers.set.content-length',
    'routes[0].request_headers.remove[0]',
    'routes[0].response_headers.set.x-ok',
    'routes[0].response_headers.other',
    'routes[0].timeouts.response',
    'routes[0].timeouts.connect',
  ]) {
    t.true(error!.problems.some((p) => p.startsWith(`${field}:`)), field);
  }
});

test('trusted proxies: the client is read from X-Forwarded-For only through trusted hops', async (t) => {
  const backend = await startBackend(t, 'a');
  const routes = [{ match: { path: '/' }, pool: 'main', allow: ['10.0.0.0/8'] }];
  const trusting = await startProxy(t, { trusted_proxies: ['127.0.0.1', '192.168.0.0/16'], pools: { main: { backends: [backend.address] } }, routes });
  const via = async (port: number, forwardedFor: string) => {
    const res = await request(`http://127.0.0.1:${port}/`, { headers: { 'x-forwarded-for': forwardedFor } });
    await res.body.text();
    return res.statusCode;
  };
  t.is(await via(trusting.port, '10.1.2.3'), 200);
  // Right to left past trusted hops: 192.168.1.1 is trusted, so the client is 10.1.2.3.
  t.is(await via(trusting.port, '8.8.8.8, 10.1.2.3, 192.168.1.1'), 200);
  // A spoofed entry to the left of an untrusted hop is not believed.
  t.is(await via(trusting.port, '10.1.2.3, 8.8.8.8'), 403);
  // The header is still passed on with the real peer appended.
  await via(trusting.port, '10.1.2.3');
  t.is(backend.lastHeaders['x-forwarded-for'], '10.1.2.3, 127.0.0.1');

  const untrusting = await startProxy(t, { pools: { main: { backends: [backend.address] } }, routes });
  t.is(await via(untrusting.port, '10.1.2.3'), 403);
});

/** A PROXY protocol v2 header for a TCP/IPv4 connection from `source`. */
function proxyV2(source: string, sourcePort: number): Buffer {
  const signature = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  const body = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => body.writeUInt8(Number(octet), i));
  [127, 0, 0, 1].forEach((octet, i) => body.writeUInt8(octet, 4 + i));
  body.writeUInt16BE(sourcePort, 8);
  body.writeUInt16BE(80, 10);
  return Buffer.concat([signature, Buffer.from([0x21, 0x11, 0x00, 0x0c]), body]);
}

test('proxy_protocol: the PROXY v2 source address is the client (access lists, X-Forwarded-For)', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, {
    proxy_protocol: true,
    pools: { main: { backends: [backend.address] } },
    routes: [{ match: { path: '/' }, pool: 'main', allow: ['203.0.113.0/24'] }],
  });
  const raw = async (prefix: Buffer) => {
    const socket = connect(proxy.port, '127.0.0.1');
    await once(socket, 'connect');
    // Written without a FIN: uWS drops a connection half-closed by its client.
    socket.write(Buffer.concat([prefix, Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')]));
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString().split('\r\n')[0];
  };
  t.is(await raw(proxyV2('203.0.113.7', 40000)), 'HTTP/1.1 200 OK');
  t.is(backend.lastHeaders['x-forwarded-for'], '203.0.113.7');
  t.regex(await raw(proxyV2('198.51.100.1', 40000)), /^HTTP\/1.1 403/);
  // Without a PROXY header the TCP peer is the client.
  t.regex(await raw(Buffer.alloc(0)), /^HTTP\/1.1 403/);
});

test('trusted_proxies and proxy_protocol are validated', (t) => {
  const error = t.throws(() => validateConfig({ trusted_proxies: ['10.0.0.0/33'], proxy_protocol: 'yes', pools: { a: { backends: ['127.0.0.1:1'] } } }), { instanceOf: ConfigError });
  t.true(error!.problems.some((p) => p.startsWith('trusted_proxies:')));
  t.true(error!.problems.some((p) => p.startsWith('proxy_protocol:')));
});
