// The response cache through real sockets on both engines: a backend that counts what reaches it,
// identical requests over every worker, what must never be shared, variants, revalidation,
// stale answers, the size bound, purge and invalidation.

import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import { validateConfig, ConfigError } from '../dist/src/index.js';
import { MAX_VARIANTS } from '../dist/src/primary/responseCache.js';
import { startProxy, waitFor } from './helpers.js';

type Answer = { status?: number; headers?: Record<string, string>; body?: string | Buffer; delay?: number; hold?: Promise<void> };

/** A backend whose answer for each path is a function of how many requests that path got (1, 2, …). */
async function countingBackend(t: ExecutionContext, answers: Record<string, (n: number, req: IncomingMessage) => Answer>) {
  const counts = new Map<string, number>();
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    seen.push({ path, headers: req.headers });
    const answer = (answers[path] ?? (() => ({ status: 404, body: 'no such path' })))(n, req);
    const send = () => {
      res.writeHead(answer.status ?? 200, answer.headers ?? {});
      res.end(req.method === 'HEAD' ? undefined : (answer.body ?? `${path} #${n}`));
    };
    req.resume();
    req.on('end', () => {
      if (answer.hold) void answer.hold.then(send);
      else if (answer.delay) setTimeout(send, answer.delay);
      else send();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (path: string) => counts.get(path) ?? 0,
    seen,
  };
}

/** A fairway whose route `/` caches (with `cache` settings), and whose `/admin-free` path does not. */
async function cachingProxy(t: ExecutionContext, backend: string, cache: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return startProxy(t, {
    admin: { listen: '127.0.0.1:0' },
    pools: { main: { backends: [backend] } },
    routes: [{ match: { path: '/' }, pool: 'main', cache: { size: '1mb', ...cache } }],
    ...extra,
  });
}

async function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', dispatcher?: Agent) {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method, headers: { host: 'shop.example', ...headers }, dispatcher });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body, cache: res.headers['x-fairway-cache'] as string | undefined };
}

test('100 identical GETs at once over every worker make one backend request; all get its body, then hits', async (t) => {
  const backend = await countingBackend(t, { '/catalog': () => ({ headers: { 'cache-control': 'max-age=60' }, body: 'the catalog', delay: 300 }) });
  const proxy = await cachingProxy(t, backend.address);
  // One connection per request, so that the kernel spreads them over the workers.
  const agent = new Agent({ connections: 100, pipelining: 0 });
  t.teardown(() => agent.close());
  const first = await Promise.all(Array.from({ length: 100 }, () => get(proxy.port, '/catalog', {}, 'GET', agent)));
  t.true(first.every((r) => r.status === 200 && r.body === 'the catalog'));
  t.is(backend.count('/catalog'), 1, 'one request reached the backend');
  t.is(first.filter((r) => r.cache === 'miss').length, 1);
  t.is(first.filter((r) => r.cache === 'hit').length, 99);
  if (proxy.config.workers > 1) {
    await waitFor('both workers to publish their counts', () => proxy.table.workerRequests(0) > 0 && proxy.table.workerRequests(1) > 0);
    t.pass('the requests came in through every worker');
  }
  const again = await Promise.all(Array.from({ length: 20 }, () => get(proxy.port, '/catalog', {}, 'GET', agent)));
  t.true(again.every((r) => r.cache === 'hit' && r.body === 'the catalog' && Number(r.headers.age) >= 0));
  t.is(backend.count('/catalog'), 1);
  const head = await get(proxy.port, '/catalog', {}, 'HEAD');
  t.is(head.cache, 'hit', 'a HEAD is answered from the stored GET');
  t.is(head.headers['content-length'], '11');
  t.is(backend.count('/catalog'), 1);
});

