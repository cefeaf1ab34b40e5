// HTTP through the proxy: balancing, byte-exact bodies both ways, headers, and every failure path.

import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import test from 'ava';
import { request } from 'undici';
import { BACKEND_DOWN, BACKEND_UP } from '../dist/src/index.js';
import { ENGINE, activeTotal, deadPort, onePool, patternChunk, patternHash, rawExchange, startBackend, startProxy, waitFor } from './helpers.js';

async function get(port: number, path: string, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

test('round-robin rotation is global across workers', async (t) => {
  const backends = [await startBackend(t, 'a'), await startBackend(t, 'b'), await startBackend(t, 'c')];
  const proxy = await startProxy(t, { workers: 2, ...onePool(backends, 'round-robin') });
  const seen: string[] = [];
  // Sequential requests on fresh connections land on both workers; the order must still rotate.
  for (let i = 0; i < 12; i++) seen.push((await get(proxy.port, '/', { connection: 'close' })).body);
  t.deepEqual(seen, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  await waitFor('counters back to zero', () => activeTotal(proxy, 'main', backends) === 0);
});

test('large bodies pass byte-exact both ways, streamed', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const size = 64 * 1024 * 1024 + 123;

  const download = await request(`http://127.0.0.1:${proxy.port}/download?bytes=${size}`);
  t.is(download.statusCode, 200);
  t.is(download.headers['content-length'], String(size));
  const hash = createHash('sha256');
  let received = 0;
  for await (const chunk of download.body) {
    hash.update(chunk);
    received += chunk.length;
  }
  t.is(received, size);
  t.is(hash.digest('hex'), patternHash(size));

  const chunkedDownload = await request(`http://127.0.0.1:${proxy.port}/download?bytes=${size}&chunked`);
  t.is(chunkedDownload.headers['transfer-encoding'], 'chunked');
  const chunkedHash = createHash('sha256');
  for await (const chunk of chunkedDownload.body) chunkedHash.update(chunk);
  t.is(chunkedHash.digest('hex'), patternHash(size));

  async function* uploadBody() {
    for (let offset = 0; offset < size; offset += 1024 * 1024) yield patternChunk(offset, Math.min(1024 * 1024, size - offset));
  }
  for (const withLength of [true, false]) {
    const upload = await request(`http://127.0.0.1:${proxy.port}/hash`, {
      method: 'POST',
      headers: withLength ? { 'content-length': String(size) } : {},
      body: Readable.from(uploadBody()),
    });
    t.deepEqual(await upload.body.json(), { sha256: patternHash(size), length: size }, withLength ? 'content-length upload' : 'chunked upload');
  }
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('slow readers downloading side by side on one worker each get their bytes exact', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, ...onePool([backend]) });
  const size = 8 * 1024 * 1024 + 7;
  // Each reader stalls now and then, so the proxy holds back part of one response while it
  // reads the other's from the backend.
  const slowRead = async (query: string) => {
    const res = await request(`http://127.0.0.1:${proxy.port}/download?bytes=${size}${query}`);
    const hash = createHash('sha256');
    let received = 0;
    let stalls = 0;
    for await (const chunk of res.body) {
      hash.update(chunk);
      received += chunk.length;
      if (stalls < 40 && received > (stalls + 1) * 128 * 1024) {
        stalls++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    return { received, hash: hash.digest('hex') };
  };
  const results = await Promise.all([slowRead(''), slowRead('&chunked'), slowRead('')]);
  for (const result of results) t.deepEqual(result, { received: size, hash: patternHash(size) });
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('forwarded headers are added, hop-by-hop headers dropped, Host kept', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  // node:http rather than undici: undici refuses to send hop-by-hop headers at all.
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: proxy.port,
      path: '/h',
      headers: { host: 'app.example', 'x-forwarded-for': '10.0.0.1', connection: 'keep-alive, x-secret', 'x-secret': 'hop', 'keep-alive': 'timeout=5', 'x-kept': 'yes' },
      agent: false,
    });
    req.on('response', (res) => res.resume().on('end', resolve));
    req.on('error', reject);
    req.end();
  });
  const seen = backend.lastHeaders;
  t.is(seen.host, 'app.example');
  t.is(seen['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
  t.is(seen['x-forwarded-proto'], 'http');
  t.is(seen['x-forwarded-host'], 'app.example');
  t.is(seen['x-kept'], 'yes');
  t.is(seen['x-secret'], undefined);
  t.is(seen['keep-alive'], undefined);
});

test('HEAD and 204 replies carry no body and keep the connection usable', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const head = await request(`http://127.0.0.1:${proxy.port}/download?bytes=5000`, { method: 'HEAD' });
  t.is(head.statusCode, 200);
  t.is(head.headers['content-length'], '5000');
  t.is(await head.body.text(), '');
  t.is((await get(proxy.port, '/after-head')).body, 'a');
});

