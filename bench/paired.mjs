// `npm run bench:paired`: is one build's HTTP path cheaper or dearer than another's? Both builds run
// side by side, idle but one, and short wrk bursts alternate between them (A B, B A, A B, ...), so
// the host's drift, which moves its speed by up to 2x within a minute here, falls on both alike.
// Each pair gives one ratio of CPU per request; the answer is the median ratio with its 95 %
// distribution-free confidence interval. Everything on 127.0.0.1, every loop bounded.
// Usage: npm run bench:paired -- --base DIR [--target DIR] [--engine NAME] [--workers N] [--pairs N] [--seconds S]
//   DIR: a checkout with dist/ built (npm ci). --target defaults to this checkout; --engine to uws,
//   the engine of the `fairway Nw` rows of `npm run bench`.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cpuSeconds } from './procStats.mjs';
import { cliOf } from './tree.mjs';

const root = new URL('..', import.meta.url).pathname;
const argument = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1] : fallback;
};
const baseDir = argument('base');
if (!baseDir) {
  console.error('usage: npm run bench:paired -- --base DIR [--target DIR] [--engine NAME] [--workers N] [--pairs N] [--seconds S]');
  process.exit(2);
}
const targetDir = resolve(argument('target', root));
const ENGINE = argument('engine', 'uws');
const WORKERS = Number(argument('workers', '1'));
const PAIRS = Number(argument('pairs', '20'));
const SECONDS = Number(argument('seconds', '2'));
const CORES = availableParallelism();
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
for (const tool of ['wrk', 'nginx']) {
  if (!has(tool)) {
    console.error(`${tool} is needed: apt-get install ${tool}`);
    process.exit(2);
  }
}
/**
 * Pinning: the proxy gets the last WORKERS cores, the load tool and the backend the others, so the
 * load tool's own work never lands on the proxy's cores. Without a spare core there is no pinning.
 */
const pin = has('taskset') && CORES > WORKERS;
const proxyCores = pin ? `${CORES - WORKERS}-${CORES - 1}` : null;
const loadCores = pin ? `0-${CORES - WORKERS - 1}` : null;
const pinned = (cores, command, args) => (cores ? ['taskset', ['-c', cores, command, ...args]] : [command, args]);

