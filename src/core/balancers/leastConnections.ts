// least-conn: the backend with the fewest active sessions per unit of weight, exact across threads.

import { BACKEND_UP } from '../state/stateTable.js';
import { NO_BACKEND, type Picker, type PickerContext } from './picker.js';

// A compareExchange fails only when another thread changed the count in between, so a thread
// retries at most a handful of times in practice; the bound only guards against starvation.
const MAX_ATTEMPTS = 1000;

export class LeastConnections implements Picker {
  // Rotating where the scan starts breaks ties evenly between equally loaded backends.
  private start = 0;

  constructor(private readonly context: PickerContext) {}

  pick(): number {
    const { table, members, worker } = this.context;
    const count = members.length;
    let best = NO_BACKEND;
    let bestActive = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      best = NO_BACKEND;
      let bestWeight = 1;
      const offset = this.start;
      this.start = offset + 1 === count ? 0 : offset + 1;
      for (let k = 0; k < count; k++) {
        const index = offset + k < count ? offset + k : offset + k - count;
        const slot = members[index].slot;
        if (table.state(slot) !== BACKEND_UP) continue;
        const weight = table.weight(slot);
        if (weight <= 0) continue;
        const active = table.active(slot);
        // active/weight < bestActive/bestWeight, without division.
        if (best === NO_BACKEND || active * bestWeight < bestActive * weight) {
          best = slot;
          bestActive = active;
          bestWeight = weight;
        }
      }
      if (best === NO_BACKEND) return NO_BACKEND;
      if (table.tryAcquire(best, bestActive, worker)) return best;
    }
    table.acquire(best, worker);
    return best;
  }
}
