// A request's or session's hold on one backend: admitted, switched on retry through the pool's
// own picker, and released exactly once. HTTP exchanges, WebSocket sessions and TCP sessions
// hold one each; nothing else takes or gives back a backend's slot. A session's lease is also
// where the fleet counts it (docs/fleet.md): picked over the fleet's counts when Redis answers,
// and told to the fleet whenever it is taken or given back.

import { ALL_FULL } from '../core/balancers/picker.js';
import { FAULTS } from '../core/errors.js';
import type { StateTable } from '../core/state/stateTable.js';
import type { Admittable, PoolRuntime } from './admission.js';
import type { FleetSessions } from './fleetSessions.js';

export class BackendLease {
  /** The backend held: -1 until admitted. */
  slot = -1;
  /** Backends tried, the current one last. */
  private readonly tried: number[] = [];
  private released = false;
  /** The slot being admitted was taken by the fleet's pick (the fleet already counts it). */
  private fleetTook = false;

  constructor(
    private readonly table: StateTable,
    private readonly worker: number,
    readonly pool: PoolRuntime,
    /** The request's hash key, so that a retry stays on the key's ring. */
    private readonly key: string | undefined,
    /** For a WebSocket or TCP session when the fleet picks sessions: what counts it fleet-wide. */
    private readonly fleet?: FleetSessions,
  ) {}

  /** Whether retries.count leaves room for another backend. */
  get canSwitch(): boolean {
    return this.tried.length <= this.pool.config.retries.count;
  }

  /**
   * Finds a backend for `holder`: over the fleet's counts for a session while Redis answers
   * (one round trip; at the fleet's max_conns, 503), else through the pool (sticky slot, picker,
   * queue). The holder hears through admit or refuse. Returns a cancel function for a holder
   * that waits (call it when its client goes away).
   */
  find(holder: Admittable, stickySlot: number): (() => void) | undefined {
    const { fleet, pool } = this;
    if (!fleet || stickySlot >= 0 || !fleet.answering) return pool.admit(holder, this.key, stickySlot);
    const plan = pool.picker.sessionPlan(this.key);
    if (plan.slots.length === 0) return pool.admit(holder, this.key, -1);
    let gone = false;
    let cancelLocal: (() => void) | undefined;
    void fleet.pick(plan).then((slot) => {
      if (slot >= 0) {
        // Taken in Redis: counted here too, and given back by admit if the holder has gone.
        this.table.acquire(slot, this.worker);
        this.fleetTook = true;
        holder.admit(slot);
      } else if (gone) return;
      else if (slot === ALL_FULL) holder.refuse(FAULTS.backendsFull);
      // PICK_LOCALLY: Redis could not decide in time.
      else cancelLocal = pool.admit(holder, this.key, -1);
    });
    return () => {
      gone = true;
      cancelLocal?.();
    };
  }

  /**
   * The pool admitted `slot` (the picker, the sticky cookie or the fleet already took one session
   * on it): held, counting the request there and, for the first backend, earning the pool's
   * retry budget; or, when the holder has gone meanwhile, given back with nothing counted. True
   * when held.
   */
  admit(slot: number, holderGone: boolean): boolean {
    const counted = this.fleetTook;
    this.fleetTook = false;
    if (holderGone) {
      this.table.release(slot, this.worker);
      if (counted) this.fleet?.released(slot);
      return false;
    }
    if (!counted) this.fleet?.held(slot);
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
    this.fleet?.released(from);
    this.fleet?.held(next);
    this.take(next);
    return true;
  }

  /** Gives the backend back; later calls do nothing, so every counter is fixed exactly once. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.slot < 0) return;
    this.table.release(this.slot, this.worker);
    this.fleet?.released(this.slot);
  }
}
