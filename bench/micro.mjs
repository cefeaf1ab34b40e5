// Micro-benchmarks of the pickers: ns per pick+release at 10, 100 and 1000 backends, on one
// thread (tinybench) and with 4 threads contending on one shared table, next to a naive version.
// Each picker is checked for correctness before it is timed.
// Usage: npm run bench:micro  (builds first)

import { Worker } from 'node:worker_threads';
import { cpus } from 'node:os';
import { Bench } from 'tinybench';
import { PICKERS, StateTable } from '../dist/src/index.js';
import { hash32 } from '../dist/src/core/balancers/consistentHash.js';

// Backends all weigh 1, except in the "weighted" variants (weights 1, 2, 3, 1, 2, 3, …).
const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'least-conn', 'least-conn weighted', 'random', 'p2c', 'least-time', 'hash'];
const SIZES = [10, 100, 1000];
const BATCH = 1000;
const KEYS = Array.from({ length: 1024 }, (_, i) => `room-${i}`);

function poolConfig(algorithm) {
  return { name: 'p', algorithm, backends: [], decay: 10_000, slowStart: 0, queue: { size: 0, timeout: 1000 }, hash: { key: { from: 'query', name: 'room' }, balanceFactor: 1.25 } };
}

export function makeTable(backends, workers, name = '') {
  const table = StateTable.create({ backends, workers, pools: 1 });
  const weighted = name.endsWith(' weighted') || name === 'weighted-round-robin';
  for (let slot = 0; slot < backends; slot++) {
    table.bindBackend(slot, 0, slot);
    table.setWeight(slot, weighted ? 1 + (slot % 3) : 1);
  }
  return table;
}

export function makePicker(table, name, backends, worker) {
  const algorithm = name.replace(/ weighted$/, '');
  const members = Array.from({ length: backends }, (_, slot) => ({ slot, id: `p/b${slot}` }));
  return PICKERS[algorithm]({ table, members, poolSlot: 0, worker, pool: poolConfig(algorithm) });
}

/** What one would write without care for exactness: plain loads, an unconditional add, no cache. */
export function naivePicker(table, name, backends, worker) {
  const algorithm = name.replace(/ weighted$/, '');
  if (algorithm === 'least-conn' || algorithm === 'least-time') {
    return {
      pick() {
        let best = 0;
        for (let slot = 1; slot < backends; slot++) if (table.active(slot) / table.weight(slot) < table.active(best) / table.weight(best)) best = slot;
        table.acquire(best, worker);
        return best;
      },
    };
  }
  if (algorithm === 'hash') {
    return {
      pick(key) {
        const slot = hash32(key) % backends;
        table.acquire(slot, worker);
        return slot;
      },
    };
  }
  if (algorithm === 'p2c' || algorithm === 'random') {
    return {
      pick() {
        const a = Math.floor(Math.random() * backends);
        const b = Math.floor(Math.random() * backends);
        const slot = table.active(a) <= table.active(b) ? a : b;
        table.acquire(slot, worker);
        return slot;
      },
    };
  }
  let next = 0;
  return {
    pick() {
      const slot = next++ % backends;
      table.acquire(slot, worker);
      return slot;
    },
  };
}

/** Runs `BATCH` pick+release pairs; the keys cycle so hashing sees many keys. */
export function batch(picker, table, worker) {
  for (let i = 0; i < BATCH; i++) {
    const slot = picker.pick(KEYS[i & 1023]);
    table.release(slot, worker);
  }
}

function check(algorithm, backends) {
  const table = makeTable(backends, 1, algorithm);
  const picker = makePicker(table, algorithm, backends, 0);
  const held = [];
  for (let i = 0; i < backends * 2; i++) {
    const slot = picker.pick(KEYS[i & 1023]);
    if (slot < 0 || slot >= backends) throw new Error(`${algorithm}: picked ${slot}`);
    held.push(slot);
  }
  if (algorithm.startsWith('least-conn')) {
    // Weighted least-conn keeps every backend's active/weight within one session of the others.
    const ratios = Array.from({ length: backends }, (_, s) => table.active(s) / table.weight(s));
    if (Math.max(...ratios) - Math.min(...ratios) > 1) throw new Error(`least-conn uneven: ${ratios}`);
  }
  for (const slot of held) table.release(slot, 0);
  for (let s = 0; s < backends; s++) if (table.active(s) !== 0) throw new Error(`${algorithm}: counter leak on ${s}`);
}

async function singleThread() {
  const rows = [];
  for (const backends of SIZES) {
    const bench = new Bench({ time: 300, warmupTime: 100 });
    for (const algorithm of ALGORITHMS) {
      check(algorithm, backends);
      const table = makeTable(backends, 1, algorithm);
      const picker = makePicker(table, algorithm, backends, 0);
      bench.add(`${algorithm}@${backends}`, () => batch(picker, table, 0));
      const naiveTable = makeTable(backends, 1, algorithm);
      const naive = naivePicker(naiveTable, algorithm, backends, 0);
      bench.add(`naive ${algorithm}@${backends}`, () => batch(naive, naiveTable, 0));
    }
    await bench.run();
    for (const algorithm of ALGORITHMS) {
      const ns = (name) => (bench.getTask(name).result.latency.mean * 1e6) / BATCH;
      rows.push({ algorithm, backends, ns: ns(`${algorithm}@${backends}`), naive: ns(`naive ${algorithm}@${backends}`) });
    }
  }
  return rows;
}

const WORKER_CODE = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.self).then(async (m) => {
  const { StateTable } = await import(workerData.dist);
  const table = StateTable.attach(workerData.buffer);
  const picker = m.makePicker(table, workerData.algorithm, workerData.backends, workerData.worker);
  for (let i = 0; i < 20; i++) m.batch(picker, table, workerData.worker);
  Atomics.wait(new Int32Array(workerData.gate), 0, 0);
  const start = process.hrtime.bigint();
  for (let i = 0; i < workerData.batches; i++) m.batch(picker, table, workerData.worker);
  parentPort.postMessage(Number(process.hrtime.bigint() - start) / (workerData.batches * ${BATCH}));
});`;

async function contended(algorithm, backends, threads) {
  const table = makeTable(backends, threads, algorithm);
  const gate = new SharedArrayBuffer(4);
  const batches = backends === 1000 ? 100 : 400;
  const workers = Array.from(
    { length: threads },
    (_, worker) =>
      new Worker(WORKER_CODE, {
        eval: true,
        workerData: { self: import.meta.url, dist: new URL('../dist/src/index.js', import.meta.url).href, buffer: table.buffer, algorithm, backends, worker, gate, batches },
      }),
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  const perThread = await Promise.all(workers.map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject))));
  await Promise.all(workers.map((w) => w.terminate()));
  for (let s = 0; s < backends; s++) if (table.active(s) !== 0) throw new Error(`${algorithm}: counter leak under contention on ${s}`);
  return perThread.reduce((a, b) => a + b) / threads;
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const rows = await singleThread();
  for (const row of rows) row.contended = await contended(row.algorithm, row.backends, 4);
  console.log(`machine: ${cpus().length} × ${cpus()[0].model}, Node ${process.version}`);
  console.log('| algorithm | backends | ns/pick, 1 thread | naive, 1 thread | ns/pick, 4 threads contending |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const row of rows) {
    console.log(`| ${row.algorithm} | ${row.backends} | ${row.ns.toFixed(0)} | ${row.naive.toFixed(0)} | ${row.contended.toFixed(0)} |`);
  }
}
