// Start-up: from spawning the proxy to its first answered request (a restart after a crash or a
// deploy is downtime for as long). fairway 1 and 2 workers (uws) and native-free, HAProxy and NGINX
// when installed, against one backend: 9 rounds, each starting every target once in turn (so the
// host's drift falls on all of them); median and range. Prints a Markdown table.
//
// Usage: npm run bench:startup [-- --compare DIR]
//   --compare DIR: also starts the fairway built in another checkout DIR, in the same run.
// `npm run bench` runs it last.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliOf } from './tree.mjs';

const RUNS = 9;
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fairway-startup-'));
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
const backend = createServer((_req, res) => res.end('ok'));
await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
const upstream = `127.0.0.1:${backend.address().port}`;

const compareAt = process.argv.indexOf('--compare');
const compareDir = compareAt > 0 ? process.argv[compareAt + 1] : undefined;
const fairway = (workers, engine, tree = root) => (port) => [process.execPath, [cliOf(tree), '--listen', `127.0.0.1:${port}`, '--to', upstream, '--workers', String(workers), '--engine', engine]];
const trees = [['', root]];
if (compareDir) trees.push([` @${spawnSync('git', ['-C', compareDir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim()}`, compareDir]);
const targets = trees.flatMap(([label, tree]) => [
  [`fairway${label} 1w`, fairway(1, 'uws', tree)],
  [`fairway${label} 2w`, fairway(2, 'uws', tree)],
  [`fairway${label} native-free 1w`, fairway(1, 'native-free', tree)],
]);
if (has('haproxy')) {
  targets.push([
    'haproxy 2t',
    (port) => {
      const file = join(dir, `haproxy-${port}.cfg`);
      writeFileSync(file, `global\n  nbthread 2\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend f\n  bind 127.0.0.1:${port}\n  default_backend b\nbackend b\n  server s1 ${upstream}\n`);
      return ['haproxy', ['-db', '-f', file]];
    },
  ]);
}
if (has('nginx')) {
  targets.push([
    'nginx 2p',
    (port) => {
      const file = join(dir, `nginx-${port}.conf`);
      writeFileSync(file, `daemon off; worker_processes 2; error_log ${dir}/error.log; pid ${dir}/nginx-${port}.pid;\nevents {}\nhttp { access_log off; server { listen 127.0.0.1:${port}; location / { proxy_pass http://${upstream}; } } }\n`);
      return ['nginx', ['-c', file, '-p', dir]];
    },
  ]);
}

function answered(port) {
  return new Promise((resolve) => {
    request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    })
      .on('error', () => resolve(false))
      .end();
  });
}

async function startOnce(command) {
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const [file, args] = command(port);
  const t0 = performance.now();
  const child = spawn(file, args, { stdio: 'ignore' });
  const deadline = t0 + 30_000;
  while (!(await answered(port))) {
    if (performance.now() > deadline) throw new Error(`${file} did not answer within 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const ms = performance.now() - t0;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  return ms;
}

const times = targets.map(() => []);
for (let round = 0; round < RUNS; round++) {
  for (const [i, [, command]] of targets.entries()) times[i].push(await startOnce(command));
}
console.log(`\nStart to first answered request, ${RUNS} rounds starting each target once (median, fastest–slowest):\n`);
console.log('| target | ms |');
console.log('| --- | ---: |');
for (const [i, [name]] of targets.entries()) {
  const sorted = times[i].sort((a, b) => a - b);
  console.log(`| ${name} | ${sorted[RUNS >> 1].toFixed(0)} (${sorted[0].toFixed(0)}–${sorted[RUNS - 1].toFixed(0)}) |`);
}
backend.close();
