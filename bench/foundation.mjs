// First throughput measurement: HTTP req/s (wrk) and WebSocket round trips through fairway with
// 1 and 2 workers, next to direct access to the backend, in one run. Everything on 127.0.0.1.
// Usage: npm run build && node bench/foundation.mjs [seconds]

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

const seconds = Number(process.argv[2] ?? 10);
const root = new URL('..', import.meta.url).pathname;
const started = [];

function start(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(child);
  return child;
}

function waitForOutput(child, text) {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" from ${child.spawnargs.join(' ')}`)), 10_000);
    child.stdout.on('data', (d) => {
      output += d;
      if (output.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function stopAll() {
  for (const child of started) if (child.exitCode === null) child.kill('SIGTERM');
}
process.on('exit', stopAll);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function startNginx(port) {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-nginx-'));
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off; worker_processes 1; error_log ${dir}/error.log; pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:${port}; location / { return 200 "ok\\n"; } } }`,
  );
  start('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir]);
  await sleep(300);
}

async function startFairway(port, workers, httpBackend, wsBackend) {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-'));
  const config = join(dir, 'fairway.json');
  writeFileSync(
    config,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      workers,
      log: { level: 'warn', access: false },
      pools: { http: { backends: [httpBackend] }, ws: { backends: [wsBackend] } },
      routes: [
        { match: { path: '/ws' }, pool: 'ws' },
        { match: { path: '/' }, pool: 'http' },
      ],
    }),
  );
  const child = start(process.execPath, [join(root, 'dist/bundle/cli.js'), '--config', config]);
  child.stdout.on('data', () => {});
  await sleep(1500);
  return child;
}

function wrk(url) {
  const out = execFileSync('wrk', ['-t1', '-c50', `-d${seconds}s`, '--latency', url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]);
  const p50 = /50%\s+([\d.]+\w+)/.exec(out)[1];
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)[1];
  return { rps: Math.round(rps), p50, p99 };
}

function wsRoundTrips(url) {
  const out = execFileSync(process.execPath, [join(root, 'scripts/wsRoundTrips.mjs'), url, '100', String(seconds)], { encoding: 'utf8' });
  return JSON.parse(out).perSecond;
}

const HTTP_PORT = 9201;
const WS_PORT = 9202;
await startNginx(HTTP_PORT);
const echo = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(WS_PORT)]);
await waitForOutput(echo, 'echo backend');

const rows = [];
rows.push({ target: 'direct', http: wrk(`http://127.0.0.1:${HTTP_PORT}/`), ws: wsRoundTrips(`ws://127.0.0.1:${WS_PORT}/ws`) });
for (const [workers, port] of [[1, 9211], [2, 9212]]) {
  const fairway = await startFairway(port, workers, `127.0.0.1:${HTTP_PORT}`, `127.0.0.1:${WS_PORT}`);
  rows.push({ target: `fairway, ${workers} worker${workers > 1 ? 's' : ''}`, http: wrk(`http://127.0.0.1:${port}/`), ws: wsRoundTrips(`ws://127.0.0.1:${port}/ws`) });
  fairway.kill('SIGTERM');
  await sleep(500);
}

const direct = rows[0];
console.log(`machine: ${cpus().length} × ${cpus()[0].model}, Node ${process.version}; ${seconds} s per figure`);
console.log('| target | HTTP req/s | × direct | p50 | p99 | WS round trips/s | × direct |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const row of rows) {
  console.log(
    `| ${row.target} | ${row.http.rps} | ${(row.http.rps / direct.http.rps).toFixed(2)} | ${row.http.p50} | ${row.http.p99} | ${row.ws} | ${(row.ws / direct.ws).toFixed(2)} |`,
  );
}
stopAll();
process.exit(0);
