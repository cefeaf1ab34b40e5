// `npm run bench`: HTTP and WebSocket throughput, latency, memory per idle session and CPU per
// request, in one run, for direct access, fairway (1 and N workers), the floor of any proxy on Node and uWS and, when installed, HAProxy
// and NGINX with equivalent configs. Everything on 127.0.0.1; every loop bounded in time; every
// process started is stopped. Writes bench/results/<time>.json and the table in docs/BENCHMARKS.md;
// then, with redis-server installed, runs bench/fleet.mjs for the fleet's rows, and last
// bench/startup.mjs for the time from spawn to the first answered request.
// Usage: npm run bench [-- --quick] [--compare DIR] [--cores LIST]
//   --compare DIR: also measures the fairway built in another checkout DIR (its dist/), 1 and N
//   workers, in the same rounds, so that a change is judged against its base in one run.
//   --cores LIST: every proxy at each thread count of LIST (e.g. 1,2), pinned apart from the load.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, family, rssBytes } from './procStats.mjs';
import { cliOf } from './tree.mjs';

const quick = process.argv.includes('--quick');
const compareAt = process.argv.indexOf('--compare');
const compareDir = compareAt > 0 ? process.argv[compareAt + 1] : undefined;
/**
 * Every target is measured once per round, the rounds one after another, and each figure is the
 * median of its rounds: a host whose speed drifts during the run then moves every target alike.
 */
const ROUNDS = quick ? 1 : 3;
const SECONDS = quick ? 2 : 4;
/** Load before each measurement, so that no target is measured cold (JIT, connection pools). */
const WARM_UP_SECONDS = 1;
const WS_SESSIONS = 1000;
const IDLE_SESSIONS = 9000;
/** How long the idle sessions are held before their memory is read a second time. */
const IDLE_SETTLE_SECONDS = 30;
const CORES = availableParallelism();
const coresAt = process.argv.indexOf('--cores');
/** `--cores 1,2`: thread counts to measure every proxy at, each pinned apart from the load (below). */
const CORES_LIST = coresAt > 0 ? process.argv[coresAt + 1].split(',').map(Number) : null;
if (CORES_LIST && CORES_LIST.some((n) => !Number.isInteger(n) || n < 1 || n > CORES)) {
  console.error(`--cores: a list of thread counts from 1 to ${CORES} (this host's cores), such as 1,2`);
  process.exit(2);
}
/** Threads each proxy runs with in the current pass. */
let THREADS = CORES;
/**
 * CPU lists for taskset in the current pass: the proxy on cores 0…THREADS-1, the backends, the load
 * tools and this process on the others; null = not pinned (no --cores, or no core left over).
 */
let PIN = { proxy: null, load: null };
const root = new URL('..', import.meta.url).pathname;
const started = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;

function start(command, args, options = {}, cores = null) {
  const [file, argv] = cores ? ['taskset', ['-c', cores, command, ...args]] : [command, args];
  const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'inherit'], ...options });
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

function stop(child) {
  child.stopping = true;
  if (child.exitCode !== null) return Promise.resolve();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  return Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
}

// SIGTERM, not SIGKILL: an NGINX master killed outright would leave its workers behind.
process.on('exit', () => {
  for (const child of started) child.kill('SIGTERM');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

function waitForOutput(child, text, ms = 10_000) {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" from ${child.spawnargs.join(' ')}`)), ms);
    child.stdout.on('data', (d) => {
      output += d;
      if (output.includes(text)) {
        clearTimeout(timer);
        resolve(output);
      }
    });
  });
}

/**
 * Resolves once the port answers an HTTP request: a started proxy is serving (accepting a TCP
 * connection is not enough: fairway's primary holds its port while its workers start).
 */
async function waitForPort(port, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const answered = await new Promise((resolve) => {
      const req = httpGet({ host: '127.0.0.1', port, path: '/', timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });
    if (answered) return;
    await sleep(100);
  }
  throw new Error(`nothing answers HTTP on 127.0.0.1:${port} after ${ms} ms`);
}


function tempFile(name, text) {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-'));
  writeFileSync(join(dir, name), text);
  return { dir, file: join(dir, name) };
}

// ---- backends ----------------------------------------------------------------------------

const HTTP_BACKEND = 9401;
const WS_BACKEND = 9402;

async function startHttpBackend() {
  if (has('nginx')) {
    const { dir, file } = tempFile(
      'nginx.conf',
      `daemon off; worker_processes 1; error_log ${tmpdir()}/fairway-bench-backend-error.log; pid ${tmpdir()}/fairway-bench-backend.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${HTTP_BACKEND}; location / { return 200 "ok\\n"; } } }`,
    );
    const child = start('nginx', ['-c', file, '-p', dir]);
    await waitForPort(HTTP_BACKEND);
    return { child, name: 'nginx (1 process, return 200)' };
  }
  const child = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(HTTP_BACKEND)]);
  await waitForOutput(child, 'echo backend');
  return { child, name: 'uWS (scripts/uwsEchoBackend.mjs)' };
}

