// round-robin: one rotation shared by all worker threads, skipping backends that cannot take more.

import { NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { PoolView } from './poolView.js';

export class RoundRobin implements Picker {
  private readonly view: PoolView;

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
  }

  sessionPlan(): SessionPlan {
    return this.view.sessionPlan();
  }

  pick(_key?: string, avoid?: readonly number[]): number {
    const view = this.view;
    view.refresh();
    const count = view.slots.length;
    if (count === 0) return NO_BACKEND;
    const { table, poolSlot } = view.context;
    const now = view.slowStarting ? view.now() : 0;
    for (let tried = 0; tried < count; tried++) {
      const index = table.nextRoundRobin(poolSlot) % count;
      if (!view.avoids(index, avoid) && view.passesRamp(index, now) && view.takeIfRoom(index)) return view.slots[index];
    }
    return view.takeAny(avoid);
  }
}
