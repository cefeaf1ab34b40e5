// Fleet benchmark: what sharing counts through Redis costs one instance. In one run, alternating
// rounds: fairway 2 workers without a fleet, with a fleet whose sessions are picked locally from
// synced counts (exact_sessions: false), and with fleet-exact session picks (one Redis round trip
// per new session). Per target: WebSocket handshakes per second and their p50/p99 latency (open,
// then close, 20 at a time), and HTTP req/s and p99 (wrk). Also Redis's own round trip (PING).
// Writes the table into docs/BENCHMARKS.md between <!-- bench:fleet:start --> and its end.
//
// Usage: npm run bench:fleet [-- --quick]

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { get as httpGet } from 'node:http';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 1 : 3;
const HANDSHAKES = quick ? 1000 : 3000;
const CONCURRENCY = 20;
const HTTP_SECONDS = quick ? 2 : 4;
const root = new URL('..', import.meta.url).pathname;
const started = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;

for (const tool of ['redis-server', 'wrk']) {
  if (!has(tool)) {
    console.error(`bench:fleet needs ${tool} (apt-get install ${tool})`);
    process.exit(2);
  }
}

function start(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}
process.on('exit', () => {
  for (const child of started) child.kill('SIGTERM');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  return exited;
}

function waitForOutput(child, text, ms = 15_000) {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" from ${child.spawnargs.join(' ')}:\n${output}`)), ms);
    child.stdout.on('data', (d) => {
      output += d;
      if (output.includes(text)) {
        clearTimeout(timer);
        resolve(output);
      }
    });
  });
}

