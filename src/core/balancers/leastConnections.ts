// least-conn: the backend with the fewest active sessions per unit of weight, exact across threads.

import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext } from './picker.js';
import { PoolView } from './poolView.js';

// A compareExchange fails only when another thread changed the count in between, so a thread
// retries at most a handful of times in practice; the bound only guards against starvation.
const MAX_ATTEMPTS = 1000;

export class LeastConnections implements Picker {
  private readonly view: PoolView;
  // Rotating where the scan starts breaks ties evenly between equally loaded backends.
  private start = 0;

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
  }

  pick(): number {
    const view = this.view;
    view.refresh();
    const { slots } = view;
    const count = slots.length;
    if (count === 0) return NO_BACKEND;
    const { table, worker } = view.context;
    const slowStarting = view.slowStarting;
    const now = slowStarting ? view.now() : 0;
    const { weights, maxConns } = view;
    // Plain reads are enough for the scan: the compareExchange below validates the one count
    // the decision rests on, and a stale read of it fails that exchange and forces a re-scan.
    const i32 = table.i32;
    const base = table.activeBase;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let best = -1;
      let bestActive = 0;
      let bestWeight = 1;
      const offset = this.start < count ? this.start : 0;
      this.start = offset + 1;
      for (let k = 0; k < count; k++) {
        const index = offset + k < count ? offset + k : offset + k - count;
        const active = i32[base + slots[index]];
        const max = maxConns[index];
        if (max !== 0 && active >= max) continue;
        const weight = slowStarting ? view.effectiveWeight(index, now) : weights[index];
        // active/weight < bestActive/bestWeight, without division.
        if (best < 0 || active * bestWeight < bestActive * weight) {
          best = index;
          bestActive = active;
          bestWeight = weight;
        }
      }
      if (best < 0) return ALL_FULL;
      if (table.tryAcquire(slots[best], bestActive, worker)) return slots[best];
    }
    // Starved by other threads for MAX_ATTEMPTS rounds: take any member with room.
    for (let index = 0; index < count; index++) if (view.takeIfRoom(index)) return slots[index];
    return ALL_FULL;
  }
}
