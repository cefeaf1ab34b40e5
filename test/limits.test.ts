// Per-client limits: token buckets and session counts in shared memory, exact across threads, and
// enforced end to end through two workers (429 with Retry-After).

import { request as httpRequest } from 'node:http';
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { bucket, ClientLimits } from '../dist/src/core/limits/clientLimits.js';
import { ConfigError, validateConfig } from '../dist/src/index.js';
import { closed, openGate, openSocket, startBackend, startProxy, waitFor } from './helpers.js';

test('a bucket lets the burst through at once, then one request per interval', (t) => {
  const limits = ClientLimits.create(1, 64);
  const requests = bucket(10, 5);
  const at = (now: number) => limits.admit('client', now, 0, { requests });
  for (let i = 0; i < 5; i++) t.true(at(1000).allowed);
  const refused = at(1000);
  t.false(refused.allowed);
  if (!refused.allowed) {
    t.is(refused.reason, 'requests');
    t.is(Math.round(refused.retryAfterMs), 100);
  }
  t.false(at(1099).allowed);
  t.true(at(1100).allowed);
  t.false(at(1100).allowed);
  // Other keys have their own buckets; a refusal takes no token.
  t.true(limits.admit('other', 1100, 0, { requests }).allowed);
  t.true(at(1300).allowed);
  t.true(at(1300).allowed);
  t.false(at(1300).allowed);
  t.is(limits.refusals().requests, 4n);
});

test('concurrent sessions are counted per worker and forgotten with a dead worker', (t) => {
  const limits = ClientLimits.create(2, 64);
  const take = (worker: number) => limits.admit('c', 0, worker, { maxSessions: 3, countSession: true });
  const a = take(0);
  const b = take(1);
  const c = take(1);
  t.true(a.allowed && b.allowed && c.allowed);
  const d = take(0);
  t.false(d.allowed);
  if (!d.allowed) t.is(d.reason, 'concurrent-sessions');
  t.is(limits.sessionsOf('c'), 3);
  if (a.allowed) limits.release(a.slot, 0);
  t.is(limits.sessionsOf('c'), 2);
  t.is(limits.forgetWorker(1), 2);
  t.is(limits.sessionsOf('c'), 0);
  // A release from the dead worker's sessions after forgetting does not go below zero.
  if (b.allowed) limits.release(b.slot, 1);
  t.is(limits.sessionsOf('c'), 0);
});

test('a full shard evicts the quietest key, and refuses when every key is busy', (t) => {
  const limits = ClientLimits.create(1, 32);
  for (let i = 0; i < 32; i++) t.true(limits.admit(`k${i}`, 0, 0, { maxSessions: 1, countSession: true }).allowed);
  const full = limits.admit('new', 0, 0, { requests: bucket(1, 1) });
  t.false(full.allowed);
  if (!full.allowed) t.is(full.reason, 'table-full');
  // Once a key holds no session and its buckets are full again, its slot can be taken.
  const quiet = limits.admit('k7', 0, 0, {});
  if (quiet.allowed) limits.release(quiet.slot, 0);
  t.true(limits.admit('new', 10, 0, { requests: bucket(1, 1) }).allowed);
  t.is(limits.sessionsOf('k7'), 0);
});

