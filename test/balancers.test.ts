// Pickers and the state table, without sockets: exact pick sequences and exactness across threads.

import { Worker } from 'node:worker_threads';
import test from 'ava';
import { BACKEND_DOWN, NO_BACKEND, PICKERS, StateTable } from '../dist/index.js';

function table(backends: number, workers = 1): StateTable {
  const t = StateTable.create({ backends, workers, pools: 4 });
  for (let slot = 0; slot < backends; slot++) t.setWeight(slot, 1);
  return t;
}

const members = (count: number) => Array.from({ length: count }, (_, slot) => ({ slot }));

test('round-robin: exact sequence, skipping a backend that is down', (t) => {
  const state = table(3);
  const picker = PICKERS['round-robin']({ table: state, members: members(3), poolSlot: 0, worker: 0 });
  t.deepEqual(Array.from({ length: 6 }, () => picker.pick()), [0, 1, 2, 0, 1, 2]);
  state.setState(1, BACKEND_DOWN);
  t.deepEqual(Array.from({ length: 4 }, () => picker.pick()), [0, 2, 0, 2]);
  for (let slot = 0; slot < 3; slot++) state.setState(slot, BACKEND_DOWN);
  t.is(picker.pick(), NO_BACKEND);
});

test('round-robin: two workers share one rotation', (t) => {
  const state = table(3, 2);
  const first = PICKERS['round-robin']({ table: state, members: members(3), poolSlot: 1, worker: 0 });
  const second = PICKERS['round-robin']({ table: state, members: members(3), poolSlot: 1, worker: 1 });
  t.deepEqual([first.pick(), second.pick(), first.pick(), second.pick(), second.pick(), first.pick()], [0, 1, 2, 0, 1, 2]);
  t.is(state.activeByWorker(0, 0) + state.activeByWorker(0, 1), 2);
});

const LEAST_CONN_CASES: { name: string; weights: number[]; active: number[]; picks: number[] }[] = [
  { name: 'fills the emptiest first', weights: [1, 1, 1], active: [3, 1, 2], picks: [1, 1, 2, 0, 1, 2] },
  { name: 'ties share evenly', weights: [1, 1, 1], active: [0, 0, 0], picks: [0, 1, 2, 0, 1, 2] },
  { name: 'weights scale the share', weights: [3, 1], active: [0, 0], picks: [0, 1, 0, 0, 0, 1, 0, 0] },
];

for (const { name, weights, active, picks } of LEAST_CONN_CASES) {
  test(`least-conn: ${name}`, (t) => {
    const state = table(weights.length);
    weights.forEach((w, slot) => state.setWeight(slot, w));
    active.forEach((count, slot) => {
      for (let i = 0; i < count; i++) state.acquire(slot, 0);
    });
    const picker = PICKERS['least-conn']({ table: state, members: members(weights.length), poolSlot: 0, worker: 0 });
    t.deepEqual(Array.from({ length: picks.length }, () => picker.pick()), picks);
  });
}

test('least-conn: a released slot is picked next; down backends are never picked', (t) => {
  const state = table(3);
  const picker = PICKERS['least-conn']({ table: state, members: members(3), poolSlot: 0, worker: 0 });
  for (let i = 0; i < 9; i++) picker.pick();
  state.release(2, 0);
  t.is(picker.pick(), 2);
  state.setState(0, BACKEND_DOWN);
  for (let i = 0; i < 10; i++) t.not(picker.pick(), 0);
});

test('reconcileWorker subtracts exactly the dead worker share', (t) => {
  const state = table(2, 3);
  for (let i = 0; i < 5; i++) state.acquire(0, 0);
  for (let i = 0; i < 7; i++) state.acquire(0, 1);
  for (let i = 0; i < 2; i++) state.acquire(1, 1);
  for (let i = 0; i < 4; i++) state.acquire(1, 2);
  t.is(state.reconcileWorker(1), 9);
  t.deepEqual([state.active(0), state.active(1)], [5, 4]);
  t.is(state.reconcileWorker(1), 0);
  t.is(state.activeByWorker(0, 1), 0);
});

test('the layout refuses a buffer of another version', (t) => {
  const state = table(2);
  new Int32Array(state.buffer)[0] = 999;
  t.throws(() => StateTable.attach(state.buffer), { message: /layout 999 is not 1/ });
});

// Four threads take 2500 sessions each on 10 backends at once. Counts only grow here, so a pick
// whose compareExchange succeeds took a backend that was least loaded at that instant: the totals
// end perfectly level. A plain load-then-add would let two threads both take the same minimum.
test('least-conn stays exact and level under 4 threads picking at once', async (t) => {
  const threads = 4;
  const perThread = 2500;
  const backends = 10;
  const state = table(backends, threads);
  const dist = new URL('../dist/index.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(dist)}).then(({ StateTable, PICKERS }) => {
      const table = StateTable.attach(workerData.buffer);
      const members = Array.from({ length: ${backends} }, (_, slot) => ({ slot }));
      const picker = PICKERS['least-conn']({ table, members, poolSlot: 0, worker: workerData.worker });
      Atomics.wait(new Int32Array(workerData.gate), 0, 0);
      let failed = 0;
      for (let i = 0; i < ${perThread}; i++) if (picker.pick() < 0) failed++;
      parentPort.postMessage(failed);
    });`;
  const gate = new SharedArrayBuffer(4);
  const workers = Array.from({ length: threads }, (_, worker) => new Worker(code, { eval: true, workerData: { buffer: state.buffer, worker, gate } }));
  await new Promise((resolve) => setTimeout(resolve, 300));
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  const failedPicks = await Promise.all(workers.map((w) => new Promise<number>((resolve, reject) => w.once('message', resolve).once('error', reject))));
  await Promise.all(workers.map((w) => w.terminate()));
  const counts = Array.from({ length: backends }, (_, slot) => state.active(slot));
  t.deepEqual(counts, Array(backends).fill((threads * perThread) / backends));
  t.deepEqual(failedPicks, Array(threads).fill(0));
  let byWorkerTotal = 0;
  for (let w = 0; w < threads; w++) for (let s = 0; s < backends; s++) byWorkerTotal += state.activeByWorker(s, w);
  t.is(byWorkerTotal, threads * perThread);
});
