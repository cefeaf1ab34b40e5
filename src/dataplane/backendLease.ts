// A request's or session's hold on one backend: admitted, switched on retry through the pool's
// own picker, and released exactly once. HTTP exchanges, WebSocket sessions and TCP sessions
// hold one each; nothing else takes or gives back a backend's slot.

import type { StateTable } from '../core/state/stateTable.js';
import type { PoolRuntime } from './admission.js';

export class BackendLease {
  /** The backend held: -1 until admitted. */
  slot = -1;
  /** Backends tried, the current one last. */
  private readonly tried: number[] = [];
  private released = false;

  constructor(
    private readonly table: StateTable,
    private readonly worker: number,
    readonly pool: PoolRuntime,
    /** The request's hash key, so that a retry stays on the key's ring. */
    private readonly key: string | undefined,
  ) {}

  /** Whether retries.count leaves room for another backend. */
  get canSwitch(): boolean {
    return this.tried.length <= this.pool.config.retries.count;
  }

  /**
   * The pool admitted `slot` (the picker or the sticky cookie already took one session on it):
   * held, counting the request there and, for the first backend, earning the pool's retry
   * budget; or, when the holder has gone meanwhile, given back with nothing counted. True when held.
   */
  admit(slot: number, holderGone: boolean): boolean {
    if (holderGone) {
      this.table.release(slot, this.worker);
      return false;
    }
    this.take(slot);
    return true;
  }

  private take(slot: number): void {
    this.slot = slot;
    this.tried.push(slot);
    this.table.countRequest(slot);
    if (this.tried.length === 1) this.pool.earnRetry();
  }

  /**
   * After a failure on the current backend: the pool's picker chooses another among those not
   * tried yet; the failed one is released and counted as a retry. Returns false, changing
   * nothing, when retries.count is spent or no other backend can be had.
   */
  switch(): boolean {
    if (!this.canSwitch || this.released) return false;
    const next = this.pool.picker.pick(this.key, this.tried);
    if (next < 0) return false;
    const from = this.slot;
    this.table.countRetry(from);
    this.table.release(from, this.worker);
    this.take(next);
    return true;
  }

  /** Gives the backend back; later calls do nothing, so every counter is fixed exactly once. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.slot >= 0) this.table.release(this.slot, this.worker);
  }
}
