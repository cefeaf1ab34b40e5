// p2c: two backends drawn at random, the one with fewer active sessions per weight wins.

import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { PoolView } from './poolView.js';

const MAX_ATTEMPTS = 64;

export class PowerOfTwoChoices implements Picker {
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
    const { table, worker } = view.context;
    const { slots } = view;
    if (count === 1) return !view.avoids(0, avoid) && view.takeIfRoom(0) ? slots[0] : ALL_FULL;
    const now = view.slowStarting ? view.now() : 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const first = Math.floor(view.random() * count);
      let second = Math.floor(view.random() * (count - 1));
      if (second >= first) second++;
      const firstActive = table.active(slots[first]);
      const secondActive = table.active(slots[second]);
      const firstLoad = firstActive + table.remote(slots[first]);
      const secondLoad = secondActive + table.remote(slots[second]);
      const firstRoom = !view.avoids(first, avoid) && view.hasRoom(first, firstLoad);
      const secondRoom = !view.avoids(second, avoid) && view.hasRoom(second, secondLoad);
      if (!firstRoom && !secondRoom) continue;
      let chosen = first;
      let seen = firstActive;
      if (!firstRoom || (secondRoom && secondLoad * view.effectiveWeight(first, now) < firstLoad * view.effectiveWeight(second, now))) {
        chosen = second;
        seen = secondActive;
      }
      if (table.tryAcquire(slots[chosen], seen, worker)) return slots[chosen];
    }
    return view.takeAny(avoid);
  }
}