// ---- targets -------------------------------------------------------------------------------

function directTarget() {
  return { name: 'direct', start: async () => ({ http: `http://127.0.0.1:${HTTP_BACKEND}/`, ws: `ws://127.0.0.1:${WS_BACKEND}/ws`, pid: null, stop: async () => {} }) };
}

/** `tree`: the checkout whose dist/ runs; `label` names it in the table when it is not this one. */
function fairwayTarget(workers, port, engine = 'uws', tree = root, label = '') {
  return {
    name: `fairway${label ? ` ${label}` : ''}${engine === 'uws' ? '' : ` ${engine}`} ${workers}w`,
    start: async () => {
      const { file } = tempFile(
        'fairway.json',
        JSON.stringify({
          listen: `127.0.0.1:${port}`,
          workers,
          engine,
          // info for the one line that says it listens; access log off.
          log: { level: 'info', access: false },
          websocket: { ping_interval: '0s' },
          pools: { http: { backends: [`127.0.0.1:${HTTP_BACKEND}`] }, ws: { backends: [`127.0.0.1:${WS_BACKEND}`] } },
          routes: [
            { match: { path: '/ws' }, pool: 'ws' },
            { match: { path: '/' }, pool: 'http' },
          ],
        }),
      );
      const child = start(process.execPath, [cliOf(tree), '--config', file], {}, PIN.proxy);
      // Its warnings and errors, kept to explain a failed measurement.
      child.stdout.on('data', (d) => (child.lastOutput = `${child.lastOutput ?? ''}${d}`.slice(-4000)));
      child.once('exit', (code, signal) => {
        if (!child.stopping) process.stderr.write(`fairway ${workers}w exited (${code ?? signal}):\n${child.lastOutput ?? ''}\n`);
      });
      // Its log line first: a connection made while the primary still holds the port waits there
      // (and, before that was fixed, kept the workers from listening).
      await waitForOutput(child, 'fairway is listening', 15_000).then(() => waitForPort(port)).catch((err) => {
        process.stderr.write(`fairway ${workers}w printed:\n${child.lastOutput ?? ''}\n`);
        throw err;
      });
      return running(child, port);
    },
  };
}

function haproxyTarget(port) {
  return {
    name: `haproxy ${THREADS}t`,
    start: async () => {
      const { file } = tempFile(
        'haproxy.cfg',
        `global
  nbthread ${THREADS}
  # Two descriptors per proxied connection must fit in this host's limit of 20 000 open files.
  maxconn 9400
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  # The headers fairway sets on every request it forwards, so that both do the same work.
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  acl is_ws path_beg /ws
  use_backend ws if is_ws
  default_backend http
backend http
  balance leastconn
  http-reuse always
  server s1 127.0.0.1:${HTTP_BACKEND} maxconn 10000
backend ws
  balance leastconn
  server s1 127.0.0.1:${WS_BACKEND} maxconn 20000
`,
      );
      const child = start('haproxy', ['-f', file, '-db'], {}, PIN.proxy);
      child.stdout.resume();
      await waitForPort(port);
      return running(child, port);
    },
  };
}

/** The headers fairway sets on every request it forwards, so that NGINX does the same work (a location's own proxy_set_header lines replace the inherited ones). */
const NGINX_FORWARDED = 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $http_host;';

function nginxTarget(port) {
  return {
    name: `nginx ${THREADS}p`,
    start: async () => {
      const { dir, file } = tempFile(
        'nginx.conf',
        `daemon off; worker_processes ${THREADS}; worker_rlimit_nofile 20000; error_log ${tmpdir()}/fairway-bench-proxy-error.log; pid ${tmpdir()}/fairway-bench-proxy.pid;
events { worker_connections 19000; }
http { access_log off;
  upstream http_be { least_conn; server 127.0.0.1:${HTTP_BACKEND}; keepalive 64; }
  upstream ws_be { least_conn; server 127.0.0.1:${WS_BACKEND}; }
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server { listen 127.0.0.1:${port};
    location /ws { proxy_pass http://ws_be; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; ${NGINX_FORWARDED} proxy_read_timeout 3600s; }
    location / { proxy_pass http://http_be; proxy_http_version 1.1; proxy_set_header Connection ""; ${NGINX_FORWARDED} } } }`,
      );
      const child = start('nginx', ['-c', file, '-p', dir], {}, PIN.proxy);
      child.stdout.resume();
      await waitForPort(port);
      return running(child, port);
    },
  };
}

