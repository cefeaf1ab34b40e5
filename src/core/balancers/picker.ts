// The interface every balancing algorithm implements, and what a picker is built from.

import type { PoolConfig } from '../../config/types.js';
import type { StateTable } from '../state/stateTable.js';

/** Returned by a picker when no backend of the pool is up. */
export const NO_BACKEND = -1;
/** Returned by a picker when backends are up but every one is at its max_conns. */
export const ALL_FULL = -2;

export interface PoolMember {
  /** Slot of the backend in the shared state table. */
  slot: number;
  /** Identity of the backend (pool/address): what consistent hashing places on its ring. */
  id: string;
}

export interface PickerContext {
  table: StateTable;
  members: PoolMember[];
  /** Slot of the pool in the state table (for shared per-pool state such as a rotation). */
  poolSlot: number;
  /** This thread's worker row in the state table. */
  worker: number;
  /** The pool's options (slow start, hashing, latency decay). */
  pool: PoolConfig;
  /** Current time in table time (ms since the table's epoch); injectable for tests. */
  clock?: () => number;
  /** Random number in [0, 1); injectable for tests. */
  random?: () => number;
}

/**
 * A picker only picks: it reads health, weight and load from the shared table and does no I/O.
 * `pick` returns the slot it took one session on (already counted as active), NO_BACKEND or
 * ALL_FULL. `key` is the request's hash key, for pickers that hash. `avoid` lists slots not to
 * pick (the backends a retry already tried): the picker's own rule chooses among the others, as
 * HAProxy's `srvtoavoid` and Pingora's `select_with(accept)`, so a hash pool's retry goes to the
 * key's next ring member and a weighted pool's retries keep its weights. The caller releases the
 * slot with `table.release(slot, worker)` when the session ends.
 */
export interface Picker {
  pick(key?: string, avoid?: readonly number[]): number;
  /** What a fleet-wide session pick for `key` chooses among (see SessionPlan); takes nothing. */
  sessionPlan(key?: string): SessionPlan;
}

/**
 * The members that can take a session, for a pick made over the whole fleet's counts (in Redis,
 * docs/fleet.md): with `ring`, the first in this order that has room and is under the bounded
 * load takes it (a hash pool's ring walk for the key); otherwise, or when none is, the one with
 * the fewest sessions per weight, ties to the earliest in the order.
 */
export interface SessionPlan {
  ring: boolean;
  /** Hash pools: no member takes a session at or above ceil(factor × (pool total + 1) / members); 0 = unbounded. */
  balanceFactor: number;
  slots: number[];
  /** Weights now (slow start applied). */
  weights: number[];
  /** 0 = unlimited. */
  maxConns: number[];
}

export type PickerFactory = (context: PickerContext) => Picker;
