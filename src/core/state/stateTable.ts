// The shared-memory state table: per-backend counters every thread reads and updates with Atomics.
//
// Layout contract (LAYOUT_VERSION 3). One SharedArrayBuffer holds an Int32 region followed by a
// BigInt64 region. Every offset below is an index into the typed array named beside it. B is the
// backend capacity, P the pool capacity, W the worker capacity. Times are milliseconds since the
// table's epoch, truncated to Int32 and compared with wrap-safe subtraction.
//
// Int32 region (`i32`):
//   HEADER_VERSION          LAYOUT_VERSION                 primary writes once at creation
//   HEADER_BACKENDS/WORKERS/POOLS  capacities              primary writes once
//   HEADER_FLEET            FLEET_OFF / UP / DEGRADED      primary: store; workers: load (whether
//                                                          session picks ask the fleet)
//   active[b]               open sessions + in-flight      workers: compareExchange / add / sub;
//                           requests on backend b          primary: sub when reconciling a dead worker
//   weight[b]               configured weight × share %    primary: store; workers: load
//   state[b]                BACKEND_UP / DOWN / ...        primary: store; workers: load
//   maxConns[b]             0 = unlimited                  primary: store; workers: load
//   rampFrom[b]             slow-start origin, 0 = none    primary: store; workers: load
//   poolOf[b]               pool slot of backend b         primary: store once; all: load
//   memberOf[b]             index of b in its pool's list  primary: store once; all: load
//   failStreak[b]           consecutive upstream failures  workers: add on a failure, store 0 on a
//   fiveXxStreak[b]         consecutive 5xx responses      success; primary: load (outlier ejection)
//   ewma[b]                 peak-EWMA latency, µs          workers: compareExchange
//   ewmaAt[b]               time of the last sample        workers: store (after their CAS won)
//   remote[b]               sessions + requests other      primary: store every fleet sync;
//                           fleet instances hold on b      pickers: load (load = active + remote)
//   rrNext[p]               rotation position of pool p    workers: add
//   poolVersion[p]          bumped on any weight, state,   primary: add; workers: load and rebuild
//                           max_conns or member change     their cached view when it moved
//   poolActive[p]           sum of active over pool p      same writers as active[b]
//   queued[p]               requests waiting in pool p     workers: add / sub
//   poolFloor[p]            a lower bound of active over   as groupFloor
//   poolRemote[p]           sum of remote over pool p      primary: store with remote[b]
//                           every member of pool p
//   groupFloor[p * G + g]   a lower bound of active over   release (any thread): compareExchange down
//                           members 32g…32g+31 of pool p   to the released count; least-conn pickers:
//                           (G = ceil(B / 32) per pool)    compareExchange up to a count they scanned,
//                                                          store 0 (always a true bound) on a change
//   byWorker[w * B + b]     worker w's share of active[b]  worker w: add / sub; primary: exchange(0)
//                                                          after worker w died
// BigInt64 region (`i64`), all counters only grow (workers: add; primary: load for metrics):
//   epoch                   Date.now() at creation         primary writes once
//   requests[b]             HTTP requests + WS sessions    workers: add
//   failures[b]             upstream failures              workers: add
//   webSockets[b]           WebSocket sessions opened
//   status[c * B + b]       responses of status class c+1 (1xx … 5xx), including fairway's own
//   latency[k * B + b]      upstream durations in bucket k of LATENCY_BUCKETS (not cumulative)
//   latencySum[b]           sum of upstream durations, µs
//   retries[b]              requests retried away from b   workers: add
//   ejections[b]            outlier ejections of b         primary: add
//   sheds[b]                sessions closed by rebalancing primary: add (workers close them)
//   sessions[k * B + b]     WebSocket and TCP sessions that ended on b after a time in bucket k of
//                           SESSION_BUCKETS (not cumulative)    workers: add
//   sessionSum[b]           sum of ended sessions' durations, ms  workers: add
//   faults[f]               answers with x-fairway-error code FAULT_CODES[f], instance-wide
//                                                          workers: add
//   workerRequests[w]       requests and upgrades worker w read   worker w: store its own count
//                           (every 250 ms: no atomic per request); a replacement goes on from it

import { FAULTS } from '../errors.js';

export const LAYOUT_VERSION = 4;

