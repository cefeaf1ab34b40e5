// The shared-memory state table: per-backend counters every thread reads and updates with Atomics.
//
// Layout contract (LAYOUT_VERSION 1). One SharedArrayBuffer holds an Int32 region followed by a
// BigInt64 region. Every offset below is an index into the typed array named beside it.
//
// Int32 region (`i32`):
//   HEADER_VERSION          LAYOUT_VERSION                 primary writes once at creation
//   HEADER_BACKENDS         backend slot capacity          primary writes once
//   HEADER_WORKERS          worker row capacity            primary writes once
//   HEADER_POOLS            pool slot capacity             primary writes once
//   active[b]               open sessions + in-flight      workers: compareExchange / add / sub;
//                           requests on backend b          primary: sub when reconciling a dead worker
//   weight[b]               configured weight              primary: store; workers: load
//   state[b]                BACKEND_UP / DOWN / ...        primary: store; workers: load
//   rrNext[p]               round-robin position of pool p workers: add
//   byWorker[w * B + b]     worker w's share of active[b]  worker w: add / sub; primary: exchange(0)
//                                                          after worker w died
// BigInt64 region (`i64`):
//   requests[b]             HTTP requests + WS sessions    workers: add
//   failures[b]             upstream failures              workers: add

export const LAYOUT_VERSION = 1;

export const HEADER_VERSION = 0;
export const HEADER_BACKENDS = 1;
export const HEADER_WORKERS = 2;
export const HEADER_POOLS = 3;
const HEADER_SIZE = 8;

export const BACKEND_UP = 0;
export const BACKEND_DOWN = 1;
export const BACKEND_DRAINING = 2;
export const BACKEND_EJECTED = 3;
export const BACKEND_REMOVED = 4;

export interface TableCapacity {
  backends: number;
  workers: number;
  pools: number;
}

export class StateTable {
  readonly buffer: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly backends: number;
  readonly workers: number;
  readonly pools: number;
  readonly activeBase: number;
  readonly weightBase: number;
  readonly stateBase: number;
  readonly rrBase: number;
  readonly byWorkerBase: number;
  readonly requestsBase: number;
  readonly failuresBase: number;

  private constructor(buffer: SharedArrayBuffer, capacity: TableCapacity) {
    this.buffer = buffer;
    this.backends = capacity.backends;
    this.workers = capacity.workers;
    this.pools = capacity.pools;
    const B = capacity.backends;
    this.activeBase = HEADER_SIZE;
    this.weightBase = this.activeBase + B;
    this.stateBase = this.weightBase + B;
    this.rrBase = this.stateBase + B;
    this.byWorkerBase = this.rrBase + capacity.pools;
    const int32Count = this.byWorkerBase + capacity.workers * B;
    const int32Bytes = Math.ceil((int32Count * 4) / 8) * 8;
    this.i32 = new Int32Array(buffer, 0, int32Count);
    this.i64 = new BigInt64Array(buffer, int32Bytes, 2 * B);
    this.requestsBase = 0;
    this.failuresBase = B;
  }

  static byteLength(capacity: TableCapacity): number {
    const int32Count = HEADER_SIZE + 3 * capacity.backends + capacity.pools + capacity.workers * capacity.backends;
    return Math.ceil((int32Count * 4) / 8) * 8 + 2 * capacity.backends * 8;
  }

  /** Lays out a new table (primary thread). */
  static create(capacity: TableCapacity): StateTable {
    const table = new StateTable(new SharedArrayBuffer(StateTable.byteLength(capacity)), capacity);
    table.i32[HEADER_VERSION] = LAYOUT_VERSION;
    table.i32[HEADER_BACKENDS] = capacity.backends;
    table.i32[HEADER_WORKERS] = capacity.workers;
    table.i32[HEADER_POOLS] = capacity.pools;
    return table;
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

  active(slot: number): number {
    return Atomics.load(this.i32, this.activeBase + slot);
  }

  weight(slot: number): number {
    return Atomics.load(this.i32, this.weightBase + slot);
  }

  state(slot: number): number {
    return Atomics.load(this.i32, this.stateBase + slot);
  }

  setWeight(slot: number, weight: number): void {
    Atomics.store(this.i32, this.weightBase + slot, weight);
  }

  setState(slot: number, state: number): void {
    Atomics.store(this.i32, this.stateBase + slot, state);
  }

  /**
   * Takes one session on `slot` only if its count is still `seen`; false when another thread
   * changed it first, so the caller re-reads and picks again instead of overshooting.
   */
  tryAcquire(slot: number, seen: number, worker: number): boolean {
    if (Atomics.compareExchange(this.i32, this.activeBase + slot, seen, seen + 1) !== seen) return false;
    Atomics.add(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
    return true;
  }

  /** Takes one session on `slot` unconditionally (pickers that do not compare counts). */
  acquire(slot: number, worker: number): void {
    Atomics.add(this.i32, this.activeBase + slot, 1);
    Atomics.add(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
  }

  release(slot: number, worker: number): void {
    Atomics.sub(this.i32, this.byWorkerBase + worker * this.backends + slot, 1);
    Atomics.sub(this.i32, this.activeBase + slot, 1);
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
        Atomics.sub(this.i32, this.activeBase + slot, held);
        total += held;
      }
    }
    return total;
  }

  /** Next position of a pool's shared round-robin rotation. */
  nextRoundRobin(pool: number): number {
    return Atomics.add(this.i32, this.rrBase + pool, 1) >>> 0;
  }

  countRequest(slot: number): void {
    Atomics.add(this.i64, this.requestsBase + slot, 1n);
  }

  countFailure(slot: number): void {
    Atomics.add(this.i64, this.failuresBase + slot, 1n);
  }

  requests(slot: number): bigint {
    return Atomics.load(this.i64, this.requestsBase + slot);
  }

  failures(slot: number): bigint {
    return Atomics.load(this.i64, this.failuresBase + slot);
  }
}