const started = new Set();
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
function start(command, args) {
  const child = spawn(...pinned(args.cores, command, args.list), { stdio: ['ignore', 'pipe', 'inherit'] });
  started.add(child);
  child.once('exit', () => started.delete(child));
  child.stdout.on('data', (d) => (child.output = `${child.output ?? ''}${d}`.slice(-4000)));
  return child;
}
process.on('exit', () => {
  for (const child of started) child.kill('SIGTERM');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

async function waitForPort(port, ms = 20_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const open = await new Promise((done) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => (socket.destroy(), done(true)));
      socket.once('error', () => done(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

const BACKEND = 9501;
const dir = mkdtempSync(join(tmpdir(), 'fairway-paired-'));
writeFileSync(
  join(dir, 'nginx.conf'),
  `daemon off; worker_processes 1; error_log ${dir}/error.log; pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:${BACKEND}; location / { return 200 "ok\\n"; } } }`,
);
start('nginx', { cores: loadCores, list: ['-c', join(dir, 'nginx.conf'), '-p', dir] });
await waitForPort(BACKEND);

function fairway(tree, port, label) {
  const file = join(dir, `${label}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      workers: WORKERS,
      engine: ENGINE,
      // info for the one line that says it listens; access log off.
      log: { level: 'info', access: false },
      pools: { http: { backends: [`127.0.0.1:${BACKEND}`] } },
      routes: [{ match: { path: '/' }, pool: 'http' }],
    }),
  );
  const child = start(process.execPath, { cores: proxyCores, list: [cliOf(tree), '--config', file] });
  const commit = execFileSync('git', ['-C', tree, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  return { label: `${label} @${commit}`, child, url: `http://127.0.0.1:${port}/`, port };
}

/** One wrk burst: requests served and the proxy's CPU seconds meanwhile. */
function burst(build, seconds) {
  const before = cpuSeconds(build.child.pid);
  const [command, args] = pinned(loadCores, 'wrk', ['-t1', '-c50', `-d${seconds}s`, build.url]);
  const out = execFileSync(command, args, { encoding: 'utf8' });
  const cpu = cpuSeconds(build.child.pid) - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  if (!requests || /Non-2xx/.test(out) || /Socket errors/.test(out)) throw new Error(`wrk against ${build.label} failed:\n${out}`);
  return { requests, cpu, microsPerRequest: (cpu / requests) * 1e6 };
}

const base = fairway(resolve(baseDir), 9502, 'base');
const target = fairway(targetDir, 9503, 'target');
/** Its log line first: a connection made while the primary still holds the port waits there. */
async function listening(build, ms = 20_000) {
  const until = Date.now() + ms;
  while (!/fairway is listening/.test(build.child.output ?? '')) {
    if (Date.now() > until || build.child.exitCode !== null) throw new Error(`${build.label} did not start:\n${build.child.output ?? ''}`);
    await sleep(50);
  }
  await waitForPort(build.port);
}
await Promise.all([listening(base), listening(target)]);
// Warm both (JIT, the upstream pool) before anything counts.
for (const build of [base, target]) burst(build, 2);

const pairs = [];
for (let i = 0; i < PAIRS; i++) {
  // A B then B A: a drift that is linear over a pair falls on both builds alike.
  const order = i % 2 === 0 ? [base, target] : [target, base];
  const measured = new Map(order.map((build) => [build, burst(build, SECONDS)]));
  const a = measured.get(base);
  const b = measured.get(target);
  pairs.push({ base: a, target: b, cpuRatio: b.microsPerRequest / a.microsPerRequest, rpsRatio: b.requests / a.requests });
  process.stdout.write(`pair ${i + 1}/${PAIRS}: ${a.microsPerRequest.toFixed(1)} vs ${b.microsPerRequest.toFixed(1)} µs CPU per request\n`);
}

/** The k-th smallest (1-based) of a sorted copy. */
const orderStatistic = (values, k) => [...values].sort((x, y) => x - y)[k - 1];
const median = (values) => {
  const n = values.length;
  return n % 2 ? orderStatistic(values, (n + 1) / 2) : (orderStatistic(values, n / 2) + orderStatistic(values, n / 2 + 1)) / 2;
};
/**
 * The distribution-free 95 % interval for a median: the k-th smallest and k-th largest of n, with k
 * the largest for which P(Binomial(n, 1/2) < k) <= 2.5 %.
 */
function medianInterval(values) {
  const n = values.length;
  let k = 0;
  let tail = 0;
  let term = 0.5 ** n; // P(X = 0)
  while (tail + term <= 0.025) {
    tail += term;
    term = (term * (n - k)) / (k + 1);
    k++;
  }
  return k === 0 ? null : [orderStatistic(values, k), orderStatistic(values, n - k + 1)];
}

const cpuRatios = pairs.map((p) => p.cpuRatio);
const interval = medianInterval(cpuRatios);
const show = (r) => r.toFixed(3);
console.log(`\n${target.label} against ${base.label}, engine ${ENGINE}, ${WORKERS} worker(s), ${PAIRS} pairs of ${SECONDS} s wrk -t1 -c50 bursts`);
console.log(pin ? `pinned: proxy on cores ${proxyCores}, wrk and nginx on ${loadCores}` : 'not pinned (no spare core or no taskset)');
console.log(`µs CPU per request, medians: base ${median(pairs.map((p) => p.base.microsPerRequest)).toFixed(1)}, target ${median(pairs.map((p) => p.target.microsPerRequest)).toFixed(1)}`);
console.log(`CPU per request, target / base: median ${show(median(cpuRatios))}${interval ? `, 95 % interval ${show(interval[0])}–${show(interval[1])}` : ''}`);
console.log(`requests per burst, target / base: median ${show(median(pairs.map((p) => p.rpsRatio)))}`);
const stopping = [...started].map((child) => new Promise((done) => child.once('exit', done)));
for (const child of started) child.kill('SIGTERM');
await Promise.race([Promise.all(stopping), sleep(5000)]);
process.exit(0);
