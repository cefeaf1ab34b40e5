// A caching route against the same route uncached and against the backend directly, in one run:
// wrk -t1 -c50 for SECONDS on GET /catalog, whose backend (a node:http child process) answers
// 2 KB of JSON after DELAY ms (a query it would make) with Cache-Control: max-age=60. Per engine
// (the default native-free, and uws with 2 workers). Prints a Markdown table.
//
// Usage: npm run bench:cache [-- --seconds 5 --delay 5]

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const SECONDS = arg('seconds', 5);
const DELAY = arg('delay', 5);
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fairway-cache-bench-'));
const started = new Set();
process.on('exit', () => started.forEach((child) => child.kill('SIGTERM')));

if (spawnSync('wrk', ['--version']).error) {
  console.error('wrk is not installed (apt-get install wrk)');
  process.exit(1);
}

function start(command, args) {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  started.add(child);
  return child;
}

async function stop(child) {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  started.delete(child);
}

/** Resolves once GET `path` on `port` answers 200 (deadline: 30 s). */
async function answering(port, path) {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    const code = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' }).stdout;
    if (code === '200') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`GET ${path} on ${port} does not answer 200`);
}

/** wrk's requests per second and latency percentiles (ms); throws on any failed response. */
function wrk(port, path) {
  const out = spawnSync('wrk', ['-t1', '-c50', `-d${SECONDS}s`, '--latency', `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' }).stdout;
  const ms = (label) => {
    const m = new RegExp(`${label}\\s+([\\d.]+)(us|ms|s)`).exec(out);
    return m ? Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]] : NaN;
  };
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (errors) throw new Error(`${errors[1]} failed responses on ${port}${path}`);
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]), p50: ms('50%'), p99: ms('99%') };
}

const BACKEND = `
import { createServer } from 'node:http';
const body = JSON.stringify({ items: Array.from({ length: 40 }, (_, i) => ({ id: i, name: 'item ' + i, price: i * 1.5 })) });
createServer((req, res) => setTimeout(() => {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}, ${DELAY})).listen(Number(process.argv[2]), '127.0.0.1');
`;

async function main() {
  writeFileSync(join(dir, 'backend.mjs'), BACKEND);
  const backendPort = 19_300;
  const backend = start(process.execPath, [join(dir, 'backend.mjs'), String(backendPort)]);
  await answering(backendPort, '/catalog');
  const rows = [['direct', wrk(backendPort, '/catalog')]];
  for (const [label, engine, workers] of [['native-free', 'native-free', 2], ['uws 2w', 'uws', 2]]) {
    const port = 19_301;
    const file = join(dir, `${engine}.yaml`);
    writeFileSync(
      file,
      `listen: 127.0.0.1:${port}\nworkers: ${workers}\nengine: ${engine}\nlog: { level: warn, access: false }\npools:\n  api:\n    backends: [127.0.0.1:${backendPort}]\nroutes:\n  - match: { path: /cached }\n    pool: api\n    strip_prefix: /cached\n    cache: { size: 64mb }\n  - match: { path: / }\n    pool: api\n`,
    );
    const fairway = start(process.execPath, [join(root, 'dist/bundle/cli.js'), '--config', file]);
    await answering(port, '/catalog');
    rows.push([`fairway ${label}, uncached route`, wrk(port, '/catalog')]);
    rows.push([`fairway ${label}, cached route`, wrk(port, '/cached/catalog')]);
    await stop(fairway);
  }
  await stop(backend);
  const direct = rows[0][1].rps;
  console.log(`GET /catalog: 2 KB JSON after ${DELAY} ms, Cache-Control: max-age=60; wrk -t1 -c50 -d${SECONDS}s; node ${process.version}\n`);
  console.log('| target | req/s | × direct | p50 ms | p99 ms |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const [name, r] of rows) console.log(`| ${name} | ${Math.round(r.rps)} | ${(r.rps / direct).toFixed(2)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