async function waitForHttp(port) {
  for (let i = 0; i < 150; i++) {
    const ok = await new Promise((resolve) => {
      const req = httpGet({ host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`nothing answers on ${port}`);
}

const REDIS = 9431;
const HTTP_BACKEND = 9432;
const WS_BACKEND = 9433;
const redis = start('redis-server', ['--port', String(REDIS), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
await waitForOutput(redis, 'Ready to accept connections');
const httpBackend = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(HTTP_BACKEND)]);
const wsBackend = start(process.execPath, [join(root, 'scripts/uwsEchoBackend.mjs'), String(WS_BACKEND)]);
await Promise.all([waitForOutput(httpBackend, 'echo backend'), waitForOutput(wsBackend, 'echo backend')]);

const targets = [
  { name: 'fairway 2w, no fleet', fleet: undefined, port: 9441 },
  { name: 'fairway 2w, fleet, exact_sessions: false', fleet: { exact_sessions: false }, port: 9442 },
  { name: 'fairway 2w, fleet, exact_sessions: true', fleet: { exact_sessions: true }, port: 9443 },
];

async function startTarget(target) {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-bench-fleet-'));
  const file = join(dir, 'fairway.json');
  writeFileSync(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${target.port}`,
      workers: 2,
      log: { level: 'info', access: false },
      websocket: { ping_interval: '0s' },
      ...(target.fleet ? { fleet: { redis: `redis://127.0.0.1:${REDIS}`, name: `bench-${target.port}`, ...target.fleet } } : {}),
      pools: { http: { backends: [`127.0.0.1:${HTTP_BACKEND}`] }, ws: { backends: [`127.0.0.1:${WS_BACKEND}`] } },
      routes: [
        { match: { path: '/ws' }, pool: 'ws' },
        { match: { path: '/' }, pool: 'http' },
      ],
    }),
  );
  const child = start(process.execPath, [join(root, 'dist/bundle/cli.js'), '--config', file]);
  await waitForOutput(child, target.fleet ? 'fleet up' : 'fairway is listening');
  await waitForHttp(target.port);
  return child;
}

/** HANDSHAKES WebSocket opens, CONCURRENCY at a time, each closed once open; latency of each open. */
async function handshakes(url) {
  const latencies = [];
  let next = 0;
  const began = performance.now();
  const lane = async () => {
    while (next++ < HANDSHAKES) {
      const at = performance.now();
      await new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.once('open', () => {
          latencies.push(performance.now() - at);
          ws.close();
          ws.once('close', resolve);
        });
        ws.once('error', reject);
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  const seconds = (performance.now() - began) / 1000;
  latencies.sort((a, b) => a - b);
  return { perSecond: Math.round(HANDSHAKES / seconds), p50: latencies[Math.floor(latencies.length * 0.5)], p99: latencies[Math.floor(latencies.length * 0.99)] };
}

function parseMicros(text) {
  const [, value, unit] = /([\d.]+)(us|ms|s)/.exec(text) ?? [];
  return Number(value) * (unit === 'us' ? 1 : unit === 'ms' ? 1000 : 1e6);
}

function httpLoad(url) {
  const out = execFileSync('wrk', ['-t1', '-c50', `-d${HTTP_SECONDS}s`, '--latency', url], { encoding: 'utf8' });
  if (/Non-2xx/.test(out)) throw new Error(`errors from ${url}:\n${out}`);
  return { rps: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1])), p99us: parseMicros(/^\s*99%\s+(\S+)/m.exec(out)[1]) };
}

async function redisRoundTrip() {
  const client = new Redis(`redis://127.0.0.1:${REDIS}`);
  const times = [];
  for (let i = 0; i < 2000; i++) {
    const at = performance.now();
    await client.ping();
    times.push(performance.now() - at);
  }
  client.disconnect();
  times.sort((a, b) => a - b);
  return { p50: times[1000], p99: times[1980] };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const results = targets.map(() => []);
const ping = await redisRoundTrip();
for (let round = 0; round < ROUNDS; round++) {
  // Each round starts one target later, so that no target is always the one measured first (right
  // after another proxy's thousands of connections) or last.
  for (let k = 0; k < targets.length; k++) {
    const i = (round + k) % targets.length;
    const target = targets[i];
    const child = await startTarget(target);
    await handshakes(`ws://127.0.0.1:${target.port}/ws`); // warm-up
    httpLoad(`http://127.0.0.1:${target.port}/`);
    const hs = await handshakes(`ws://127.0.0.1:${target.port}/ws`);
    const http = httpLoad(`http://127.0.0.1:${target.port}/`);
    results[i].push({ hs, http });
    console.log(`round ${round + 1} ${target.name}: ${hs.perSecond} handshakes/s, p50 ${hs.p50.toFixed(2)} ms, p99 ${hs.p99.toFixed(2)} ms; HTTP ${http.rps} req/s, p99 ${(http.p99us / 1000).toFixed(2)} ms`);
    await stop(child);
  }
}

const base = results[0];
const row = (target, i) => {
  const r = results[i];
  const hs = median(r.map((x) => x.hs.perSecond));
  const p50 = median(r.map((x) => x.hs.p50));
  const p99 = median(r.map((x) => x.hs.p99));
  const rps = median(r.map((x) => x.http.rps));
  const hp99 = median(r.map((x) => x.http.p99us)) / 1000;
  const ratio = (a, b) => (a / b).toFixed(2);
  return `| ${target.name} | ${hs} (${ratio(hs, median(base.map((x) => x.hs.perSecond)))}×) | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${rps} (${ratio(rps, median(base.map((x) => x.http.rps)))}×) | ${hp99.toFixed(2)} |`;
};
const machine = `${availableParallelism()} × ${cpus()[0].model}, ${Math.round(totalmem() / 2 ** 30)} GiB`;
const redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).split(' ')[2];
const table = [
  '| target | WS handshakes/s (vs no fleet) | handshake p50 ms | handshake p99 ms | HTTP req/s (vs no fleet) | HTTP p99 ms |',
  '| --- | --- | --- | --- | --- | --- |',
  ...targets.map(row),
].join('\n');
const rounds = [
  '| target | handshakes/s, each round | HTTP req/s, each round |',
  '| --- | --- | --- |',
  ...targets.map((t, i) => `| ${t.name} | ${results[i].map((x) => x.hs.perSecond).join(' · ')} | ${results[i].map((x) => x.http.rps).join(' · ')} |`),
].join('\n');
console.log(`\n${table}\n\n${rounds}\nRedis PING round trip: p50 ${ping.p50.toFixed(3)} ms, p99 ${ping.p99.toFixed(3)} ms`);

const section = `<!-- bench:fleet:start -->
## Fleet: \`npm run bench:fleet${quick ? ' -- --quick' : ''}\`

Measured ${new Date().toISOString().slice(0, 10)} on ${machine}, Node ${process.version}, redis-server ${redisVersion} (no persistence) on the same host. ${ROUNDS === 1 ? 'One round' : `${ROUNDS} rounds, alternating the targets, each round starting one target later; medians, each round's figures below`}. Each target is fairway with 2 uws workers, started fresh, one HTTP backend and one WebSocket backend (\`scripts/uwsEchoBackend.mjs\`). Handshakes: ${HANDSHAKES} WebSocket opens, ${CONCURRENCY} at a time, each closed once open, latency from the client's connect to its \`open\` (after a warm-up of as many). HTTP: wrk -t1 -c50, ${HTTP_SECONDS} s. Redis's own round trip from a Node client on this host (PING, 2000 times): p50 ${ping.p50.toFixed(3)} ms, p99 ${ping.p99.toFixed(3)} ms.

${table}

${rounds}
<!-- bench:fleet:end -->`;
const docs = join(root, 'docs/BENCHMARKS.md');
let text = readFileSync(docs, 'utf8');
text = text.includes('<!-- bench:fleet:start -->') ? text.replace(/<!-- bench:fleet:start -->[\s\S]*<!-- bench:fleet:end -->/, section) : `${text.trimEnd()}\n\n${section}\n`;
writeFileSync(docs, text);
console.log('wrote docs/BENCHMARKS.md');
await Promise.all([...started].map(stop));
process.exit(0);