export const HEADER_VERSION = 0;
export const HEADER_BACKENDS = 1;
export const HEADER_WORKERS = 2;
export const HEADER_POOLS = 3;
export const HEADER_FLEET = 4;
const HEADER_SIZE = 8;

export const BACKEND_UP = 0;
export const BACKEND_DOWN = 1;
export const BACKEND_DRAINING = 2;
export const BACKEND_EJECTED = 3;
export const BACKEND_REMOVED = 4;

/** HEADER_FLEET: no fleet configured; Redis answering; Redis lost (picks are local). */
export const FLEET_OFF = 0;
export const FLEET_UP = 1;
export const FLEET_DEGRADED = 2;

const BACKEND_FIELDS = 12;
/** Upper bounds (seconds) of the upstream-duration histogram; one more bucket holds the rest. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Upper bounds (seconds) of the session-duration histogram; one more bucket holds the rest. */
export const SESSION_BUCKETS = [1, 10, 60, 300, 1800, 3600, 21600, 86400];
/** The x-fairway-error codes counted in faults[f], f their index here. */
export const FAULT_CODES: readonly string[] = Object.values(FAULTS).map((fault) => fault.code);
const FAULT_INDEX = new Map(FAULT_CODES.map((code, index) => [code, index]));
const STATUS_CLASSES = 5;
const I64_PER_BACKEND = 3 + STATUS_CLASSES + LATENCY_BUCKETS.length + 1 + 1 + 3 + SESSION_BUCKETS.length + 1 + 1;

/** Int64 slots: the epoch, the per-backend counters, the fault counters, the per-worker request counters. */
function int64Count(capacity: TableCapacity): number {
  return 1 + I64_PER_BACKEND * capacity.backends + FAULT_CODES.length + capacity.workers;
}
const POOL_FIELDS = 6;
/** Members per least-conn group: a pick scans the group floors, then one group. */
export const GROUP_SIZE = 32;

function groupsPerPool(backends: number): number {
  return Math.ceil(backends / GROUP_SIZE);
}

export interface TableCapacity {
  backends: number;
  workers: number;
  pools: number;
}

function int32Count(capacity: TableCapacity): number {
  return (
    HEADER_SIZE +
    BACKEND_FIELDS * capacity.backends +
    POOL_FIELDS * capacity.pools +
    capacity.pools * groupsPerPool(capacity.backends) +
    capacity.workers * capacity.backends
  );
}

export class StateTable {
  readonly buffer: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly backends: number;
  readonly workers: number;
  readonly pools: number;
  readonly epoch: number;
  readonly activeBase: number;
  readonly weightBase: number;
  readonly stateBase: number;
  readonly maxConnsBase: number;
  readonly rampBase: number;
  readonly poolOfBase: number;
  readonly memberOfBase: number;
  readonly failStreakBase: number;
  readonly fiveXxStreakBase: number;
  readonly ewmaBase: number;
  readonly ewmaAtBase: number;
  readonly remoteBase: number;
  readonly rrBase: number;
  readonly poolVersionBase: number;
  readonly poolActiveBase: number;
  readonly queuedBase: number;
  readonly poolFloorBase: number;
  readonly poolRemoteBase: number;
  readonly groupFloorBase: number;
  readonly groupsPerPool: number;
  readonly byWorkerBase: number;
  readonly requestsBase: number;
  readonly failuresBase: number;
  readonly webSocketsBase: number;
  readonly statusBase: number;
  readonly latencyBase: number;
  readonly latencySumBase: number;
  readonly retriesBase: number;
  readonly ejectionsBase: number;
  readonly shedsBase: number;
  readonly sessionsBase: number;
  readonly sessionSumBase: number;
  readonly faultsBase: number;
  readonly workerRequestsBase: number;

