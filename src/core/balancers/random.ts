// random: a backend drawn at random in proportion to its weight.

import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { PoolView } from './poolView.js';

export class WeightedRandom implements Picker {
  private readonly view: PoolView;
  /** Running sums of the view's weights, for drawing by weight with a binary search. */
  private cumulative: number[] = [];

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
  }

  sessionPlan(): SessionPlan {
    return this.view.sessionPlan();
  }

  pick(_key?: string, avoid?: readonly number[]): number {
    const view = this.view;
    if (view.refresh()) {
      let sum = 0;
      this.cumulative = view.weights.map((w) => (sum += w));
    }
    const count = view.slots.length;
    if (count === 0) return NO_BACKEND;
    const now = view.slowStarting ? view.now() : 0;
    for (let tried = 0; tried < 2 * count; tried++) {
      const index = this.draw(view.random() * view.totalWeight);
      if (!view.avoids(index, avoid) && view.passesRamp(index, now) && view.takeIfRoom(index)) return view.slots[index];
    }
    const start = Math.floor(view.random() * count);
    for (let k = 0; k < count; k++) {
      const index = (start + k) % count;
      if (!view.avoids(index, avoid) && view.takeIfRoom(index)) return view.slots[index];
    }
    return ALL_FULL;
  }

  private draw(target: number): number {
    const sums = this.cumulative;
    let low = 0;
    let high = sums.length - 1;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (sums[mid] > target) high = mid;
      else low = mid + 1;
    }
    return low;
  }
}