test('no-store, private, Set-Cookie and Authorization answers are never served to another client', async (t) => {
  const backend = await countingBackend(t, {
    '/no-store': (n) => ({ headers: { 'cache-control': 'no-store' }, body: `secret ${n}` }),
    '/private': (n) => ({ headers: { 'cache-control': 'private, max-age=60' }, body: `secret ${n}` }),
    '/cookie': (n) => ({ headers: { 'cache-control': 'max-age=60', 'set-cookie': `session=${n}` }, body: `secret ${n}` }),
    '/auth': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `secret ${n}` }),
    '/auth-public': (n) => ({ headers: { 'cache-control': 'public, max-age=60' }, body: `shared ${n}` }),
  });
  const proxy = await cachingProxy(t, backend.address);
  for (const path of ['/no-store', '/private', '/cookie', '/auth']) {
    const alice = await get(proxy.port, path, { authorization: 'Bearer alice', cookie: 'user=alice' });
    const bob = await get(proxy.port, path, { authorization: 'Bearer bob', cookie: 'user=bob' });
    t.is(alice.body, 'secret 1', path);
    t.is(bob.body, 'secret 2', `${path}: the second client gets the backend's own answer`);
    t.is(bob.cache, 'miss', path);
    t.is(backend.count(path), 2, path);
  }
  t.is((await get(proxy.port, '/cookie')).headers['set-cookie'], 'session=3', 'Set-Cookie reaches its own client');
  // `public` lets a response to an authorized request be shared (RFC 9111 §3.5).
  await get(proxy.port, '/auth-public', { authorization: 'Bearer alice' });
  const shared = await get(proxy.port, '/auth-public', { authorization: 'Bearer bob' });
  t.deepEqual([shared.cache, shared.body, backend.count('/auth-public')], ['hit', 'shared 1', 1]);
  // A request that says no-store goes past the cache.
  const bypass = await get(proxy.port, '/auth-public', { 'cache-control': 'no-store' });
  t.deepEqual([bypass.cache, backend.count('/auth-public')], ['bypass', 2]);
});

test('Vary: Accept-Encoding keeps each encoding its own stored variant', async (t) => {
  const backend = await countingBackend(t, {
    '/v': (n, req) => ({ headers: { 'cache-control': 'max-age=60', vary: 'Accept-Encoding' }, body: `${req.headers['accept-encoding'] ?? 'identity'} ${n}` }),
  });
  const proxy = await cachingProxy(t, backend.address);
  const gzip = await get(proxy.port, '/v', { 'accept-encoding': 'gzip' });
  const br = await get(proxy.port, '/v', { 'accept-encoding': 'br' });
  t.deepEqual([gzip.body, gzip.cache, br.body, br.cache], ['gzip 1', 'miss', 'br 2', 'miss']);
  const gzipAgain = await get(proxy.port, '/v', { 'accept-encoding': 'gzip' });
  const brAgain = await get(proxy.port, '/v', { 'accept-encoding': 'br' });
  t.deepEqual([gzipAgain.body, gzipAgain.cache, brAgain.body, brAgain.cache], ['gzip 1', 'hit', 'br 2', 'hit']);
  const none = await get(proxy.port, '/v');
  t.deepEqual([none.body, none.cache], ['identity 3', 'miss'], 'a request without the header is a variant of its own');
  t.is(backend.count('/v'), 3);
});

test('a stale response is revalidated with its validators and refreshed by a 304; a client’s own condition is answered 304 from the cache', async (t) => {
  const backend = await countingBackend(t, {
    // Stored (it has a validator) but stale at once: every use revalidates.
    '/stale': (n, req) =>
      req.headers['if-none-match'] === '"v1"'
        ? { status: 304, headers: { etag: '"v1"', 'x-refreshed': String(n), ...(n === 2 ? { 'set-cookie': 'sid=first' } : {}) } }
        : { headers: { 'cache-control': 'max-age=0', etag: '"v1"' }, body: 'version 1' },
    '/fresh': () => ({ headers: { 'cache-control': 'max-age=60', etag: '"f1"', 'last-modified': 'Tue, 01 Dec 2026 10:00:00 GMT' }, body: 'fresh' }),
  });
  const proxy = await cachingProxy(t, backend.address);
  t.is((await get(proxy.port, '/stale')).cache, 'miss');
  const revalidated = await get(proxy.port, '/stale');
  t.deepEqual([revalidated.status, revalidated.body, revalidated.cache, revalidated.headers['x-refreshed']], [200, 'version 1', 'revalidated', '2']);
  t.is(backend.seen.at(-1)!.headers['if-none-match'], '"v1"', 'the stored ETag went to the backend');
  t.is(backend.count('/stale'), 2);
  t.is(revalidated.headers['set-cookie'], 'sid=first', "the 304's Set-Cookie reaches its own client");
  const next = await get(proxy.port, '/stale');
  t.deepEqual([next.cache, next.headers['x-refreshed'], next.headers['set-cookie']], ['revalidated', '3', undefined], 'and no other client');

  await get(proxy.port, '/fresh');
  const matched = await get(proxy.port, '/fresh', { 'if-none-match': 'W/"f1"' });
  t.deepEqual([matched.status, matched.body, matched.headers.etag, matched.cache], [304, '', '"f1"', 'hit']);
  const since = await get(proxy.port, '/fresh', { 'if-modified-since': 'Tue, 01 Dec 2026 12:00:00 GMT' });
  t.is(since.status, 304);
  const changed = await get(proxy.port, '/fresh', { 'if-none-match': '"other"' });
  t.deepEqual([changed.status, changed.body], [200, 'fresh']);
  t.is(backend.count('/fresh'), 1, 'conditional requests were answered from the cache');
});