  private constructor(buffer: SharedArrayBuffer, capacity: TableCapacity) {
    this.buffer = buffer;
    this.backends = capacity.backends;
    this.workers = capacity.workers;
    this.pools = capacity.pools;
    const B = capacity.backends;
    const P = capacity.pools;
    this.activeBase = HEADER_SIZE;
    this.weightBase = this.activeBase + B;
    this.stateBase = this.weightBase + B;
    this.maxConnsBase = this.stateBase + B;
    this.rampBase = this.maxConnsBase + B;
    this.poolOfBase = this.rampBase + B;
    this.memberOfBase = this.poolOfBase + B;
    this.failStreakBase = this.memberOfBase + B;
    this.fiveXxStreakBase = this.failStreakBase + B;
    this.ewmaBase = this.fiveXxStreakBase + B;
    this.ewmaAtBase = this.ewmaBase + B;
    this.remoteBase = this.ewmaAtBase + B;
    this.rrBase = this.remoteBase + B;
    this.poolVersionBase = this.rrBase + P;
    this.poolActiveBase = this.poolVersionBase + P;
    this.queuedBase = this.poolActiveBase + P;
    this.poolFloorBase = this.queuedBase + P;
    this.poolRemoteBase = this.poolFloorBase + P;
    this.groupFloorBase = this.poolRemoteBase + P;
    this.groupsPerPool = groupsPerPool(B);
    this.byWorkerBase = this.groupFloorBase + P * this.groupsPerPool;
    const count = int32Count(capacity);
    this.i32 = new Int32Array(buffer, 0, count);
    this.i64 = new BigInt64Array(buffer, Math.ceil((count * 4) / 8) * 8, int64Count(capacity));
    this.requestsBase = 1;
    this.failuresBase = this.requestsBase + B;
    this.webSocketsBase = this.failuresBase + B;
    this.statusBase = this.webSocketsBase + B;
    this.latencyBase = this.statusBase + STATUS_CLASSES * B;
    this.latencySumBase = this.latencyBase + (LATENCY_BUCKETS.length + 1) * B;
    this.retriesBase = this.latencySumBase + B;
    this.ejectionsBase = this.retriesBase + B;
    this.shedsBase = this.ejectionsBase + B;
    this.sessionsBase = this.shedsBase + B;
    this.sessionSumBase = this.sessionsBase + (SESSION_BUCKETS.length + 1) * B;
    this.faultsBase = this.sessionSumBase + B;
    this.workerRequestsBase = this.faultsBase + FAULT_CODES.length;
    this.epoch = Number(this.i64[0]);
  }

  static byteLength(capacity: TableCapacity): number {
    return Math.ceil((int32Count(capacity) * 4) / 8) * 8 + int64Count(capacity) * 8;
  }

  /** Lays out a new table (primary thread). */
  static create(capacity: TableCapacity, epoch = Date.now()): StateTable {
    const buffer = new SharedArrayBuffer(StateTable.byteLength(capacity));
    const header = new Int32Array(buffer, 0, HEADER_SIZE);
    header[HEADER_VERSION] = LAYOUT_VERSION;
    header[HEADER_BACKENDS] = capacity.backends;
    header[HEADER_WORKERS] = capacity.workers;
    header[HEADER_POOLS] = capacity.pools;
    new BigInt64Array(buffer, Math.ceil((int32Count(capacity) * 4) / 8) * 8, 1)[0] = BigInt(epoch);
    return new StateTable(buffer, capacity);
  }

  /** Opens a table laid out by another thread; refuses a layout this code does not know. */
  static attach(buffer: SharedArrayBuffer): StateTable {
    const header = new Int32Array(buffer, 0, HEADER_SIZE);
    if (header[HEADER_VERSION] !== LAYOUT_VERSION) {
      throw new Error(`state table layout ${header[HEADER_VERSION]} is not ${LAYOUT_VERSION}`);
    }
    return new StateTable(buffer, {
      backends: header[HEADER_BACKENDS],
      workers: header[HEADER_WORKERS],
      pools: header[HEADER_POOLS],
    });
  }

  /** Milliseconds since the table's epoch, as stored in time fields. */
  now(): number {
    return (Date.now() - this.epoch) | 0;
  }

  active(slot: number): number {
    return Atomics.load(this.i32, this.activeBase + slot);
  }

  weight(slot: number): number {
    return Atomics.load(this.i32, this.weightBase + slot);
  }

  state(slot: number): number {
    return Atomics.load(this.i32, this.stateBase + slot);
  }

  maxConns(slot: number): number {
    return Atomics.load(this.i32, this.maxConnsBase + slot);
  }

  /** When slow start began for `slot` (table time), or 0 when it is not ramping. */
  rampFrom(slot: number): number {
    return Atomics.load(this.i32, this.rampBase + slot);
  }

  /** What the other instances of the fleet hold on `slot` (0 without a fleet). */
  remote(slot: number): number {
    return Atomics.load(this.i32, this.remoteBase + slot);
  }

