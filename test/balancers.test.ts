// Pickers and the state table, without sockets: exact pick sequences, ratios over many picks,
// an injected clock for slow start and latency, hashing properties, and exactness across threads.

import { Worker } from 'node:worker_threads';
import test from 'ava';
import { ALL_FULL, BACKEND_DOWN, BACKEND_UP, NO_BACKEND, PICKERS, StateTable, type Picker } from '../dist/src/index.js';
import { hash32 } from '../dist/src/core/balancers/consistentHash.js';
import { recordLatency } from '../dist/src/core/balancers/latency.js';
import { openGate } from './helpers.js';
import { smoothSequence } from '../dist/src/core/balancers/weightedRoundRobin.js';
import type { Algorithm, PoolConfig } from '../dist/src/config/schema.js';

interface TestPool {
  table: StateTable;
  picker(worker?: number): Picker;
  pick(times: number, key?: string): number[];
}

/** A table with one pool of backends `b0…bN` (slots 0…N-1) and pickers built over it. */
function makePool(algorithm: Algorithm, weights: number[], options: Partial<PoolConfig> & { workers?: number; clock?: () => number; random?: () => number } = {}): TestPool {
  const table = StateTable.create({ backends: Math.max(weights.length, 1) + 8, workers: options.workers ?? 1, pools: 4 });
  const members = weights.map((_, slot) => ({ slot, id: `p/b${slot}` }));
  weights.forEach((weight, slot) => {
    table.bindBackend(slot, 0, slot);
    table.setWeight(slot, weight);
  });
  const pool: PoolConfig = { name: 'p', algorithm, backends: [], decay: 10_000, slowStart: 0, queue: { size: 0, timeout: 1000 }, ...options };
  const picker = (worker = 0) => PICKERS[algorithm]({ table, members, poolSlot: 0, worker, pool, clock: options.clock, random: options.random });
  const main = picker();
  return { table, picker, pick: (times, key) => Array.from({ length: times }, () => main.pick(key)) };
}

function tally(picks: number[], backends: number): number[] {
  const counts = Array(backends).fill(0);
  for (const slot of picks) counts[slot]++;
  return counts;
}