/** Caddy's reverse_proxy with least_conn; GOMAXPROCS limits it to the thread count of the others. */
function caddyTarget(port) {
  return {
    name: `caddy ${THREADS}t`,
    start: async () => {
      const { file } = tempFile(
        'Caddyfile',
        `{
  admin off
  auto_https off
  log default {
    level ERROR
  }
}
http://127.0.0.1:${port} {
  reverse_proxy /ws* 127.0.0.1:${WS_BACKEND} {
    lb_policy least_conn
  }
  reverse_proxy 127.0.0.1:${HTTP_BACKEND} {
    lb_policy least_conn
  }
}
`,
      );
      const child = start('caddy', ['run', '--config', file, '--adapter', 'caddyfile'], { env: { ...process.env, GOMAXPROCS: String(THREADS), HOME: tmpdir() }, stdio: ['pipe', 'pipe', 'pipe'] }, PIN.proxy);
      // Caddy logs its start-up on stderr whatever the level; its errors go to the log below.
      child.stdout.resume();
      child.stderr.on('data', (d) => {
        if (/"level":"error"|\[ERROR\]/.test(String(d)) && !/broken pipe|connection reset/.test(String(d))) process.stderr.write(d);
      });
      await waitForPort(port);
      return running(child, port);
    },
  };
}

/** The Node way: http-proxy on node:cluster workers (scripts/nodeHttpProxy.mjs). */
function nodeHttpProxyTarget(port) {
  return {
    name: `node-http-proxy ${THREADS}p`,
    start: async () => {
      const child = start(process.execPath, [join(root, 'scripts/nodeHttpProxy.mjs'), String(port), String(THREADS), String(HTTP_BACKEND), String(WS_BACKEND)], {}, PIN.proxy);
      await waitForOutput(child, 'node-http-proxy listening');
      return running(child, port);
    },
  };
}

// ---- measurements --------------------------------------------------------------------------

/** What a started target gives the measurements: its URLs, the pid to read CPU and memory of, and how to stop it. */
function running(child, port) {
  return { http: `http://127.0.0.1:${port}/`, ws: `ws://127.0.0.1:${port}/ws`, pid: child.pid, stop: () => stop(child) };
}

function parseMicros(text) {
  const [, value, unit] = /([\d.]+)(us|ms|s)/.exec(text) ?? [];
  return Number(value) * (unit === 'us' ? 1 : unit === 'ms' ? 1000 : 1e6);
}

/** A closed loop (each connection sends again once answered); `paced`: wrk at the same request rate for every target (bench/paced.lua). */
function httpLoad(url, seconds = SECONDS, paced = false) {
  if (has('wrk')) {
    const wrk = ['wrk', '-t1', paced ? '-c64' : '-c50', `-d${seconds}s`, '--latency', ...(paced ? ['-s', join(root, 'bench/paced.lua')] : []), url];
    const out = PIN.load ? execFileSync('taskset', ['-c', PIN.load, ...wrk], { encoding: 'utf8' }) : execFileSync(wrk[0], wrk.slice(1), { encoding: 'utf8' });
    if (!/99%/.test(out)) throw new Error(`wrk against ${url} failed:\n${out}`);
    const requests = Number(/(\d+) requests in/.exec(out)[1]);
    const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
    return {
      tool: paced ? 'wrk -t1 -c64, paced (bench/paced.lua)' : 'wrk -t1 -c50',
      rps: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1])),
      requests,
      non2xx: errors ? Number(errors[1]) : 0,
      p50us: parseMicros(/^\s*50%\s+(\S+)/m.exec(out)[1]),
      p99us: parseMicros(/^\s*99%\s+(\S+)/m.exec(out)[1]),
    };
  }
  const out = execFileSync(join(root, 'node_modules/.bin/autocannon'), ['-c', '50', '-d', String(seconds), '-j', url], { encoding: 'utf8' });
  const result = JSON.parse(out);
  return { tool: 'autocannon -c50', rps: Math.round(result.requests.average), requests: result.requests.total, non2xx: result.non2xx, p50us: result.latency.p50 * 1000, p99us: result.latency.p99 * 1000 };
}

async function wsRoundTrips(url, seconds = SECONDS) {
  // Two client processes with half the sessions each, so the client is not one busy core; both
  // open all their sessions first and then measure the same window.
  const clients = [0, 1].map(() => start(process.execPath, [join(root, 'scripts/wsRoundTrips.mjs'), url, String(WS_SESSIONS / 2), String(seconds), '--on-go'], {}, PIN.load));
  await Promise.all(clients.map((c) => waitForOutput(c, 'ready', 60_000)));
  const done = clients.map((c) => waitForOutput(c, '}', (seconds + 30) * 1000));
  for (const client of clients) client.stdin.write('go\n');
  const outputs = await Promise.all(done);
  const results = outputs.map((out) => JSON.parse(out.trim().split('\n').at(-1)));
  return { perSecond: results.reduce((sum, r) => sum + r.perSecond, 0), roundTrips: results.reduce((sum, r) => sum + r.roundTrips, 0) };
}