  poolRemote(pool: number): number {
    return Atomics.load(this.i32, this.poolRemoteBase + pool);
  }

  /** Writes the fleet's counts for `slot` (primary, every sync); the pool sum follows. */
  setRemote(slot: number, count: number): void {
    const before = Atomics.exchange(this.i32, this.remoteBase + slot, count);
    if (before !== count) Atomics.add(this.i32, this.poolRemoteBase + this.poolOf(slot), count - before);
  }

  /** FLEET_OFF, FLEET_UP or FLEET_DEGRADED. */
  fleetState(): number {
    return Atomics.load(this.i32, HEADER_FLEET);
  }

  setFleetState(state: number): void {
    Atomics.store(this.i32, HEADER_FLEET, state);
  }

  poolOf(slot: number): number {
    return Atomics.load(this.i32, this.poolOfBase + slot);
  }

  poolVersion(pool: number): number {
    return Atomics.load(this.i32, this.poolVersionBase + pool);
  }

  poolActive(pool: number): number {
    return Atomics.load(this.i32, this.poolActiveBase + pool);
  }

  memberOf(slot: number): number {
    return Atomics.load(this.i32, this.memberOfBase + slot);
  }

  /** Places a backend in a pool as its `member`-th member (primary, once per slot). */
  bindBackend(slot: number, pool: number, member: number): void {
    Atomics.store(this.i32, this.poolOfBase + slot, pool);
    Atomics.store(this.i32, this.memberOfBase + slot, member);
    this.lowerGroupFloor(slot, this.active(slot));
    this.bumpPool(pool);
  }

  /** Index in `i32` of the floor of the group holding member `member` of pool `pool`. */
  groupFloorIndex(pool: number, member: number): number {
    return this.groupFloorBase + pool * this.groupsPerPool + ((member / GROUP_SIZE) | 0);
  }

  /** Keeps the group and pool floors of `slot` at or below `count` (after a count went down). */
  private lowerGroupFloor(slot: number, count: number): void {
    const pool = this.i32[this.poolOfBase + slot];
    this.lowerFloor(this.groupFloorIndex(pool, this.i32[this.memberOfBase + slot]), count);
    this.lowerFloor(this.poolFloorBase + pool, count);
  }

  private lowerFloor(index: number, count: number): void {
    // A plain read settles the common case (the floor is already low enough); a stale read only
    // sends us to the compareExchange loop, which decides on the current value.
    if (count >= this.i32[index]) return;
    for (;;) {
      const floor = Atomics.load(this.i32, index);
      if (count >= floor || Atomics.compareExchange(this.i32, index, floor, count) === floor) return;
    }
  }

  setWeight(slot: number, weight: number): void {
    Atomics.store(this.i32, this.weightBase + slot, weight);
    this.bumpPool(this.poolOf(slot));
  }

  setState(slot: number, state: number): void {
    Atomics.store(this.i32, this.stateBase + slot, state);
    this.bumpPool(this.poolOf(slot));
  }

  setMaxConns(slot: number, max: number): void {
    Atomics.store(this.i32, this.maxConnsBase + slot, max);
    this.bumpPool(this.poolOf(slot));
  }

  /** Starts slow start for `slot` now (table time); 0 is reserved for "not ramping". */
  startRamp(slot: number, at = this.now()): void {
    Atomics.store(this.i32, this.rampBase + slot, at === 0 ? 1 : at);
  }

  private bumpPool(pool: number): void {
    Atomics.add(this.i32, this.poolVersionBase + pool, 1);
  }