test('stale-while-revalidate answers stale at once and refreshes in the background; stale-if-error stands in for a failing backend', async (t) => {
  const backend = await countingBackend(t, {
    '/swr': (n) => ({ headers: { 'cache-control': 'max-age=0, stale-while-revalidate=60' }, body: `swr ${n}` }),
    '/sie': (n) => (n === 1 ? { headers: { 'cache-control': 'max-age=0, stale-if-error=60', etag: '"s1"' }, body: 'good' } : { status: 503, body: 'down' }),
    '/must': (n) => (n === 1 ? { headers: { 'cache-control': 'max-age=0, stale-if-error=60, must-revalidate', etag: '"m1"' }, body: 'good' } : { status: 503, body: 'down' }),
  });
  const proxy = await cachingProxy(t, backend.address);
  t.is((await get(proxy.port, '/swr')).body, 'swr 1');
  const stale = await get(proxy.port, '/swr');
  t.deepEqual([stale.body, stale.cache], ['swr 1', 'stale']);
  await waitFor('the background revalidation', () => backend.count('/swr') === 2);
  // The store takes the background answer a moment after the backend sent it: ask until it shows.
  let refreshed = await get(proxy.port, '/swr');
  for (const deadline = Date.now() + 20_000; refreshed.body === 'swr 1' && Date.now() < deadline; ) refreshed = await get(proxy.port, '/swr');
  t.deepEqual([refreshed.body, refreshed.cache], ['swr 2', 'stale'], 'then the answer is the revalidated response');

  await get(proxy.port, '/sie');
  const standIn = await get(proxy.port, '/sie');
  t.deepEqual([standIn.status, standIn.body, standIn.cache], [200, 'good', 'stale'], 'the stored response stands in for the 503');
  t.is(backend.count('/sie'), 2);
  await get(proxy.port, '/must');
  const strict = await get(proxy.port, '/must');
  t.deepEqual([strict.status, strict.body], [503, 'down'], 'must-revalidate: never served stale');
});

test('the cache stays within its size: larger objects pass through, older keys are evicted', async (t) => {
  const backend = await countingBackend(t, {
    '/big': () => ({ headers: { 'cache-control': 'max-age=60' }, body: Buffer.alloc(40 * 1024, 'b') }),
    '/chunked-big': () => ({ headers: { 'cache-control': 'max-age=60', 'transfer-encoding': 'chunked' }, body: Buffer.alloc(40 * 1024, 'c') }),
    '/small': (_n, req) => ({ headers: { 'cache-control': 'max-age=60' }, body: Buffer.alloc(8 * 1024, req.url!.slice(-1)) }),
  });
  const proxy = await cachingProxy(t, backend.address, { size: '64kb', max_object: '16kb' });
  for (const path of ['/big', '/chunked-big']) {
    const a = await get(proxy.port, path);
    const b = await get(proxy.port, path);
    t.deepEqual([a.body.length, a.cache, b.cache, backend.count(path)], [40 * 1024, 'miss', 'miss', 2], `${path}: over max_object, never stored`);
  }
  for (let i = 0; i < 20; i++) await get(proxy.port, `/small?i=${String.fromCharCode(97 + i)}`);
  const [stats] = proxy.control.caches.stats();
  t.true(stats.bytes <= 64 * 1024, `${stats.bytes} bytes stored`);
  t.true(stats.evictions >= 20 - Math.floor((64 * 1024) / (8 * 1024)), `${stats.evictions} evictions`);
  t.is((await get(proxy.port, '/small?i=t')).cache, 'hit', 'the newest key is kept');
  t.is((await get(proxy.port, '/small?i=a')).cache, 'miss', 'the oldest key was evicted');
});