async function idleMemory(target, running) {
  if (!running.pid) return null;
  await sleep(500);
  // A third of the sessions first, then the rest: the RSS growth over the second step is what each
  // further session costs, apart from what a process grows by once (a heap reaching its working size).
  const hold = async (count) => {
    const holders = [0, 1].map(() => start(process.execPath, [join(root, 'scripts/wsHold.mjs'), running.ws, String(count / 2)], {}, PIN.load));
    const outputs = await Promise.all(holders.map((h) => waitForOutput(h, 'held', 120_000)));
    await sleep(1000);
    return { holders, held: outputs.reduce((sum, out) => sum + Number(/held (\d+)/.exec(out)[1]), 0) };
  };
  const before = rssBytes(running.pid);
  const first = await hold(IDLE_SESSIONS / 3);
  const middle = rssBytes(running.pid);
  const second = await hold((IDLE_SESSIONS * 2) / 3);
  const after = rssBytes(running.pid);
  // Then held idle: a process may give back what it grew by during the burst of handshakes (V8
  // shrinks its heaps once allocation stops), and idle sessions are held for minutes to hours.
  await sleep(IDLE_SETTLE_SECONDS * 1000);
  const settled = rssBytes(running.pid);
  const holders = [...first.holders, ...second.holders];
  for (const holder of holders) holder.stdin.end();
  await Promise.all(holders.map((h) => new Promise((resolve) => (h.exitCode !== null ? resolve() : h.once('exit', resolve)))));
  const held = first.held + second.held;
  return {
    baseBytes: before,
    sessions: held,
    bytesPerSession: Math.round((after - before) / Math.max(1, held)),
    firstSessions: first.held,
    marginalBytesPerSession: Math.round((after - middle) / Math.max(1, second.held)),
    settledBytesPerSession: Math.round((settled - before) / Math.max(1, held)),
  };
}

// ---- the run ---------------------------------------------------------------------------------

const httpBackend = await startHttpBackend();
const wsBackend = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(WS_BACKEND)]);
await waitForOutput(wsBackend, 'echo backend');

// native-free runs one worker thread where node:http listeners cannot share a port (Node < 22.12).
const [major, minor] = process.versions.node.split('.').map(Number);
const nativeFreeShares = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
const nativeFreeThreads = () => (nativeFreeShares ? THREADS : 1);
const compareLabel = compareDir ? `@${execFileSync('git', ['-C', compareDir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()}` : '';
const skipped = [];
if (!has('haproxy')) skipped.push('HAProxy (not installed: apt-get install haproxy)');
if (!has('nginx')) skipped.push('NGINX (not installed: apt-get install nginx)');
if (!has('caddy')) skipped.push('Caddy (not installed: apt-get install caddy)');

/** Every target at THREADS threads; with `oneWorker`, fairway with one worker too. */
function passTargets(oneWorker) {
  const workers = oneWorker && THREADS > 1 ? [1, THREADS] : [THREADS];
  const targets = [directTarget(), ...workers.map((n, i) => fairwayTarget(n, 9411 + i)), fairwayTarget(nativeFreeThreads(), 9415, 'native-free')];
  if (compareDir) targets.push(...workers.map((n, i) => fairwayTarget(n, 9416 + i, 'uws', compareDir, compareLabel)));
  if (has('haproxy')) targets.push(haproxyTarget(9413));
  if (has('nginx')) targets.push(nginxTarget(9414));
  if (has('caddy')) targets.push(caddyTarget(9418));
  targets.push(nodeHttpProxyTarget(9419));
  return targets;
}

/** One round's figures for one target. */
async function measureLoad(target) {
  const running = await target.start();
  httpLoad(running.http, WARM_UP_SECONDS);
  const cpuBefore = running.pid ? cpuSeconds(running.pid) : 0;
  const http = httpLoad(running.http);
  const cpu = running.pid ? cpuSeconds(running.pid) - cpuBefore : null;
  const paced = has('wrk') ? httpLoad(running.http, SECONDS, true) : null;
  await wsRoundTrips(running.ws, WARM_UP_SECONDS);
  const wsCpuBefore = running.pid ? cpuSeconds(running.pid) : 0;
  const { perSecond: ws, roundTrips } = await wsRoundTrips(running.ws);
  const wsCpu = running.pid ? cpuSeconds(running.pid) - wsCpuBefore : null;
  await running.stop();
  await sleep(300);
  return {
    http,
    paced,
    cpuPer100k: cpu === null ? null : (cpu / http.requests) * 100_000,
    ws,
    wsCpuPer100k: wsCpu === null ? null : (wsCpu / roundTrips) * 100_000,
  };
}