/** A deterministic random source (mulberry32), so ratio tests do not flake. */
function seeded(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('round-robin: exact sequence, skipping a backend that is down; none up gives NO_BACKEND', (t) => {
  const pool = makePool('round-robin', [1, 1, 1]);
  t.deepEqual(pool.pick(6), [0, 1, 2, 0, 1, 2]);
  pool.table.setState(1, BACKEND_DOWN);
  t.deepEqual(pool.pick(4), [0, 2, 0, 2]);
  for (let slot = 0; slot < 3; slot++) pool.table.setState(slot, BACKEND_DOWN);
  t.is(pool.picker().pick(), NO_BACKEND);
});

test('round-robin: two workers share one rotation', (t) => {
  const pool = makePool('round-robin', [1, 1, 1], { workers: 2 });
  const first = pool.picker(0);
  const second = pool.picker(1);
  t.deepEqual([first.pick(), second.pick(), first.pick(), second.pick(), second.pick(), first.pick()], [0, 1, 2, 0, 1, 2]);
  t.is(pool.table.activeByWorker(0, 0) + pool.table.activeByWorker(0, 1), 2);
});

const SMOOTH_CASES: [number[], number[]][] = [
  [[5, 1, 1], [0, 0, 1, 0, 2, 0, 0]],
  [[2, 1], [0, 1, 0]],
  [[1, 1, 1], [0, 1, 2]],
  [[4, 2], [0, 1, 0]],
];
for (const [weights, sequence] of SMOOTH_CASES) {
  test(`weighted-round-robin: smooth sequence for weights ${weights.join(',')}`, (t) => {
    t.deepEqual(smoothSequence(weights), sequence);
    const pool = makePool('weighted-round-robin', weights);
    t.deepEqual(pool.pick(sequence.length * 2), [...sequence, ...sequence]);
  });
}

test('weighted-round-robin: shared across workers, rebuilt when a weight changes', (t) => {
  const pool = makePool('weighted-round-robin', [3, 1], { workers: 2 });
  const a = pool.picker(0);
  const b = pool.picker(1);
  t.deepEqual([a.pick(), b.pick(), a.pick(), b.pick()], [0, 0, 1, 0]);
  pool.table.setWeight(1, 3);
  const after = [a.pick(), b.pick(), a.pick(), b.pick()];
  t.deepEqual(tally(after, 2), [2, 2]);
});

const LEAST_CONN_CASES: { name: string; weights: number[]; active: number[]; picks: number[] }[] = [
  { name: 'fills the emptiest first', weights: [1, 1, 1], active: [3, 1, 2], picks: [1, 1, 2, 0, 1, 2] },
  { name: 'ties share evenly', weights: [1, 1, 1], active: [0, 0, 0], picks: [0, 1, 2, 0, 1, 2] },
  { name: 'weights scale the share', weights: [3, 1], active: [0, 0], picks: [0, 1, 0, 0, 0, 1, 0, 0] },
];
for (const { name, weights, active, picks } of LEAST_CONN_CASES) {
  test(`least-conn: ${name}`, (t) => {
    const pool = makePool('least-conn', weights);
    active.forEach((count, slot) => {
      for (let i = 0; i < count; i++) pool.table.acquire(slot, 0);
    });
    t.deepEqual(pool.pick(picks.length), picks);
  });
}

test('least-conn: a released slot is picked next; down backends are never picked', (t) => {
  const pool = makePool('least-conn', [1, 1, 1]);
  pool.pick(9);
  pool.table.release(2, 0);
  t.deepEqual(pool.pick(1), [2]);
  pool.table.setState(0, BACKEND_DOWN);
  t.false(pool.pick(10).includes(0));
});

for (const algorithm of ['round-robin', 'weighted-round-robin', 'least-conn', 'random', 'p2c', 'least-time', 'hash'] as const) {
  test(`${algorithm}: max_conns is never exceeded; ALL_FULL when every backend is at its limit`, (t) => {
    const pool = makePool(algorithm, [1, 2, 1], { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 0 }, random: seeded(7) });
    [2, 3, 1].forEach((max, slot) => pool.table.setMaxConns(slot, max));
    const picks = pool.pick(6, 'room-1');
    t.deepEqual(tally(picks, 3), [2, 3, 1]);
    t.is(pool.picker().pick('room-1'), ALL_FULL);
    pool.table.release(1, 0);
    t.deepEqual(pool.pick(1, 'room-1'), [1]);
  });
}

test('random: picks in proportion to weight', (t) => {
  const pool = makePool('random', [1, 3, 6], { random: seeded(42) });
  const counts = tally(pool.pick(30_000), 3);
  const shares = counts.map((c) => c / 30_000);
  [0.1, 0.3, 0.6].forEach((expected, i) => t.true(Math.abs(shares[i] - expected) < 0.015, `backend ${i}: ${shares[i]}`));
});

test('p2c: keeps loads close under a stream of picks and random releases', (t) => {
  const random = seeded(3);
  const pool = makePool('p2c', [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], { random });
  const held: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    held.push(pool.picker().pick());
    if (held.length > 200) pool.table.release(held.splice(Math.floor(random() * held.length), 1)[0], 0);
  }
  const loads = Array.from({ length: 10 }, (_, slot) => pool.table.active(slot));
  t.is(loads.reduce((a, b) => a + b), 200);
  t.true(Math.max(...loads) - Math.min(...loads) <= 8, `loads ${loads}`);
});

test('p2c: a weighted backend takes its share', (t) => {
  const pool = makePool('p2c', [1, 4], { random: seeded(9) });
  pool.pick(500);
  const [light, heavy] = [pool.table.active(0), pool.table.active(1)];
  t.true(Math.abs(heavy / light - 4) < 0.3, `${heavy}/${light}`);
});

