// round-robin: one rotation shared by all worker threads, skipping backends that are not up.

import { BACKEND_UP } from '../state/stateTable.js';
import { NO_BACKEND, type Picker, type PickerContext } from './picker.js';

export class RoundRobin implements Picker {
  constructor(private readonly context: PickerContext) {}

  pick(): number {
    const { table, members, poolSlot, worker } = this.context;
    const count = members.length;
    for (let tried = 0; tried < count; tried++) {
      const slot = members[table.nextRoundRobin(poolSlot) % count].slot;
      if (table.state(slot) === BACKEND_UP && table.weight(slot) > 0) {
        table.acquire(slot, worker);
        return slot;
      }
    }
    return NO_BACKEND;
  }
}