/**
 * The floor of any proxy on Node and uWS, in this round and on the proxy's cores. HTTP: uWS
 * answering the same wrk load itself, and the bare client of bench/floor.mjs keeping as many
 * requests in flight toward the HTTP backend; µs of CPU per request each. WebSocket: uWS echoing
 * the same round-trip load itself (the echo backend, on the proxy's cores), and the bare session
 * client of bench/floor.mjs with as many sessions toward the WebSocket backend; µs per round trip.
 */
async function measureFloor() {
  const port = 9420;
  const uws = start(process.execPath, [join(root, 'bench/floor.mjs'), 'uws', String(port)], {}, PIN.proxy);
  await waitForOutput(uws, 'uws answering');
  const url = `http://127.0.0.1:${port}/`;
  httpLoad(url, WARM_UP_SECONDS);
  const before = cpuSeconds(uws.pid);
  const { requests } = httpLoad(url);
  const uwsMicros = ((cpuSeconds(uws.pid) - before) * 1e6) / requests;
  await stop(uws);
  const client = start(process.execPath, [join(root, 'bench/floor.mjs'), 'client', String(HTTP_BACKEND), String(SECONDS), '50'], {}, PIN.proxy);
  const out = await waitForOutput(client, '}', (WARM_UP_SECONDS + SECONDS + 30) * 1000);
  await stop(client);
  const clientMicros = JSON.parse(out.trim().split('\n').at(-1)).cpuMicrosPerRequest;

  const echo = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(port + 1)], {}, PIN.proxy);
  await waitForOutput(echo, 'echo backend');
  const wsUrl = `ws://127.0.0.1:${port + 1}/ws`;
  await wsRoundTrips(wsUrl, WARM_UP_SECONDS);
  const wsBefore = cpuSeconds(echo.pid);
  const { roundTrips } = await wsRoundTrips(wsUrl);
  const wsUwsMicros = ((cpuSeconds(echo.pid) - wsBefore) * 1e6) / roundTrips;
  await stop(echo);
  const wsClient = start(process.execPath, [join(root, 'bench/floor.mjs'), 'ws', String(WS_BACKEND), String(SECONDS), String(WS_SESSIONS)], {}, PIN.proxy);
  const wsOut = await waitForOutput(wsClient, '}', (WARM_UP_SECONDS + SECONDS + 60) * 1000);
  await stop(wsClient);
  const wsClientMicros = JSON.parse(wsOut.trim().split('\n').at(-1)).cpuMicrosPerRoundTrip;
  return {
    uwsMicros,
    clientMicros,
    cpuPer100k: ((uwsMicros + clientMicros) * 100_000) / 1e6,
    wsUwsMicros,
    wsClientMicros,
    wsCpuPer100k: ((wsUwsMicros + wsClientMicros) * 100_000) / 1e6,
  };
}

function median(values) {
  const sorted = values.filter((v) => v !== null).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Every target measured ROUNDS times, rounds one after another; each figure the median of its rounds. */
async function measure(targets) {
  const rounds = targets.map(() => []);
  const floors = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, target] of targets.entries()) {
      process.stderr.write(`round ${round}/${ROUNDS}: measuring ${target.name}…\n`);
      rounds[i].push(await measureLoad(target));
    }
    process.stderr.write(`round ${round}/${ROUNDS}: measuring the floor…\n`);
    floors.push(await measureFloor());
  }
  const floor = {
    uwsMicros: median(floors.map((f) => f.uwsMicros)),
    clientMicros: median(floors.map((f) => f.clientMicros)),
    cpuPer100k: median(floors.map((f) => f.cpuPer100k)),
    wsUwsMicros: median(floors.map((f) => f.wsUwsMicros)),
    wsClientMicros: median(floors.map((f) => f.wsClientMicros)),
    wsCpuPer100k: median(floors.map((f) => f.wsCpuPer100k)),
    rounds: floors,
  };
  const rows = [];
  for (const [i, target] of targets.entries()) {
    const samples = rounds[i];
    let idle = null;
    if (!quick && !CORES_LIST) {
      // Memory on a fresh process: heap grown by the load above would otherwise be reused and hide
      // the cost of the idle sessions.
      process.stderr.write(`idle memory: ${target.name}…\n`);
      const fresh = await target.start();
      idle = await idleMemory(target, fresh);
      await fresh.stop();
      await sleep(300);
    }
    const pick = (f) => median(samples.map(f));
    rows.push({
      target: target.name,
      http: {
        tool: samples[0].http.tool,
        rps: Math.round(pick((s) => s.http.rps)),
        p50us: pick((s) => s.http.p50us),
        p99us: pick((s) => s.http.p99us),
      },
      paced: samples[0].paced && { tool: samples[0].paced.tool, rps: Math.round(pick((s) => s.paced.rps)), p50us: pick((s) => s.paced.p50us), p99us: pick((s) => s.paced.p99us) },
      cpuPer100k: pick((s) => s.cpuPer100k),
      ws: Math.round(pick((s) => s.ws)),
      wsCpuPer100k: pick((s) => s.wsCpuPer100k),
      idle,
      rounds: samples,
    });
  }
  return { rows, floor };
}


