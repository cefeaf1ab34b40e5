// The interface every balancing algorithm implements, and what a picker is built from.

import type { StateTable } from '../state/stateTable.js';

/** Returned by a picker when no backend of the pool can take the session. */
export const NO_BACKEND = -1;

export interface PoolMember {
  /** Slot of the backend in the shared state table. */
  slot: number;
}

export interface PickerContext {
  table: StateTable;
  members: PoolMember[];
  /** Slot of the pool in the state table (for shared per-pool state such as a rotation). */
  poolSlot: number;
  /** This thread's worker row in the state table. */
  worker: number;
}

/**
 * A picker only picks: it reads health, weight and load from the shared table and does no I/O.
 * `pick` returns the slot it took one session on (already counted as active), or NO_BACKEND.
 * The caller releases the slot with `table.release(slot, worker)` when the session ends.
 */
export interface Picker {
  pick(): number;
}

export type PickerFactory = (context: PickerContext) => Picker;
