// Slow readers: N clients start a 20 MiB download each and stop reading it, while another process
// sends GET / one after another for 20 s. Per proxy (fairway uws 2 workers, fairway native-free,
// HAProxy 2 threads when installed): its RSS before and at peak, the growth per stalled reader,
// and the normal client's failures and latency. Prints a Markdown table.
//
// Usage: npm run bench:slow [-- --readers 500]

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const at = process.argv.indexOf('--readers');
const READERS = at > 0 ? Number(process.argv[at + 1]) : 500;
const SECONDS = 20;
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fairway-slow-'));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const started = new Set();
process.on('exit', () => started.forEach((child) => child.kill('SIGTERM')));

/** The other client: GET / on a fresh connection, one after another, for SECONDS. */
async function normalClient(port) {
  const get = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = request({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 20_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: res.statusCode === 200, ms: performance.now() - t0 }));
      });
      req.on('error', () => resolve({ ok: false, ms: performance.now() - t0 }));
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end();
    });
  const times = [];
  let failed = 0;
  for (const end = Date.now() + SECONDS * 1000; Date.now() < end; ) {
    const { ok, ms } = await get();
    times.push(ms);
    if (!ok) failed++;
  }
  times.sort((a, b) => a - b);
  const n = times.length;
  console.log(JSON.stringify({ requests: n, failed, p50: times[n >> 1], p99: times[Math.floor(n * 0.99)], worst: times[n - 1] }));
}

async function main() {
  const block = Buffer.alloc(64 * 1024, 0x61);
  const backend = createServer((req, res) => {
    if (!req.url.startsWith('/download')) return res.end('ok');
    let left = 20 * 1024 * 1024;
    res.writeHead(200, { 'content-length': left });
    const pump = () => {
      while (left > 0) {
        left -= block.length;
        if (!res.write(block)) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const upstream = `127.0.0.1:${backend.address().port}`;
  const targets = [
    ['fairway 2w', (port) => fairway(port, upstream, 'uws')],
    ['fairway native-free 1w', (port) => fairway(port, upstream, 'native-free')],
  ];
  if (spawnSync('sh', ['-c', 'command -v haproxy']).status === 0) targets.push(['haproxy 2t', (port) => haproxy(port, upstream)]);
  const rows = [];
  for (const [name, startTarget] of targets) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const child = await startTarget(port);
    rows.push([name, await measure(child, port)]);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    backend.closeAllConnections();
  }
  backend.close();
  console.log(`\n${READERS} stalled 20 MiB downloads, GET / one after another for ${SECONDS} s from another process:\n`);
  console.log('| target | RSS before MiB | RSS peak MiB | KiB per stalled reader | GET / | failed | p50 ms | p99 ms | slowest ms |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, r] of rows) {
    console.log(`| ${name} | ${r.base.toFixed(1)} | ${r.peak.toFixed(1)} | ${(((r.peak - r.base) * 1024) / READERS).toFixed(0)} | ${r.requests} | ${r.failed} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(1)} | ${r.worst.toFixed(0)} |`);
  }
}

function spawnTarget(command, args, ready) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  child.once('exit', () => started.delete(child));
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} did not start:\n${output}`)), 15_000);
    const seen = (data) => {
      output += data;
      if (ready(output)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    if (ready('')) seen('');
  });
}

function fairway(port, upstream, engine) {
  const args = [join(root, 'dist/bundle/cli.js'), '--listen', `127.0.0.1:${port}`, '--to', upstream, '--workers', '2', '--engine', engine];
  return spawnTarget(process.execPath, args, (output) => output.includes('fairway is listening'));
}

async function haproxy(port, upstream) {
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, `global\n  nbthread 2\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:${port}\n  default_backend b\nbackend b\n  balance leastconn\n  server s1 ${upstream}\n`);
  const child = await spawnTarget('haproxy', ['-db', '-f', file], () => true);
  // HAProxy says nothing once it listens: wait until it answers.
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => resolve(res.resume() && true)).on('error', () => resolve(false)).end());
    if (ok) break;
    await sleep(100);
  }
  return child;
}

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function measure(child, port) {
  const base = rss(child.pid);
  const readers = [];
  for (let i = 0; i < READERS; i++) {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /download HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('error', () => {});
    socket.once('data', () => socket.pause());
    readers.push(socket);
  }
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, rss(child.pid))), 100);
  const normal = spawn(process.execPath, [new URL(import.meta.url).pathname, '--normal-client', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  normal.stdout.on('data', (d) => (output += d));
  await new Promise((resolve) => normal.once('exit', resolve));
  clearInterval(sampler);
  for (const socket of readers) socket.destroy();
  return { base, peak, ...JSON.parse(output) };
}

if (process.argv.includes('--normal-client')) await normalClient(Number(process.argv.at(-1)));
else await main();
