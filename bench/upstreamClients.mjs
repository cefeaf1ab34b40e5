// The HTTP client toward backends, alone: CPU per request and requests per second of fairway's
// own upstream client (src/dataplane/upstreamHttp.ts), undici as fairway drove it before
// (Pool.dispatch), undici's request(), node:http with a keep-alive Agent, and the bare client on raw
// sockets of bench/floor.mjs that only knows Content-Length responses (the floor: the syscalls and little else). 50 requests in flight, keep-alive, GET / from one backend on 127.0.0.1.
// Each client's answer is checked before it is timed.
// Then, with wrk: uWS answering requests itself (the client side of any proxy on uWS), and again
// reading the client's address once a request as fairway must for X-Forwarded-For, fairway
// (1 worker) and HAProxy (1 thread) in front of the same backend, so that the floor of a proxy on
// Node and uWS (uWS alone + the bare client) stands next to whole proxies, in one run.
// Usage: npm run bench:upstream [-- SECONDS]

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { UpstreamHttpPool } from '../dist/src/dataplane/upstreamHttp.js';
import { bareClient, drive, forwardedHeaders } from './floor.mjs';
import { cpuSeconds } from './procStats.mjs';

const SECONDS = Number(process.argv[2] ?? 5);
const IN_FLIGHT = 50;
const PORT = 9451;
const root = new URL('..', import.meta.url).pathname;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startBackend() {
  if (spawnSync('sh', ['-c', 'command -v nginx']).status === 0) {
    const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-upstream-'));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; worker_processes 1; error_log ${dir}/error.log; pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${PORT}; location / { return 200 "ok\\n"; } } }`,
    );
    return { child: spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' }), name: 'nginx, 1 process' };
  }
  return { child: spawn(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(PORT)], { stdio: 'ignore' }), name: 'uWS (scripts/uwsEchoBackend.mjs)' };
}

// ---- the clients: each is `(done) => void`, sending one GET / and calling done(status, body) ----

/** Handler for both dispatch-style clients (same callback names): gathers the body, then calls done. */
function collecting(done) {
  let status = 0;
  const chunks = [];
  return {
    onRequestStart() {},
    onResponseStart(_control, statusCode) {
      status = statusCode;
    },
    onResponseData(_control, chunk) {
      chunks.push(chunk);
    },
    onResponseEnd() {
      done(status, Buffer.concat(chunks).toString());
    },
    onResponseError(_control, err) {
      done(0, String(err));
    },
  };
}

const FORWARDED_HEADERS = forwardedHeaders(PORT);

function fairwayUpstream() {
  const pool = new UpstreamHttpPool({ host: '127.0.0.1', port: PORT, tls: undefined, connectTimeout: 5000, responseTimeout: 5000, idleTimeout: 5000, keepAliveTimeout: 4000 });
  const headers = FORWARDED_HEADERS;
  return {
    send(done) {
      pool.dispatch({ path: '/', method: 'GET', headers, length: -1, body: null }, collecting(done));
    },
    close: () => pool.destroy(),
  };
}

function undiciDispatch() {
  const pool = new Pool(`http://127.0.0.1:${PORT}`, { connections: null, pipelining: 1, keepAliveTimeout: 4000 });
  const headers = FORWARDED_HEADERS;
  return {
    send(done) {
      pool.dispatch({ path: '/', method: 'GET', headers }, collecting(done));
    },
    close: () => pool.close(),
  };
}

function undiciRequest() {
  const pool = new Pool(`http://127.0.0.1:${PORT}`, { connections: null, pipelining: 1, keepAliveTimeout: 4000 });
  return {
    send(done) {
      pool.request({ path: '/', method: 'GET' }).then(
        async (res) => done(res.statusCode, await res.body.text()),
        (err) => done(0, String(err)),
      );
    },
    close: () => pool.close(),
  };
}

function nodeHttp() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
  return {
    send(done) {
      http
        .get({ host: '127.0.0.1', port: PORT, path: '/', agent }, (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () => done(res.statusCode, Buffer.concat(chunks).toString()));
        })
        .on('error', (err) => done(0, String(err)));
    },
    close: () => agent.destroy(),
  };
}

const CLIENTS = [
  ['fairway upstreamHttp (as fairway)', fairwayUpstream],
  ['undici Pool.dispatch (as fairway before)', undiciDispatch],
  ['undici Pool.request', undiciRequest],
  ['node:http Agent keep-alive', nodeHttp],
  ['bare client on raw sockets (floor: bench/floor.mjs)', () => bareClient(PORT)],
];

const backend = startBackend();
process.on('exit', () => backend.child.kill('SIGTERM'));
await sleep(500);
const rows = [];
for (const [name, make] of CLIENTS) {
  const client = make();
  const result = await drive(client, SECONDS, IN_FLIGHT);
  await client.close();
  rows.push({ name, ...result });
  process.stderr.write(`${name}: ${result.perSecond} req/s, ${result.cpuMicrosPerRequest.toFixed(1)} µs CPU per request\n`);
}
const floor = rows.at(-1).cpuMicrosPerRequest;
console.log(`\nbackend: ${backend.name}; ${IN_FLIGHT} in flight; ${SECONDS} s each; ${process.version}`);
console.log('| client | req/s | µs CPU / request | × bare floor |');
console.log('| --- | ---: | ---: | ---: |');
for (const row of rows) console.log(`| ${row.name} | ${row.perSecond} | ${row.cpuMicrosPerRequest.toFixed(1)} | ${(row.cpuMicrosPerRequest / floor).toFixed(2)} |`);