test('purge by key prefix through the admin API; a successful POST invalidates its target; metrics count each result', async (t) => {
  const backend = await countingBackend(t, {
    '/a': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `a ${n}` }),
    '/b': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `b ${n}` }),
  });
  const proxy = await cachingProxy(t, backend.address);
  const admin = proxy.adminPort!;
  for (const path of ['/a', '/b']) await get(proxy.port, path);
  const purge = async (body: string, contentType = 'application/json') => {
    const res = await request(`http://127.0.0.1:${admin}/api/cache/purge`, { method: 'POST', headers: { 'content-type': contentType }, body });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };
  t.deepEqual(await purge(JSON.stringify({ prefix: 'GET shop.example /a' })), { status: 200, body: { purged: 1 } });
  t.deepEqual([(await get(proxy.port, '/a')).body, (await get(proxy.port, '/b')).cache], ['a 2', 'hit']);
  const bad = await purge('{"path": "/a"}');
  t.is(bad.status, 400);
  t.regex(String(bad.body.error), /prefix/);

  t.is((await get(proxy.port, '/b', {}, 'POST')).cache, 'bypass');
  t.deepEqual([(await get(proxy.port, '/b')).body, backend.count('/b')], ['b 3', 3], 'the POST invalidated the stored GET');

  const metric = async (result: string) => {
    const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    return Number(new RegExp(`^fairway_cache_requests_total\\{route="0",result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? -1);
  };
  // Each worker reports its results every second: wait until all six requests are in.
  const results = async () => Object.fromEntries(await Promise.all(['hit', 'miss', 'stale', 'revalidated', 'bypass'].map(async (r) => [r, await metric(r)] as const)));
  const deadline = Date.now() + 20_000;
  let counted = await results();
  while (Object.values(counted).reduce((sum, n) => sum + n, 0) < 6 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    counted = await results();
  }
  t.deepEqual(counted, { hit: 1, miss: 4, stale: 0, revalidated: 0, bypass: 1 });
  const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
  t.regex(text, /^fairway_cache_bytes\{route="0"\} [1-9]\d*$/m);
});

/** A promise and what settles it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

async function purge(adminPort: number, prefix: string): Promise<void> {
  const res = await request(`http://127.0.0.1:${adminPort}/api/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prefix }) });
  await res.body.text();
}

async function cacheStats(adminPort: number): Promise<{ fetching: number; waiting: number; entries: number }[]> {
  return (await (await request(`http://127.0.0.1:${adminPort}/api/cache`)).body.json()) as { fetching: number; waiting: number; entries: number }[];
}

test('a fetch in flight when its key is purged or invalidated answers its client but stores nothing', async (t) => {
  const answered = [deferred(), deferred()];
  const backend = await countingBackend(t, {
    '/p': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `p ${n}`, hold: answered[n - 1]?.promise }),
  });
  const proxy = await cachingProxy(t, backend.address);
  // Purged while the backend holds the first fetch.
  const first = get(proxy.port, '/p');
  await waitFor('the first fetch to reach the backend', () => backend.count('/p') === 1);
  await purge(proxy.adminPort!, 'GET shop.example /p');
  answered[0].resolve();
  t.deepEqual([(await first).body, (await first).cache], ['p 1', 'miss']);
  // Invalidated by a successful POST while the backend holds the second.
  const second = get(proxy.port, '/p');
  await waitFor('the second fetch to reach the backend', () => backend.count('/p') === 2);
  t.is((await get(proxy.port, '/p', {}, 'POST')).cache, 'bypass');
  answered[1].resolve();
  t.deepEqual([(await second).body, (await second).cache], ['p 2', 'miss']);
  const third = await get(proxy.port, '/p');
  t.deepEqual([third.body, third.cache], ['p 4', 'miss'], 'neither response was stored');
  t.deepEqual([(await get(proxy.port, '/p')).cache, backend.count('/p')], ['hit', 4]);
});

test('when the fetching request\'s client leaves, a waiting identical request fetches in its place and stores', async (t) => {
  const never = new Promise<void>(() => {});
  const backend = await countingBackend(t, {
    '/lead': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `lead ${n}`, hold: n === 1 ? never : undefined }),
  });
  const proxy = await cachingProxy(t, backend.address);
  const leaving = new AbortController();
  const first = request(`http://127.0.0.1:${proxy.port}/lead`, { headers: { host: 'shop.example' }, signal: leaving.signal }).catch((err: Error) => err);
  await waitFor('the first fetch to reach the backend', () => backend.count('/lead') === 1);
  const second = get(proxy.port, '/lead');
  const deadline = Date.now() + 20_000;
  while ((await cacheStats(proxy.adminPort!))[0].waiting !== 1) {
    if (Date.now() > deadline) throw new Error('the second request never waited for the first');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  leaving.abort();
  t.true((await first) instanceof Error);
  t.deepEqual([(await second).body, (await second).cache], ['lead 2', 'miss']);
  const third = await get(proxy.port, '/lead');
  t.deepEqual([third.body, third.cache, backend.count('/lead')], ['lead 2', 'hit', 2], 'the waiting request stored what it fetched');
  t.deepEqual((await cacheStats(proxy.adminPort!)).map(({ fetching, waiting }) => [fetching, waiting]), [[0, 0]]);
});