  /**
   * Takes one session on `slot` only if its count is still `seen`; false when another thread
   * changed it first, so the caller re-reads and picks again instead of overshooting.
   */
  tryAcquire(slot: number, seen: number, worker: number): boolean {
    if (Atomics.compareExchange(this.i32, this.activeBase + slot, seen, seen + 1) !== seen) return false;
    Atomics.add(this.i32, this.poolActiveBase + this.i32[this.poolOfBase + slot], 1);
    Atomics.add(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
    return true;
  }

  /** Takes one session on `slot` unless it is at its max_conns (local + remote); false when full. */
  acquireIfRoom(slot: number, worker: number): boolean {
    const max = this.maxConns(slot);
    for (;;) {
      const seen = this.active(slot);
      if (max > 0 && seen + this.remote(slot) >= max) return false;
      if (this.tryAcquire(slot, seen, worker)) return true;
    }
  }

  /** Takes one session on `slot` unconditionally. */
  acquire(slot: number, worker: number): void {
    Atomics.add(this.i32, this.activeBase + slot, 1);
    Atomics.add(this.i32, this.poolActiveBase + this.i32[this.poolOfBase + slot], 1);
    Atomics.add(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
  }

  release(slot: number, worker: number): void {
    Atomics.sub(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
    Atomics.sub(this.i32, this.poolActiveBase + this.i32[this.poolOfBase + slot], 1);
    this.lowerGroupFloor(slot, Atomics.sub(this.i32, this.activeBase + slot, 1) - 1);
  }

  /** The share of `slot`'s sessions held by worker `worker`. */
  activeByWorker(slot: number, worker: number): number {
    return Atomics.load(this.i32, this.byWorkerBase + worker * this.backends + slot);
  }

  /**
   * Subtracts a dead worker's sessions from every backend (primary thread, after the worker's
   * thread has exited, so its row no longer changes). Returns how many sessions were subtracted.
   */
  reconcileWorker(worker: number): number {
    let total = 0;
    const row = this.byWorkerBase + worker * this.backends;
    for (let slot = 0; slot < this.backends; slot++) {
      const held = Atomics.exchange(this.i32, row + slot, 0);
      if (held !== 0) {
        this.lowerGroupFloor(slot, Atomics.sub(this.i32, this.activeBase + slot, held) - held);
        Atomics.sub(this.i32, this.poolActiveBase + this.poolOf(slot), held);
        total += held;
      }
    }
    return total;
  }

  /** Next position of a pool's shared rotation. */
  nextRoundRobin(pool: number): number {
    return Atomics.add(this.i32, this.rrBase + pool, 1) >>> 0;
  }

  /** Counts a request waiting for pool `pool` if fewer than `limit` wait; false when full. */
  enqueue(pool: number, limit: number): boolean {
    if (Atomics.add(this.i32, this.queuedBase + pool, 1) < limit) return true;
    Atomics.sub(this.i32, this.queuedBase + pool, 1);
    return false;
  }

  dequeue(pool: number): void {
    Atomics.sub(this.i32, this.queuedBase + pool, 1);
  }

  queued(pool: number): number {
    return Atomics.load(this.i32, this.queuedBase + pool);
  }

  /** Peak-EWMA latency of `slot` in µs (0 = no sample yet), and when it was last sampled. */
  latency(slot: number): number {
    return Atomics.load(this.i32, this.ewmaBase + slot);
  }

  latencyAt(slot: number): number {
    return Atomics.load(this.i32, this.ewmaAtBase + slot);
  }

  /** Replaces the latency estimate only if it is still `seen` (so concurrent samples all count). */
  tryRecordLatency(slot: number, seen: number, next: number, at: number): boolean {
    if (Atomics.compareExchange(this.i32, this.ewmaBase + slot, seen, next) !== seen) return false;
    Atomics.store(this.i32, this.ewmaAtBase + slot, at);
    return true;
  }

  countRequest(slot: number): void {
    Atomics.add(this.i64, this.requestsBase + slot, 1n);
  }

  countFailure(slot: number): void {
    Atomics.add(this.i64, this.failuresBase + slot, 1n);
  }

  /** Outcome of one exchange with a backend, for passive health (outlier ejection). */
  recordOutcome(slot: number, failed: boolean, status: number): void {
    if (failed) Atomics.add(this.i32, this.failStreakBase + slot, 1);
    else if (this.i32[this.failStreakBase + slot] !== 0) Atomics.store(this.i32, this.failStreakBase + slot, 0);
    if (status >= 500) Atomics.add(this.i32, this.fiveXxStreakBase + slot, 1);
    else if (!failed && this.i32[this.fiveXxStreakBase + slot] !== 0) Atomics.store(this.i32, this.fiveXxStreakBase + slot, 0);
  }

  failStreak(slot: number): number {
    return Atomics.load(this.i32, this.failStreakBase + slot);
  }

  fiveXxStreak(slot: number): number {
    return Atomics.load(this.i32, this.fiveXxStreakBase + slot);
  }

  /** Clears both streaks (primary, on ejection or re-admission). */
  resetStreaks(slot: number): void {
    Atomics.store(this.i32, this.failStreakBase + slot, 0);
    Atomics.store(this.i32, this.fiveXxStreakBase + slot, 0);
  }

  countRetry(slot: number): void {
    Atomics.add(this.i64, this.retriesBase + slot, 1n);
  }

  countEjection(slot: number): void {
    Atomics.add(this.i64, this.ejectionsBase + slot, 1n);
  }

  /** What worker `worker` holds over every backend: its row of byWorker, summed. */
  heldByWorker(worker: number): number {
    let held = 0;
    for (let slot = 0; slot < this.backends; slot++) held += this.activeByWorker(slot, worker);
    return held;
  }

  /** A WebSocket or TCP session on `slot` ended after `ms`. */
  recordSession(slot: number, ms: number): void {
    let bucket = 0;
    while (bucket < SESSION_BUCKETS.length && ms > SESSION_BUCKETS[bucket] * 1000) bucket++;
    Atomics.add(this.i64, this.sessionsBase + bucket * this.backends + slot, 1n);
    Atomics.add(this.i64, this.sessionSumBase + slot, BigInt(Math.round(ms)));
  }

  sessionBucket(slot: number, bucket: number): bigint {
    return Atomics.load(this.i64, this.sessionsBase + bucket * this.backends + slot);
  }

  sessionSumMs(slot: number): bigint {
    return Atomics.load(this.i64, this.sessionSumBase + slot);
  }

  /** One answer carrying x-fairway-error `code` (a code of FAULTS). */
  countFault(code: string): void {
    const index = FAULT_INDEX.get(code);
    if (index !== undefined) Atomics.add(this.i64, this.faultsBase + index, 1n);
  }

  faults(index: number): bigint {
    return Atomics.load(this.i64, this.faultsBase + index);
  }

  /** Worker `worker`'s count of requests read so far (it alone writes its entry). */
  storeWorkerRequests(worker: number, count: number): void {
    Atomics.store(this.i64, this.workerRequestsBase + worker, BigInt(count));
  }

  workerRequests(worker: number): bigint {
    return Atomics.load(this.i64, this.workerRequestsBase + worker);
  }

  countSheds(slot: number, count: number): void {
    Atomics.add(this.i64, this.shedsBase + slot, BigInt(count));
  }

  retries(slot: number): bigint {
    return Atomics.load(this.i64, this.retriesBase + slot);
  }

  ejections(slot: number): bigint {
    return Atomics.load(this.i64, this.ejectionsBase + slot);
  }

  sheds(slot: number): bigint {
    return Atomics.load(this.i64, this.shedsBase + slot);
  }

  countWebSocket(slot: number): void {
    Atomics.add(this.i64, this.webSocketsBase + slot, 1n);
  }

  /** Counts a response by status class (fairway's own 5xx included). */
  countStatus(slot: number, status: number): void {
    const klass = (status / 100) | 0;
    if (klass >= 1 && klass <= STATUS_CLASSES) Atomics.add(this.i64, this.statusBase + (klass - 1) * this.backends + slot, 1n);
  }

  /** Records one upstream duration in `slot`'s histogram. */
  observeLatency(slot: number, seconds: number): void {
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
    Atomics.add(this.i64, this.latencyBase + bucket * this.backends + slot, 1n);
    Atomics.add(this.i64, this.latencySumBase + slot, BigInt(Math.round(seconds * 1e6)));
  }

  webSockets(slot: number): bigint {
    return Atomics.load(this.i64, this.webSocketsBase + slot);
  }

  statusCount(slot: number, klass: number): bigint {
    return Atomics.load(this.i64, this.statusBase + (klass - 1) * this.backends + slot);
  }

  /** Non-cumulative count of bucket `bucket` (LATENCY_BUCKETS.length is the overflow bucket). */
  latencyBucket(slot: number, bucket: number): bigint {
    return Atomics.load(this.i64, this.latencyBase + bucket * this.backends + slot);
  }

  latencySumMicros(slot: number): bigint {
    return Atomics.load(this.i64, this.latencySumBase + slot);
  }

  requests(slot: number): bigint {
    return Atomics.load(this.i64, this.requestsBase + slot);
  }

  failures(slot: number): bigint {
    return Atomics.load(this.i64, this.failuresBase + slot);
  }
}