const ratio = (a, b) => (b ? (a / b).toFixed(2) : '–');
const ms = (us) => (us / 1000).toFixed(2);
const versions = {
  node: process.version,
  fairway: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version,
  haproxy: has('haproxy') ? execFileSync('haproxy', ['-v'], { encoding: 'utf8' }).split('\n')[0] : null,
  nginx: has('nginx') ? spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim() : null,
  caddy: has('caddy') ? `Caddy ${execFileSync('caddy', ['version'], { encoding: 'utf8' }).trim()}` : null,
  httpProxy: `http-proxy ${JSON.parse(readFileSync(join(root, 'node_modules/http-proxy/package.json'), 'utf8')).version}`,
  wrk: has('wrk') ? 'wrk 4.1.0' : null,
};
const machine = `${CORES} × ${cpus()[0].model}, ${Math.round(totalmem() / 2 ** 30)} GiB`;
/**
 * `--cores LIST`: every proxy at each thread count, pinned with taskset to cores 0…N-1 while the
 * backends, the load tools and this process (which starts the WebSocket load) keep to the others,
 * so that one command measures scaling on a host with cores to spare. Writes its own section of
 * docs/BENCHMARKS.md; no idle memory, no fleet rows.
 */
async function measureCores() {
  const sections = [];
  for (const threads of CORES_LIST) {
    THREADS = threads;
    PIN = threads < CORES ? { proxy: `0-${threads - 1}`, load: `${threads}-${CORES - 1}` } : { proxy: null, load: null };
    const allowed = PIN.load ?? `0-${CORES - 1}`;
    for (const pid of [process.pid, ...family(httpBackend.child.pid), ...family(wsBackend.pid)]) spawnSync('taskset', ['-a', '-cp', allowed, String(pid)]);
    const where = PIN.proxy ? `proxies on cores ${PIN.proxy}; backends, wrk and the WebSocket clients on ${PIN.load}` : `not pinned: ${threads} thread(s) leave no core of ${CORES} for the load`;
    process.stderr.write(`--cores ${threads}: ${where}\n`);
    const table = tableOf(await measure(passTargets(false)));
    console.log(`\n${threads} thread(s), ${where}\n${table}`);
    sections.push(`### ${threads} thread(s): ${where}\n\n${table}`);
  }
  await stop(wsBackend);
  await stop(httpBackend.child);
  const section = `<!-- bench-cores:start -->
## Thread counts: \`npm run bench -- --cores ${CORES_LIST.join(',')}${quick ? ' --quick' : ''}\`

Measured ${new Date().toISOString().slice(0, 10)} on ${machine}, ${versions.node}; ${[versions.haproxy, versions.nginx, versions.caddy, versions.httpProxy].filter(Boolean).join('; ')}. Each proxy runs with the thread count of its heading (fairway workers, HAProxy \`nbthread\`, NGINX \`worker_processes\`, Caddy \`GOMAXPROCS\`, node:cluster workers), ${ROUNDS === 1 ? 'one round' : `${ROUNDS} rounds, medians,`} of ${SECONDS} s per figure; the rest as in the side-by-side table.${skipped.length ? ` Skipped: ${skipped.join('; ')}.` : ''}

${sections.join('\n\n')}
<!-- bench-cores:end -->`;
  const docs = join(root, 'docs/BENCHMARKS.md');
  let text = readFileSync(docs, 'utf8');
  text = text.includes('<!-- bench-cores:start -->') ? text.replace(/<!-- bench-cores:start -->[\s\S]*<!-- bench-cores:end -->/, section) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(docs, text);
  console.log('\nwrote docs/BENCHMARKS.md');
}

