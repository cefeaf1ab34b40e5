// The bundles of dist/bundle/ (piscina's worker script among them) and their V8 code caches
// (scripts/bundle.mjs, scripts/loadBundle.cjs): the caches the build made are used, a bundle with
// a stale or missing cache still runs, and what a bundle loads on demand loads when it runs from
// its cache.

import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { request } from 'undici';
import { YOUNG_GENERATION_MB } from '../dist/src/primary/supervisor.js';
import { freePort, runCli, START_DEADLINE, startBackend, waitFor } from './helpers.js';

const root = new URL('..', import.meta.url).pathname;
const BUNDLES = ['cli', 'worker', 'serve-uws', 'serve-native-free'].map((name) => join(root, 'dist/bundle', `${name}.bundle.js`));
const LOADER = join(root, 'dist/bundle/load.js');
const { compile } = createRequire(import.meta.url)(LOADER) as { compile: (file: string, cache?: Buffer) => { cachedDataRejected?: boolean } };

test('V8 takes the code cache of every bundle, in the primary and in a worker thread of the pool\'s limits', async (t) => {
  for (const file of BUNDLES) t.false(compile(file, readFileSync(`${file}.cache`)).cachedDataRejected, file);
  const worker = new Worker(
    `const { compile } = require(${JSON.stringify(LOADER)});
     const { readFileSync } = require('node:fs');
     require('node:worker_threads').parentPort.postMessage(${JSON.stringify(BUNDLES)}.map((f) => compile(f, readFileSync(f + '.cache')).cachedDataRejected));`,
    // The pool's own limits, as its workers run.
    { eval: true, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } },
  );
  const rejected = await new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject));
  await worker.terminate();
  t.deepEqual(rejected, BUNDLES.map(() => false));
});

test('a bundle whose code cache is stale or missing compiles from source and runs', (t) => {
  // A copy of the package's built files, so that its cache can be spoiled.
  const copy = mkdtempSync(join(tmpdir(), 'fairway-bundle-'));
  t.teardown(() => rmSync(copy, { recursive: true, force: true }));
  cpSync(join(root, 'dist/bundle'), join(copy, 'dist/bundle'), { recursive: true });
  cpSync(join(root, 'package.json'), join(copy, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'));
  const config = join(copy, 'fairway.json');
  writeFileSync(config, JSON.stringify({ listen: '127.0.0.1:8080', pools: { app: { backends: ['127.0.0.1:9001'] } } }));
  const cache = join(copy, 'dist/bundle/cli.bundle.js.cache');
  t.true(compile(join(copy, 'dist/bundle/cli.bundle.js'), Buffer.from('not a code cache')).cachedDataRejected);
  for (const spoil of [() => writeFileSync(cache, 'not a code cache'), () => rmSync(cache)]) {
    spoil();
    const run = spawnSync(process.execPath, [join(copy, 'dist/bundle/cli.js'), '--config', config, '--check'], { encoding: 'utf8' });
    t.is(run.status, 0, run.stderr);
  }
});

test('what the bundles load on demand loads from their caches: the HTTP health check in the primary, the CPU profile in a worker', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fairway-on-demand-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'fairway.json');
  const health = { type: 'http', path: '/health', interval: '200ms', timeout: '2s', rise: 1, fall: 1 };
  writeFileSync(config, JSON.stringify({ listen: `127.0.0.1:${port}`, workers: 1, log: { level: 'info', access: false }, pools: { app: { backends: [backend.address], health } } }));
  const { child, output } = await runCli(t, ['--config', config], { FAIRWAY_CPU_PROFILE: dir });
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  // The check's HTTP client (undici) is required on its first use.
  await waitFor('a health check to reach the backend', () => backend.lastPath === '/health' && backend.lastHeaders['user-agent'] === 'fairway-health-check', START_DEADLINE);
  const res = await request(`http://127.0.0.1:${port}/`);
  t.is(await res.body.text(), 'a');
  t.notRegex(output(), /health check failed|DYNAMIC_IMPORT/);
  // The profiler (node:inspector) is required as the worker starts; the profile is written at a graceful stop.
  child.kill('SIGTERM');
  t.is((await once(child, 'exit'))[0], 0, output());
  const profile = JSON.parse(readFileSync(join(dir, 'worker-0.cpuprofile'), 'utf8'));
  t.true(profile.nodes.length > 0);
});