test('least-time: prefers the faster backend; peak-EWMA reacts at once to a slow sample and decays back', (t) => {
  let now = 1000;
  const pool = makePool('least-time', [1, 1], { clock: () => now, decay: 10_000 });
  recordLatency(pool.table, 0, 10_000, now, 10_000);
  recordLatency(pool.table, 1, 1_000, now, 10_000);
  // Backend 1 is 10× faster: it takes sessions until (active + 1) × 1 ms reaches 10 ms.
  t.deepEqual(pool.pick(9), [1, 1, 1, 1, 1, 1, 1, 1, 1]);
  t.true(pool.pick(3).includes(0));
  // A spike on backend 1 counts in full at once.
  recordLatency(pool.table, 1, 50_000, now, 10_000);
  t.is(pool.table.latency(1), 50_000);
  // Faster samples pull the estimate down with weight 1 - e^(-Δt/decay).
  now += 10_000;
  recordLatency(pool.table, 1, 1_000, now, 10_000);
  t.is(pool.table.latency(1), Math.round(50_000 * Math.exp(-1) + 1_000 * (1 - Math.exp(-1))));
});

test('least-time: a backend without samples is treated as average, neither starved nor flooded', (t) => {
  const now = 1000;
  const pool = makePool('least-time', [1, 1, 1], { clock: () => now });
  recordLatency(pool.table, 0, 2_000, now, 10_000);
  recordLatency(pool.table, 1, 4_000, now, 10_000);
  const counts = tally(pool.pick(30), 3);
  // Backend 2 counts as 3 ms (the average): between the 2 ms and the 4 ms one.
  t.true(counts[0] > counts[2] && counts[2] > counts[1], `counts ${counts}`);
  t.true(counts[2] > 0);
});

test('slow start: a backend that just joined ramps from a small share to its full share', (t) => {
  let now = 100_000;
  const pool = makePool('least-conn', [1, 1, 1], { slowStart: 30_000, clock: () => now });
  for (let slot = 0; slot < 2; slot++) for (let i = 0; i < 20; i++) pool.table.acquire(slot, 0);
  pool.table.startRamp(2, now);
  // Just joined: 5% of its weight, so one session is already worth 20 on the others' scale.
  const start = tally(pool.pick(10), 3);
  t.true(start[2] >= 1 && start[2] <= 2, `just joined: ${start}`);
  // Half way: it is filled to half the others' load; after the ramp: to an equal load.
  const loads = () => [0, 1, 2].map((slot) => pool.table.active(slot));
  now += 15_000;
  pool.pick(30);
  const half = loads();
  t.true(Math.abs(half[2] / half[0] - 0.5) < 0.1, `half-way loads ${half}`);
  now += 15_000;
  pool.pick(60);
  const full = loads();
  t.true(Math.max(...full) - Math.min(...full) <= 1, `after the ramp: ${full}`);
});

test('slow start in rotations: a ramping backend is passed over in proportion to its ramp', (t) => {
  let now = 50_000;
  const pool = makePool('round-robin', [1, 1], { slowStart: 10_000, clock: () => now, random: seeded(5) });
  pool.table.startRamp(1, now - 2_500);
  const counts = tally(pool.pick(4000), 2);
  t.true(counts[1] > 0 && counts[1] < counts[0] / 2, `counts ${counts}`);
  now += 10_000;
  const after = tally(pool.pick(1000), 2);
  t.deepEqual(after, [500, 500]);
});

test('hash: the same key always lands on the same backend; keys spread evenly', (t) => {
  const pool = makePool('hash', Array(5).fill(1), { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 0 } });
  const picker = pool.picker();
  const owner = new Map<string, number>();
  for (let i = 0; i < 5000; i++) {
    const key = `room-${i}`;
    const slot = picker.pick(key);
    owner.set(key, slot);
    pool.table.release(slot, 0);
  }
  for (const [key, slot] of [...owner].slice(0, 200)) {
    const again = picker.pick(key);
    t.is(again, slot);
    pool.table.release(again, 0);
  }
  const counts = tally([...owner.values()], 5);
  t.true(counts.every((c) => Math.abs(c - 1000) < 200), `counts ${counts}`);
});