// ---- the floor of a proxy on Node and uWS: the client side alone, next to HAProxy in full ----

const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;

const answers = (port) =>
  new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    request.on('error', () => resolve(false));
  });

/** CPU per request of the server `child` (listening on `port`) under wrk -t1 -c50, after 1 s of warm-up. */
async function underWrk(child, port) {
  const url = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 50 && !(await answers(port)); i++) await sleep(100);
  spawnSync('wrk', ['-t1', '-c50', '-d1s', url]);
  const before = cpuSeconds(child.pid);
  const out = spawnSync('wrk', ['-t1', '-c50', `-d${SECONDS}s`, url], { encoding: 'utf8' }).stdout;
  const cpu = cpuSeconds(child.pid) - before;
  const requests = Number(/(\d+) requests in/.exec(out)[1]);
  if (/Non-2xx/.test(out) || requests === 0) throw new Error(`bad answers from ${url}:\n${out}`);
  return { perSecond: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1])), cpuMicrosPerRequest: (cpu * 1e6) / requests };
}

if (!has('wrk')) {
  console.log('\nwrk is not installed (apt-get install wrk): the server-side floor is skipped.');
  process.exit(0);
}
const servers = [];
// uWS alone, without and with one read of the client's address a request, alternated three times
// (the host's drift falls on both); each row the median of its three.
{
  const runs = [[], []];
  for (let round = 0; round < 3; round++) {
    for (const reads of [0, 1]) {
      const port = 9460 + 2 * round + reads;
      const uwsAlone = spawn(process.execPath, [join(root, 'bench/floor.mjs'), 'uws', String(port), String(reads)], { stdio: 'ignore' });
      const stop = () => uwsAlone.kill('SIGTERM');
      process.on('exit', stop);
      runs[reads].push(await underWrk(uwsAlone, port));
      stop();
      await new Promise((resolve) => uwsAlone.once('exit', resolve));
    }
  }
  const median = (rows) => rows.sort((a, b) => a.cpuMicrosPerRequest - b.cpuMicrosPerRequest)[1];
  servers.push({ name: 'uWS answering itself (1 thread): the client side of a proxy on uWS', ...median(runs[0]) });
  servers.push({ name: "uWS answering itself, reading the client's address once a request (one getpeername), as fairway does for X-Forwarded-For", ...median(runs[1]) });
}
{
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-fairway-'));
  const config = { listen: '127.0.0.1:9454', workers: 1, engine: 'uws', log: { level: 'warn', access: false }, pools: { http: { backends: [`127.0.0.1:${PORT}`] } } };
  writeFileSync(join(dir, 'fairway.json'), JSON.stringify(config));
  const fairway = spawn(process.execPath, [join(root, 'dist/bundle/cli.js'), '--config', join(dir, 'fairway.json')], { stdio: 'ignore' });
  process.on('exit', () => fairway.kill('SIGTERM'));
  servers.push({ name: `fairway (1 worker) in front of the same ${backend.name}: a whole proxy`, ...(await underWrk(fairway, 9454)) });
  fairway.kill('SIGTERM');
}
if (has('haproxy')) {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-haproxy-'));
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\nfrontend fe\n  bind 127.0.0.1:9453\n  default_backend be\nbackend be\n  http-reuse always\n  server s1 127.0.0.1:${PORT}\n`,
  );
  const haproxy = spawn('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: 'ignore' });
  process.on('exit', () => haproxy.kill('SIGTERM'));
  servers.push({ name: `HAProxy (1 thread) in front of the same ${backend.name}: a whole proxy`, ...(await underWrk(haproxy, 9453)) });
  haproxy.kill('SIGTERM');
} else servers.push({ name: 'HAProxy: not installed (apt-get install haproxy)', perSecond: 0, cpuMicrosPerRequest: NaN });
console.log(`\nServers under wrk -t1 -c50 -d${SECONDS}s, keep-alive, GET /; CPU of the server process from /proc`);
console.log('| server | req/s | µs CPU / request |');
console.log('| --- | ---: | ---: |');
for (const row of servers) console.log(`| ${row.name} | ${row.perSecond || '–'} | ${Number.isNaN(row.cpuMicrosPerRequest) ? '–' : row.cpuMicrosPerRequest.toFixed(1)} |`);
const nodeFloor = servers[0].cpuMicrosPerRequest + floor;
const fairwayRow = servers[2];
const addressRead = servers[1].cpuMicrosPerRequest - servers[0].cpuMicrosPerRequest;
console.log(`\nFloor of a proxy on Node and uWS (uWS answering itself + the bare client): ${nodeFloor.toFixed(1)} µs CPU per request; fairway spends ${(fairwayRow.cpuMicrosPerRequest - nodeFloor).toFixed(1)} µs above it (${(fairwayRow.cpuMicrosPerRequest / nodeFloor).toFixed(2)}×).`);
const calls = JSON.parse(spawnSync(process.execPath, [join(root, 'bench/floor.mjs'), 'address', '9466'], { encoding: 'utf8' }).stdout);
console.log(
  `Reading the client's address through uWS: ${addressRead.toFixed(1)} µs a request under wrk (the second row less the first), ${((100 * addressRead) / nodeFloor).toFixed(0)} % of the floor; ` +
    `${calls.getRemoteAddress.toFixed(2)} µs a call in a loop, of which ${calls.getProxiedRemoteAddress.toFixed(2)} µs is the ArrayBuffer uWS returns (a call without getpeername).`,
);
process.exit(0);