test(`a key keeps at most ${MAX_VARIANTS} variants, the least recently stored going first`, async (t) => {
  const backend = await countingBackend(t, {
    '/many': (n, req) => ({ headers: { 'cache-control': 'max-age=60', vary: 'x-v' }, body: `v${req.headers['x-v']} #${n}` }),
  });
  const proxy = await cachingProxy(t, backend.address);
  for (let v = 0; v <= MAX_VARIANTS; v++) t.is((await get(proxy.port, '/many', { 'x-v': String(v) })).cache, 'miss');
  const newest = await get(proxy.port, '/many', { 'x-v': String(MAX_VARIANTS) });
  t.deepEqual([newest.cache, newest.body], ['hit', `v${MAX_VARIANTS} #${MAX_VARIANTS + 1}`]);
  t.is((await get(proxy.port, '/many', { 'x-v': '1' })).cache, 'hit');
  const oldest = await get(proxy.port, '/many', { 'x-v': '0' });
  t.deepEqual([oldest.cache, backend.count('/many')], ['miss', MAX_VARIANTS + 2], 'the first variant was let go');
});

test('a reload keeps a route\'s store unless what decides its responses changed', async (t) => {
  const backend = await countingBackend(t, { '/r': (n) => ({ headers: { 'cache-control': 'max-age=60' }, body: `r ${n}` }) });
  const route = { match: { path: '/' }, pool: 'main', cache: { size: '1mb' } };
  const raw = (extra: Record<string, unknown>) => ({ admin: { listen: '127.0.0.1:0' }, pools: { main: { backends: [backend.address] } }, routes: [{ ...route, ...extra }] });
  const proxy = await startProxy(t, raw({}));
  const reload = (extra: Record<string, unknown>) =>
    proxy.control.apply(validateConfig({ listen: `127.0.0.1:${proxy.port}`, workers: proxy.config.workers, engine: proxy.config.engine, log: { level: 'warn', access: false }, ...raw(extra) }));
  await get(proxy.port, '/r');
  // A timeout or a response header edit does not change what is stored.
  reload({ timeouts: { response: '20s' }, response_headers: { set: { 'x-edge': '1' } } });
  t.deepEqual([(await get(proxy.port, '/r')).cache, backend.count('/r')], ['hit', 1]);
  // What goes upstream does: the route starts with an empty store.
  reload({ request_headers: { set: { 'x-version': '2' } } });
  const after = await get(proxy.port, '/r');
  t.deepEqual([after.cache, after.body, backend.count('/r')], ['miss', 'r 2', 2]);
});

test('routes[].cache settings are checked, and a bad one names its field', (t) => {
  const config = (cache: unknown) => ({ pools: { a: { backends: ['127.0.0.1:1'] } }, routes: [{ pool: 'a', cache }] });
  const ok = validateConfig(config({ size: '8mb', key: ['host', 'path'], default_ttl: '5m' }));
  t.like(ok.routes[0].cache, { size: 8 * 1024 * 1024, maxObject: 1024 * 1024, defaultTtl: 300_000, lockTimeout: 5000, key: ['host', 'path'], statusHeader: 'x-fairway-cache' });
  for (const [cache, field] of [
    [{ key: ['path', 'cookie'] }, 'routes[0].cache.key'],
    [{ size: '64mb', max_object: '128mb' }, 'routes[0].cache.max_object'],
    [{ size: 'lots' }, 'routes[0].cache.size'],
    [{ status_header: 'bad header' }, 'routes[0].cache.status_header'],
    [{ sise: '1mb' }, 'routes[0].cache'],
  ] as const) {
    const error = t.throws(() => validateConfig(config(cache)), { instanceOf: ConfigError });
    t.true(error!.message.includes(field), `${JSON.stringify(cache)}: ${error!.message}`);
  }
});