test('weight shares: weights written as configured × percent pick exactly as the configured proportions, in every weighted picker', (t) => {
  const keys = Array.from({ length: 2000 }, (_, i) => `room-${i}`);
  const owners = (weights: number[]) => {
    const pool = makePool('hash', weights, { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 0 } });
    const picker = pool.picker();
    return keys.map((key) => {
      const slot = picker.pick(key);
      pool.table.release(slot, 0);
      return slot;
    });
  };
  // A full share (100 %) on weights 1, 1, 1 is the ring of 1, 1, 1: no key moves.
  t.deepEqual(owners([100, 100, 100]), owners([1, 1, 1]));
  // 25 % of weight 4 is weight 1 of 4: the same ring as 4 : 1.
  t.deepEqual(owners([400, 100]), owners([4, 1]));
  t.deepEqual(makePool('weighted-round-robin', [100, 25]).pick(10), makePool('weighted-round-robin', [4, 1]).pick(10));
  const random = tally(makePool('random', [100, 25], { random: seeded(7) }).pick(5000), 2);
  t.true(Math.abs(random[1] / 5000 - 0.2) < 0.03, `random ${random}`);
  const p2c = makePool('p2c', [100, 25], { random: seeded(11) });
  const held = p2c.pick(500);
  const p2cShare = tally(held, 2);
  t.true(Math.abs(p2cShare[1] / 500 - 0.2) < 0.05, `p2c ${p2cShare}`);
});

test('hash: adding or removing one of N backends moves about 1/N of keys and no others', (t) => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
  const owners = (pool: TestPool) => {
    const picker = pool.picker();
    return keys.map((key) => {
      const slot = picker.pick(key);
      pool.table.release(slot, 0);
      return slot;
    });
  };
  const hash = { key: { from: 'header' as const, name: 'x-user' }, balanceFactor: 0 };
  const nine = makePool('hash', Array(9).fill(1), { hash });
  const ten = makePool('hash', Array(10).fill(1), { hash });
  const before = owners(nine);
  const after = owners(ten);
  let moved = 0;
  for (let i = 0; i < keys.length; i++) {
    if (before[i] !== after[i]) {
      moved++;
      t.is(after[i], 9, 'a moved key goes only to the new backend');
    }
  }
  t.true(Math.abs(moved / keys.length - 0.1) < 0.03, `moved ${moved}`);
  // Taking one backend down moves only its keys.
  ten.table.setState(3, BACKEND_DOWN);
  const without = owners(ten);
  for (let i = 0; i < keys.length; i++) if (after[i] !== 3) t.is(without[i], after[i]);
});

test('hash with bounded loads: a hot key spills to the next backends, never above the bound', (t) => {
  const pool = makePool('hash', Array(4).fill(1), { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 1.25 } });
  const picks = pool.pick(100, 'hot-room');
  const counts = tally(picks, 4);
  t.true(Math.max(...counts) <= Math.ceil((1.25 * 100) / 4), `counts ${counts}`);
  t.is(counts.reduce((a, b) => a + b), 100);
  // Without the bound, every session of the room lands on one backend.
  const unbounded = makePool('hash', Array(4).fill(1), { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 0 } });
  t.is(Math.max(...tally(unbounded.pick(100, 'hot-room'), 4)), 100);
});

test('hash: a missing key falls back to least-conn', (t) => {
  const pool = makePool('hash', [1, 1, 1], { hash: { key: { from: 'cookie', name: 'sid' }, balanceFactor: 0 } });
  t.deepEqual(tally(pool.pick(9, undefined), 3), [3, 3, 3]);
});

// Retries: `pick(key, avoid)` keeps the pool's own rule over the backends not yet tried.
test('retry: a hash pool goes to the key’s next ring member, as if the tried one were down', (t) => {
  const ring = makePool('hash', [1, 1, 1, 1, 1], { hash: { key: { from: 'header', name: 'x-room' }, balanceFactor: 0 } });
  const without = makePool('hash', [1, 1, 1, 1, 1], { hash: { key: { from: 'header', name: 'x-room' }, balanceFactor: 0 } });
  const picker = ring.picker();
  for (let i = 0; i < 200; i++) {
    const key = `room-${i}`;
    const first = picker.pick(key);
    const retry = picker.pick(key, [first]);
    ring.table.release(first, 0);
    ring.table.release(retry, 0);
    without.table.setState(first, BACKEND_DOWN);
    const next = without.picker().pick(key);
    without.table.release(next, 0);
    without.table.setState(first, BACKEND_UP);
    t.is(retry, next, key);
    t.not(retry, first);
  }
});