/** The table of one pass: ratios to direct access and to HAProxy in the same pass. */
function tableOf({ rows, floor }) {
  const direct = rows[0];
  const haproxy = rows.find((r) => r.target.startsWith('haproxy'));
  const none = (n) => Array(n).fill('–');
  return [
    `| target | HTTP req/s | × direct | × HAProxy | p50 ms | p99 ms | paced req/s | paced p50 / p99 ms | paced p99 × HAProxy | CPU s / 100k req | CPU × floor | WS round trips/s | × direct | × HAProxy | CPU s / 100k WS round trips | WS CPU × floor | base RSS MiB | idle WS KiB/session | idle WS KiB/session past the first third | idle WS KiB/session, held ${IDLE_SETTLE_SECONDS} s |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...rows.map((r) =>
      [
        r.target,
        r.http.rps,
        ratio(r.http.rps, direct.http.rps),
        ratio(r.http.rps, haproxy?.http.rps),
        ms(r.http.p50us),
        ms(r.http.p99us),
        r.paced ? r.paced.rps : '–',
        r.paced ? `${ms(r.paced.p50us)} / ${ms(r.paced.p99us)}` : '–',
        r.paced ? ratio(r.paced.p99us, haproxy?.paced?.p99us) : '–',
        r.cpuPer100k === null ? '–' : r.cpuPer100k.toFixed(2),
        r.cpuPer100k === null ? '–' : ratio(r.cpuPer100k, floor.cpuPer100k),
        r.ws,
        ratio(r.ws, direct.ws),
        ratio(r.ws, haproxy?.ws),
        r.wsCpuPer100k === null ? '–' : r.wsCpuPer100k.toFixed(2),
        r.wsCpuPer100k === null ? '–' : ratio(r.wsCpuPer100k, floor.wsCpuPer100k),
        r.idle ? (r.idle.baseBytes / 1048576).toFixed(1) : '–',
        r.idle ? `${(r.idle.bytesPerSession / 1024).toFixed(1)} (${r.idle.sessions})` : '–',
        r.idle?.marginalBytesPerSession !== undefined ? `${(r.idle.marginalBytesPerSession / 1024).toFixed(1)} (${r.idle.firstSessions}→${r.idle.sessions})` : '–',
        r.idle?.settledBytesPerSession !== undefined ? (r.idle.settledBytesPerSession / 1024).toFixed(1) : '–',
      ].join(' | ').replace(/^/, '| ').replace(/$/, ' |'),
    ),
    `| floor: uWS answering itself ${floor.uwsMicros.toFixed(1)} µs + bare client ${floor.clientMicros.toFixed(1)} µs; WS: uWS echoing itself ${floor.wsUwsMicros.toFixed(1)} µs + bare session client ${floor.wsClientMicros.toFixed(1)} µs | ${[...none(8), floor.cpuPer100k.toFixed(2), '1.00', ...none(3), floor.wsCpuPer100k.toFixed(2), '1.00', ...none(4)].join(' | ')} |`,
  ].join('\n');
}
if (CORES_LIST) {
  await measureCores();
  process.exit(0);
}
const measured = await measure(passTargets(true));
const { rows, floor } = measured;
await stop(wsBackend);
await stop(httpBackend.child);
const table = tableOf(measured);
const roundTable = [
  '| target | HTTP req/s, each round | WS round trips/s, each round |',
  '| --- | --- | --- |',
  ...rows.map((r) => `| ${r.target} | ${r.rounds.map((s) => s.http.rps).join(' · ')} | ${r.rounds.map((s) => s.ws).join(' · ')} |`),
].join('\n');
console.log(`\nmachine: ${machine}; ${ROUNDS} round${ROUNDS > 1 ? 's' : ''} of ${SECONDS} s per figure${quick ? ' (--quick)' : ''}; medians`);
console.log(table);
if (ROUNDS > 1) console.log(`\n${roundTable}`);
if (skipped.length) console.log(`skipped: ${skipped.join('; ')}`);

mkdirSync(join(root, 'bench/results'), { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
writeFileSync(join(root, `bench/results/${stamp}.json`), JSON.stringify({ machine, versions, quick, seconds: SECONDS, httpBackend: httpBackend.name, rows, floor, skipped }, null, 2));

const docs = join(root, 'docs/BENCHMARKS.md');
const section = `<!-- bench:start -->
## Side by side: \`npm run bench${quick || compareDir ? ' --' : ''}${quick ? ' --quick' : ''}${compareDir ? ' --compare DIR' : ''}\`${compareDir ? ` (DIR: a checkout at ${compareLabel}, built; its rows are marked so)` : ''}

Measured ${new Date().toISOString().slice(0, 10)} on ${machine}, ${versions.node}; ${versions.haproxy ?? 'HAProxy not installed'}; ${versions.nginx ?? 'NGINX not installed'}; ${versions.caddy ?? 'Caddy not installed'}; ${versions.httpProxy}. ${ROUNDS === 1 ? 'One round' : `${ROUNDS} rounds`} of ${SECONDS} s per figure: in each round every target is measured, one after another${ROUNDS > 1 ? '; the table gives the median of the rounds, and each round\'s figures follow it, so that the drift of a shared host shows' : ''}.

- HTTP backend: ${httpBackend.name}; WebSocket backend: uWS echo (\`scripts/uwsEchoBackend.mjs\`). Both run on the same 2 cores as the proxy and the load tools.
- Each target gets ${WARM_UP_SECONDS} s of the same HTTP load, and ${WARM_UP_SECONDS} s of the same WebSocket load, before each is measured (JIT, connection pools).${quick ? ' Quick mode leaves out idle memory (a full run measures it on a fresh process of each target).' : ''}
- HTTP: ${rows[0].http.tool}, keep-alive, \`GET /\` (2 bytes).${rows[0].paced ? ` Paced: ${rows[0].paced.tool}, each connection waiting an exponential time of mean 6 ms before each request, so every target gets about the same rate and its p99 is a tail, not a queue (the closed loop's p99 mostly restates throughput).` : ''} WebSocket: ${WS_SESSIONS} sessions in two client processes, each sending 64 bytes and waiting for the echo; both clients open all their sessions, then measure the same window. Base RSS: a freshly started proxy (all its processes), idle, before any session; the difference between the fairway rows of 1 and 2 workers is what one more worker costs. Idle memory: RSS growth of a freshly started proxy (all its processes) per idle proxied session, from 0 to the number in brackets (the per-process limit of 20 000 open files here caps it below 10 000), opened a third first and then the rest; "past the first third" is the growth over the second step per session, what each further session costs once the process has grown to its working size; "held ${IDLE_SETTLE_SECONDS} s" is the growth from 0 again once all the sessions have been held idle ${IDLE_SETTLE_SECONDS} s more (a process that grew its heaps for the burst of handshakes may give that back). CPU: user + system seconds of the proxy (all its processes and threads) during the HTTP run, per 100 000 requests, and during the WebSocket run (its ${WS_SESSIONS} handshakes included), per 100 000 round trips.
- fairway: least-conn, access log off, WebSocket pings off (as the peers, which send none); \`fairway Nw\` rows run the uws engine, the \`native-free\` row the engine on node:http and ws (${nativeFreeThreads()} worker thread${nativeFreeThreads() > 1 ? 's' : ''}: Node ${process.version} ${nativeFreeThreads() > 1 ? 'shares' : 'cannot share'} a node:http port between threads). HAProxy: \`nbthread ${CORES}\`, leastconn, \`http-reuse always\`. NGINX: \`worker_processes ${CORES}\`, least_conn, upstream keepalive 64. Caddy: \`reverse_proxy\` with \`lb_policy least_conn\`, \`GOMAXPROCS=${CORES}\`. node-http-proxy: http-proxy on ${CORES} \`node:cluster\` workers with a keep-alive agent (\`scripts/nodeHttpProxy.mjs\`). Every proxy sets X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host on what it forwards, as fairway does (HAProxy: \`option forwardfor\` and two \`http-request set-header\`; NGINX: three \`proxy_set_header\`; Caddy's \`reverse_proxy\` and http-proxy's \`xfwd\` set them themselves). Configs in \`bench/run.mjs\`.
- Floor: what any HTTP proxy on Node and uWS spends at least, measured in each round on the proxy's cores (\`bench/floor.mjs\`): uWS answering the same wrk load itself, plus a bare client on raw sockets (net's \`onread\`, no stream events, Content-Length only) keeping 50 requests in flight toward the same backend, CPU per request of each; "CPU × floor" is each target's CPU per request over their sum. WebSocket: uWS echoing the same round-trip load itself (\`scripts/uwsEchoBackend.mjs\` on the proxy's cores), plus a bare session client (raw sockets upgraded by hand, one pre-masked 64-byte frame written and its echo counted by length, no parsing) with as many sessions toward the same backend, CPU per round trip of each; "WS CPU × floor" over their sum.

${table}
${ROUNDS > 1 ? `\n${roundTable}\n` : ''}${skipped.length ? `\nSkipped: ${skipped.join('; ')}.\n` : ''}<!-- bench:end -->`;
let text = readFileSync(docs, 'utf8');
text = text.includes('<!-- bench:start -->') ? text.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, section) : `${text.trimEnd()}\n\n${section}\n`;
writeFileSync(docs, text);
console.log(`\nwrote bench/results/${stamp}.json and docs/BENCHMARKS.md`);

// The fleet's rows (a fleet instance against no fleet, Redis on this host), when redis-server is here.
if (has('redis-server') && has('wrk')) {
  for (const child of started) await stop(child);
  const fleet = spawnSync(process.execPath, [join(root, 'bench/fleet.mjs'), ...(quick ? ['--quick'] : [])], { stdio: 'inherit' });
  if (fleet.status !== 0) process.stderr.write('bench/fleet.mjs failed\n');
} else console.log('fleet rows skipped: redis-server and wrk are needed (apt-get install redis-server wrk)');
// Start-up: spawn to first answered request (bench/startup.mjs), against the same peers.
for (const child of started) await stop(child);
const startup = spawnSync(process.execPath, [join(root, 'bench/startup.mjs'), ...(compareDir ? ['--compare', compareDir] : [])], { stdio: 'inherit' });
if (startup.status !== 0) process.stderr.write('bench/startup.mjs failed\n');
process.exit(0);