test('a refusing backend gives 502, a slow one 504, a missing route 404, each named', async (t) => {
  const backend = await startBackend(t, 'a');
  const refusing = { address: `127.0.0.1:${await deadPort(t)}` };
  const proxy = await startProxy(t, {
    timeouts: { response: '300ms' },
    pools: { live: { backends: [backend.address] }, dead: { backends: [refusing.address] } },
    routes: [
      { match: { path: '/dead' }, pool: 'dead' },
      { match: { path: '/live' }, pool: 'live' },
    ],
  });
  const refused = await get(proxy.port, '/dead');
  t.is(refused.status, 502);
  t.is(refused.headers['x-fairway-error'], 'connect-refused');
  const slow = await get(proxy.port, '/live/slow?ms=2000');
  t.is(slow.status, 504);
  t.is(slow.headers['x-fairway-error'], 'response-timeout');
  const unrouted = await get(proxy.port, '/elsewhere');
  t.is(unrouted.status, 404);
  t.is(unrouted.headers['x-fairway-error'], 'no-route');
  t.is((await get(proxy.port, '/live')).body, 'a');
  await waitFor('counters to settle', () => activeTotal(proxy, 'live', [backend]) + activeTotal(proxy, 'dead', [refusing]) === 0);
  t.pass();
});

test('a backend that dies mid-response cuts only that response; counters return to zero', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const dying = await request(`http://127.0.0.1:${proxy.port}/die`);
  t.is(dying.statusCode, 200);
  await t.throwsAsync(dying.body.text());
  t.is((await get(proxy.port, '/next')).body, 'a');
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
  t.is(proxy.table.failures(proxy.plan.backendSlots[`main/${backend.address}`]), 1n);
});

test('a client that disconnects mid-body cancels the upstream request', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const { reply } = await rawExchange(proxy.port, 'POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial body', 300);
  t.is(reply, '');
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
  t.is((await get(proxy.port, '/after')).body, 'a');
});

test('a client that vanishes during a slow download releases the backend', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  // Read nothing: the proxy fills the socket, pauses the backend, then sees the client go.
  await rawExchange(proxy.port, `GET /download?bytes=${200 * 1024 * 1024} HTTP/1.1\r\nHost: x\r\n\r\n`, 500);
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
  t.is((await get(proxy.port, '/after')).body, 'a');
});

test('garbage, bad lengths and oversized headers never reach a backend; the worker keeps serving', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, ...onePool([backend]) });
  const oversized = await rawExchange(proxy.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, 3000);
  t.regex(oversized.reply, /^HTTP\/1\.1 431 /);
  const badLength = await rawExchange(proxy.port, 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 3000);
  t.true(badLength.closedByPeer);
  // node:http answers what it cannot parse with 400; uWS 20.30 closes without a status line.
  if (ENGINE === 'native-free') t.regex(badLength.reply, /^HTTP\/1\.1 400 /);
  else t.is(badLength.reply, '');
  // uWS 20.30 answers a request line it cannot parse by closing the connection after its
  // ~10 s timeout, without a status line; meanwhile the same worker serves everyone else.
  const garbage = rawExchange(proxy.port, Buffer.from([0x47, 0x41, 0x52, 0x42, 0, 1, 2, 255, 13, 10, 13, 10]), 20_000);
  t.is((await get(proxy.port, '/during')).body, 'a');
  const { reply, closedByPeer } = await garbage;
  t.true(closedByPeer);
  if (ENGINE === 'native-free') t.regex(reply, /^HTTP\/1\.1 400 /);
  else t.is(reply, '');
  t.is(backend.hits, 1);
  // The response to /during can reach its client a moment before the proxy counts it done.
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
  t.is(activeTotal(proxy, 'main', [backend]), 0);
});

test('an exception inside a handler gives 500 to that request only', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, ...onePool([backend]) });
  const failed = await get(proxy.port, '/', { 'x-fairway-test-fault': 'throw' });
  t.is(failed.status, 500);
  t.is(failed.headers['x-fairway-error'], 'internal');
  t.is((await get(proxy.port, '/')).body, 'a');
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [backend]) === 0);
});

test('least-conn sends new requests away from a backend busy with slow ones', async (t) => {
  const busy = await startBackend(t, 'busy');
  const idle = await startBackend(t, 'idle');
  const proxy = await startProxy(t, onePool([busy, idle]));
  // Two held requests occupy one backend each; once one is answered, a third lands where it was.
  const heldA = get(proxy.port, '/hold');
  const heldB = get(proxy.port, '/hold');
  // Held at the backends themselves: counted in fairway is not yet arrived there.
  await waitFor('one held at each backend', () => busy.hits === 1 && idle.hits === 1);
  idle.releaseHeld();
  await waitFor('the answered one released', () => activeTotal(proxy, 'main', [busy, idle]) === 1);
  const next = await get(proxy.port, '/');
  t.is(next.body, 'idle');
  busy.releaseHeld();
  t.deepEqual((await Promise.all([heldA, heldB])).map((r) => r.headers['x-backend']).sort(), ['busy', 'idle']);
  await waitFor('counters back to zero', () => activeTotal(proxy, 'main', [busy, idle]) === 0);
});

test('a pool with no backend up answers 503 at once, named', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, onePool([backend]));
  const slot = proxy.plan.backendSlots[`main/${backend.address}`];
  proxy.table.setState(slot, BACKEND_DOWN);
  const refused = await get(proxy.port, '/');
  t.is(refused.status, 503);
  t.is(refused.headers['x-fairway-error'], 'no-backend');
  t.is(backend.hits, 0);
  proxy.table.setState(slot, BACKEND_UP);
  t.is((await get(proxy.port, '/')).body, 'a');
  // The client can have the last byte before the worker hears the backend's end: wait for it.
  await waitFor('counter back to zero', () => proxy.table.active(slot) === 0);
});