/** `perThread` admits on one key from each of `threads` threads at once; returns how many passed. */
async function contend(limits: ClientLimits, threads: number, perThread: number, limit: object): Promise<number[]> {
  const module = new URL('../dist/src/core/limits/clientLimits.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(module)}).then(({ ClientLimits }) => {
      const { buffer, workers, worker, gate, perThread, limit } = workerData;
      const limits = ClientLimits.attach(buffer, workers, 1024);
      parentPort.postMessage('ready');
      Atomics.wait(new Int32Array(gate), 0, 0);
      let passed = 0;
      for (let i = 0; i < perThread; i++) if (limits.admit('hot', 5000, worker, limit).allowed) passed++;
      parentPort.postMessage(passed);
    });`;
  const gate = new SharedArrayBuffer(4);
  const workers = Array.from(
    { length: threads },
    (_, worker) => new Worker(code, { eval: true, workerData: { buffer: limits.buffer, workers: threads, worker, gate, perThread, limit } }),
  );
  const passed = await openGate(gate, workers);
  await Promise.all(workers.map((w) => w.terminate()));
  return passed;
}

test('4 threads on one key: exactly the burst passes, exactly the session limit is counted', async (t) => {
  const limits = ClientLimits.create(4, 1024);
  const passed = await contend(limits, 4, 2000, { requests: bucket(1, 100) });
  t.is(passed.reduce((a, b) => a + b, 0), 100);
  const sessions = ClientLimits.create(4, 1024);
  const held = await contend(sessions, 4, 2000, { maxSessions: 250, countSession: true });
  t.is(held.reduce((a, b) => a + b, 0), 250);
  t.is(sessions.sessionsOf('hot'), 250);
});

/** A GET on a new connection each time, so that requests spread over the workers. */
function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; retryAfter?: string; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] as string | undefined, error: res.headers['x-fairway-error'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a flood past the rate limit gets 429 with Retry-After, the same limit on every worker', async (t) => {
  const backend = await startBackend(t, 'api');
  const proxy = await startProxy(t, {
    workers: 2,
    admin: { listen: '127.0.0.1:0' },
    pools: { api: { backends: [backend.address] } },
    routes: [
      { match: { path: '/limited' }, pool: 'api', rate_limit: { requests: { rate: '1/m', burst: 5 } } },
      { match: { path: '/keyed' }, pool: 'api', rate_limit: { key: 'header:x-api-key', requests: { rate: '1/m', burst: 2 } } },
      { match: { path: '/' }, pool: 'api' },
    ],
  });
  const flood = await Promise.all(Array.from({ length: 40 }, () => get(proxy.port, '/limited/x')));
  t.is(flood.filter((r) => r.status === 200).length, 5);
  const refused = flood.filter((r) => r.status === 429);
  t.is(refused.length, 35);
  t.true(refused.every((r) => r.error === 'rate-limited' && Number(r.retryAfter) >= 1));
  t.is(backend.hits, 5);
  // Other routes are not limited.
  t.is((await get(proxy.port, '/free')).status, 200);
  // Keyed by header: each key has its own bucket.
  const statuses = async (key: string) => (await Promise.all([1, 2, 3].map(() => get(proxy.port, '/keyed', { 'x-api-key': key })))).map((r) => r.status).sort();
  t.deepEqual(await statuses('alpha'), [200, 200, 429]);
  t.deepEqual(await statuses('beta'), [200, 200, 429]);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  t.regex(metrics, /fairway_rate_limited_total\{reason="requests"\} 37\b/);
});

test('WebSocket limits: new sessions per client, and concurrent sessions per client', async (t) => {
  const backend = await startBackend(t, 'chat');
  const proxy = await startProxy(t, {
    workers: 2,
    pools: { chat: { backends: [backend.address] } },
    routes: [
      { match: { path: '/reconnect' }, pool: 'chat', rate_limit: { new_sessions: { rate: '1/m', burst: 3 } } },
      { match: { path: '/ws' }, pool: 'chat', rate_limit: { concurrent_sessions: 2 } },
    ],
  });
  const url = `ws://127.0.0.1:${proxy.port}`;
  for (let i = 0; i < 3; i++) (await openSocket(`${url}/reconnect`)).close();
  const storm = await t.throwsAsync(openSocket(`${url}/reconnect`));
  t.regex(storm!.message, /unexpected response 429/);
  // HTTP requests on that route are not new sessions.
  t.is((await get(proxy.port, '/reconnect')).status, 200);

  const first = await openSocket(`${url}/ws`);
  const second = await openSocket(`${url}/ws`);
  const third = await t.throwsAsync(openSocket(`${url}/ws`));
  t.regex(third!.message, /unexpected response 429/);
  t.is(proxy.limits.sessionsOf('1:127.0.0.1'), 2);
  first.close();
  await closed(first);
  await waitFor('the closed session to be released', () => proxy.limits.sessionsOf('1:127.0.0.1') === 1);
  const again = await openSocket(`${url}/ws`);
  second.close();
  again.close();
  await Promise.all([closed(second), closed(again)]);
  await waitFor('every session released', () => proxy.limits.sessionsOf('1:127.0.0.1') === 0);
  t.pass();
});

test('rate limit options are validated, naming the field', (t) => {
  const error = t.throws(
    () =>
      validateConfig({
        pools: { a: { backends: ['127.0.0.1:1'] } },
        routes: [
          { pool: 'a', rate_limit: { key: 'cookie:x', requests: { rate: 'fast', burst: 0 }, concurrent_sessions: -1 } },
          { pool: 'a', rate_limit: {} },
        ],
      }),
    { instanceOf: ConfigError },
  );
  for (const field of ['routes[0].rate_limit.key', 'routes[0].rate_limit.requests.rate', 'routes[0].rate_limit.requests.burst', 'routes[0].rate_limit.concurrent_sessions', 'routes[1].rate_limit']) {
    t.true(error!.problems.some((p) => p.startsWith(`${field}:`)), field);
  }
});
