// Assigns state-table slots to backends (by identity) and pools, in the primary thread.

import type { Config } from '../../config/types.js';
import { BACKEND_REMOVED, BACKEND_UP, type StateTable } from './stateTable.js';

/** A backend's whole weight, in the percent the table's weights are written in. */
export const FULL_SHARE = 100;

/** What a worker needs besides the config: where each backend and pool lives in the table. */
export interface SlotPlan {
  backendSlots: Record<string, number>;
  poolSlots: Record<string, number>;
}

export class SlotRegistry {
  private readonly backendSlots = new Map<string, number>();
  private readonly poolSlots = new Map<string, number>();
  /** Backend identity by slot: a slot is never given to another backend. */
  private readonly ids: string[] = [];

  constructor(private readonly table: StateTable) {}

  private assigned = false;

  /** Identity of the backend that has `slot`. */
  idOf(slot: number): string | undefined {
    return this.ids[slot];
  }

  /** Slot of a known backend, by identity. */
  slotOf(id: string): number | undefined {
    return this.backendSlots.get(id);
  }

  /**
   * Gives every backend and pool of `config` a slot, keeping the slot of a backend already known
   * by its identity so that its counters carry over; writes weights and limits and marks new
   * backends up. A backend that joins after the first assignment starts its slow start now.
   */
  assign(config: Config, shareOf: (slot: number) => number = () => FULL_SHARE): SlotPlan {
    const plan: SlotPlan = { backendSlots: {}, poolSlots: {} };
    for (const pool of Object.values(config.pools)) {
      const poolSlot = this.slotFor(this.poolSlots, pool.name, this.table.pools, 'pools');
      plan.poolSlots[pool.name] = poolSlot;
      for (const [member, backend] of pool.backends.entries()) {
        const known = this.backendSlots.has(backend.id);
        const slot = this.slotFor(this.backendSlots, backend.id, this.table.backends, 'backends');
        // Always: a reload may have moved the backend within its pool's list.
        this.table.bindBackend(slot, poolSlot, member);
        if (!known || this.table.state(slot) === BACKEND_REMOVED) {
          this.table.setState(slot, BACKEND_UP);
          if (this.assigned && pool.slowStart > 0) this.table.startRamp(slot);
        }
        this.writeWeight(slot, backend.weight, shareOf(slot));
        this.table.setMaxConns(slot, backend.maxConns);
        plan.backendSlots[backend.id] = slot;
        this.ids[slot] = backend.id;
      }
    }
    this.assigned = true;
    return plan;
  }

  /**
   * The one writer of a backend's weight in the table: its configured weight times the share
   * (percent) its agent or a degraded health check leaves it. Pickers compare weights only with
   * each other, so the scale does not matter to them.
   */
  writeWeight(slot: number, weight: number, share: number): void {
    this.table.setWeight(slot, weight * share);
  }

  private slotFor(map: Map<string, number>, key: string, capacity: number, what: string): number {
    let slot = map.get(key);
    if (slot === undefined) {
      if (map.size >= capacity) throw new Error(`more than ${capacity} ${what}: raise the state table capacity`);
      slot = map.size;
      map.set(key, slot);
    }
    return slot;
  }
}