test('retry: a weighted pool keeps its weights over the backends not tried', (t) => {
  for (const algorithm of ['weighted-round-robin', 'random', 'least-conn'] as const) {
    const pool = makePool(algorithm, [1, 3, 1], { random: seeded(7) });
    const picker = pool.picker();
    const picks: number[] = [];
    // Backend 0 failed: every retry avoids it. Least-conn keeps the sessions; the others release.
    for (let i = 0; i < 400; i++) {
      const slot = picker.pick(undefined, [0]);
      picks.push(slot);
      if (algorithm !== 'least-conn') pool.table.release(slot, 0);
    }
    const counts = tally(picks, 3);
    t.is(counts[0], 0, `${algorithm}: the tried backend is never picked again`);
    if (algorithm === 'random') t.true(Math.abs(counts[1] / counts[2] - 3) < 0.6, `${algorithm}: ${counts}`);
    else t.deepEqual(counts, [0, 300, 100], algorithm);
  }
});

test('retry: every picker avoids the tried backends and says when none is left', (t) => {
  for (const algorithm of Object.keys(PICKERS) as Algorithm[]) {
    const pool = makePool(algorithm, [1, 1, 1], { random: seeded(3), hash: { key: { from: 'header', name: 'x' }, balanceFactor: 0 } });
    const picker = pool.picker();
    const seen = new Set<number>();
    for (let i = 0; i < 30; i++) {
      const slot = picker.pick('k', [0, 1]);
      seen.add(slot);
      pool.table.release(slot, 0);
    }
    t.deepEqual([...seen], [2], algorithm);
    t.true(picker.pick('k', [0, 1, 2]) < 0, `${algorithm}: nothing left to try`);
  }
});

test('hash32 spreads sequential keys', (t) => {
  const buckets = Array(16).fill(0);
  for (let i = 0; i < 16_000; i++) buckets[hash32(`k${i}`) >>> 28]++;
  t.true(buckets.every((b) => Math.abs(b - 1000) < 150), `buckets ${buckets}`);
});

test('reconcileWorker subtracts exactly the dead worker share, per backend and per pool', (t) => {
  const pool = makePool('least-conn', [1, 1], { workers: 3 });
  const { table } = pool;
  for (let i = 0; i < 5; i++) table.acquire(0, 0);
  for (let i = 0; i < 7; i++) table.acquire(0, 1);
  for (let i = 0; i < 2; i++) table.acquire(1, 1);
  for (let i = 0; i < 4; i++) table.acquire(1, 2);
  t.is(table.reconcileWorker(1), 9);
  t.deepEqual([table.active(0), table.active(1), table.poolActive(0)], [5, 4, 9]);
  t.is(table.reconcileWorker(1), 0);
  t.is(table.activeByWorker(0, 1), 0);
});

test('the layout refuses a buffer of another version', (t) => {
  const { table } = makePool('least-conn', [1]);
  new Int32Array(table.buffer)[0] = 999;
  t.throws(() => StateTable.attach(table.buffer), { message: /layout 999 is not 4/ });
});

