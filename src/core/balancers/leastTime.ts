// least-time: lowest peak-EWMA latency × (active + 1) / weight, as Finagle and Linkerd balance.

import { decayedLatency } from './latency.js';
import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { PoolView } from './poolView.js';

const MAX_ATTEMPTS = 1000;
/** An estimate never counts for less than this share of the pool's average (no flood after idling). */
const FLOOR_SHARE = 0.1;

export class LeastTime implements Picker {
  private readonly view: PoolView;
  private costs: number[] = [];
  private start = 0;

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
  }

  sessionPlan(): SessionPlan {
    return this.view.sessionPlan();
  }

  pick(_key?: string, avoid?: readonly number[]): number {
    const view = this.view;
    view.refresh();
    const { slots } = view;
    const count = slots.length;
    if (count === 0) return NO_BACKEND;
    const { table, worker, pool } = view.context;
    const now = view.now();
    // Latency estimates; a backend with no sample yet is taken to be average, neither starved nor flooded.
    const costs = this.costs;
    let sum = 0;
    let sampled = 0;
    for (let index = 0; index < count; index++) {
      costs[index] = decayedLatency(table, slots[index], now, pool.decay);
      if (costs[index] > 0) {
        sum += costs[index];
        sampled++;
      }
    }
    const average = sampled > 0 ? sum / sampled : 1;
    for (let index = 0; index < count; index++) costs[index] = Math.max(costs[index] || average, average * FLOOR_SHARE);

    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let best = -1;
      let bestActive = 0;
      let bestScore = Infinity;
      const offset = this.start < count ? this.start : 0;
      this.start = offset + 1;
      for (let k = 0; k < count; k++) {
        const index = offset + k < count ? offset + k : offset + k - count;
        const active = table.active(slots[index]);
        const load = active + table.remote(slots[index]);
        if (view.avoids(index, avoid) || !view.hasRoom(index, load)) continue;
        const score = (costs[index] * (load + 1)) / view.effectiveWeight(index, now);
        if (score < bestScore) {
          best = index;
          bestActive = active;
          bestScore = score;
        }
      }
      if (best < 0) return ALL_FULL;
      if (table.tryAcquire(slots[best], bestActive, worker)) return slots[best];
    }
    return view.takeAny(avoid);
  }
}
