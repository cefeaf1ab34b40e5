// Assigns state-table slots to backends (by identity) and pools, in the primary thread.

import type { Config } from '../../config/schema.js';
import { BACKEND_UP, type StateTable } from './stateTable.js';

/** What a worker needs besides the config: where each backend and pool lives in the table. */
export interface SlotPlan {
  backendSlots: Record<string, number>;
  poolSlots: Record<string, number>;
}

export class SlotRegistry {
  private readonly backendSlots = new Map<string, number>();
  private readonly poolSlots = new Map<string, number>();

  constructor(private readonly table: StateTable) {}

  /**
   * Gives every backend and pool of `config` a slot, keeping the slot of a backend already known
   * by its identity so that its counters carry over; writes weights and marks new backends up.
   */
  assign(config: Config): SlotPlan {
    const plan: SlotPlan = { backendSlots: {}, poolSlots: {} };
    for (const pool of Object.values(config.pools)) {
      plan.poolSlots[pool.name] = this.slotFor(this.poolSlots, pool.name, this.table.pools, 'pools');
      for (const backend of pool.backends) {
        const known = this.backendSlots.has(backend.id);
        const slot = this.slotFor(this.backendSlots, backend.id, this.table.backends, 'backends');
        this.table.setWeight(slot, backend.weight);
        if (!known) this.table.setState(slot, BACKEND_UP);
        plan.backendSlots[backend.id] = slot;
      }
    }
    return plan;
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