/** Runs `perThread` picks on each of `threads` threads at once against one shared table. */
async function contend(table: StateTable, algorithm: Algorithm, backends: number, threads: number, perThread: number, pool: Partial<PoolConfig>): Promise<number[]> {
  const dist = new URL('../dist/src/index.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(dist)}).then(({ StateTable, PICKERS }) => {
      const { buffer, worker, gate, algorithm, backends, perThread, pool } = workerData;
      const table = StateTable.attach(buffer);
      const members = Array.from({ length: backends }, (_, slot) => ({ slot, id: 'p/b' + slot }));
      const picker = PICKERS[algorithm]({ table, members, poolSlot: 0, worker, pool });
      parentPort.postMessage('ready');
      Atomics.wait(new Int32Array(gate), 0, 0);
      let failed = 0;
      for (let i = 0; i < perThread; i++) if (picker.pick('hot') < 0) failed++;
      parentPort.postMessage(failed);
    });`;
  const gate = new SharedArrayBuffer(4);
  const full: PoolConfig = { name: 'p', algorithm, backends: [], decay: 10_000, slowStart: 0, queue: { size: 0, timeout: 1000 }, ...pool };
  const workers = Array.from({ length: threads }, (_, worker) => new Worker(code, { eval: true, workerData: { buffer: table.buffer, worker, gate, algorithm, backends, perThread, pool: full } }));
  const failed = await openGate(gate, workers);
  await Promise.all(workers.map((w) => w.terminate()));
  return failed;
}

// Four threads take 2500 sessions each on 10 backends at once. Counts only grow here, so a pick
// whose compareExchange succeeds took a backend that was least loaded at that instant: the totals
// end perfectly level. A plain load-then-add would let two threads both take the same minimum.
test('least-conn stays exact and level under 4 threads picking at once', async (t) => {
  const { table } = makePool('least-conn', Array(10).fill(1), { workers: 4 });
  const failed = await contend(table, 'least-conn', 10, 4, 2500, {});
  t.deepEqual(failed, [0, 0, 0, 0]);
  t.deepEqual(Array.from({ length: 10 }, (_, slot) => table.active(slot)), Array(10).fill(1000));
  let byWorker = 0;
  for (let w = 0; w < 4; w++) for (let s = 0; s < 10; s++) byWorker += table.activeByWorker(s, w);
  t.is(byWorker, 10_000);
  t.is(table.poolActive(0), 10_000);
});

test('hash with bounded loads is never exceeded under 4 threads picking the same hot key', async (t) => {
  const { table } = makePool('hash', Array(8).fill(1), { workers: 4 });
  const failed = await contend(table, 'hash', 8, 4, 1000, { hash: { key: { from: 'query', name: 'room' }, balanceFactor: 1.25 } });
  t.deepEqual(failed, [0, 0, 0, 0]);
  const loads = Array.from({ length: 8 }, (_, slot) => table.active(slot));
  t.is(loads.reduce((a, b) => a + b), 4000);
  t.true(Math.max(...loads) <= Math.ceil((1.25 * 4000) / 8), `loads ${loads}`);
});

test('max_conns is never exceeded under 4 threads', async (t) => {
  const { table } = makePool('round-robin', Array(4).fill(1), { workers: 4 });
  for (let slot = 0; slot < 4; slot++) table.setMaxConns(slot, 100);
  const failed = await contend(table, 'round-robin', 4, 4, 200, {});
  t.is(failed.reduce((a, b) => a + b), 400);
  t.deepEqual(Array.from({ length: 4 }, (_, slot) => table.active(slot)), [100, 100, 100, 100]);
});

test('least-conn over 100 backends (group floors): level, a released slot is picked next, down and full members skipped', (t) => {
  const pool = makePool('least-conn', Array(100).fill(1));
  const loads = () => Array.from({ length: 100 }, (_, slot) => pool.table.active(slot));
  pool.pick(1000);
  t.deepEqual(loads(), Array(100).fill(10));
  pool.table.release(73, 0);
  t.deepEqual(pool.pick(1), [73]);
  pool.table.setState(5, BACKEND_DOWN);
  pool.table.setMaxConns(6, 10);
  const next = pool.pick(98);
  t.false(next.includes(5) || next.includes(6));
  t.is(new Set(next).size, 98);
  t.true(loads().every((n, slot) => n === (slot === 5 || slot === 6 ? 10 : 11)));
  // Releases anywhere lower the floors: the emptied backends are found at once.
  for (let i = 0; i < 3; i++) pool.table.release(90, 0);
  t.deepEqual(pool.pick(3), [90, 90, 90]);
});

test('least-conn over 300 backends stays exact and level under 4 threads', async (t) => {
  const { table } = makePool('least-conn', Array(300).fill(1), { workers: 4 });
  const failed = await contend(table, 'least-conn', 300, 4, 3000, {});
  t.deepEqual(failed, [0, 0, 0, 0]);
  t.deepEqual(Array.from({ length: 300 }, (_, slot) => table.active(slot)), Array(300).fill(40));
});
