// least-conn: the backend with the fewest active sessions per unit of weight, exact across threads.
//
// Small or weighted pools are scanned in full. Large pools of equal weights use floors kept in
// the shared table: lower bounds of the count over each group of 32 members and over the pool.
// A pick scans one group (the next in rotation, when its floor is the pool's floor) and accepts
// its least loaded member only if that count is at most every floor elsewhere: then no other
// member can be lower. Releases lower the floors; pickers raise them to counts they have seen.
// While sessions only open, every pick takes a least loaded member (tested with 4 threads). A
// release racing a raise can leave a floor briefly above its group's minimum; that group is then
// passed over until the others catch up, and its next scan finds the true minimum again.

import { FLEET_OFF, GROUP_SIZE } from '../state/stateTable.js';
import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { PoolView } from './poolView.js';

// A compareExchange fails only when another thread changed the count in between, so a thread
// retries at most a handful of times in practice; the bound only guards against starvation.
const MAX_ATTEMPTS = 1000;
/** Floor of a group with no member able to take a session; a release lowers it again. */
const EMPTY_GROUP = 0x3fffffff;

export class LeastConnections implements Picker {
  private readonly view: PoolView;
  private readonly groups: number;
  private useGroups = false;
  // Rotating where scans start breaks ties evenly between equally loaded backends and groups.
  private start = 0;
  private groupStart = 0;

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
    this.groups = Math.ceil(context.members.length / GROUP_SIZE);
  }

  sessionPlan(): SessionPlan {
    return this.view.sessionPlan();
  }

  pick(_key?: string, avoid?: readonly number[]): number {
    const view = this.view;
    if (view.refresh()) {
      // The group floors bound local counts only: with a fleet's remote counts, pools are scanned.
      this.useGroups = this.groups > 1 && view.equalWeights && !view.slowStarting && view.context.table.fleetState() === FLEET_OFF;
      // Zero is always a true lower bound; it also reopens groups whose members came back up.
      const { table, poolSlot } = view.context;
      for (let g = 0; g < this.groups; g++) Atomics.store(table.i32, table.groupFloorIndex(poolSlot, g * GROUP_SIZE), 0);
      Atomics.store(table.i32, table.poolFloorBase + poolSlot, 0);
    }
    if (view.slots.length === 0) return NO_BACKEND;
    // A retry's pick scans: it is rare, and the groups' floors stay lower bounds whatever it takes.
    if (avoid !== undefined && avoid.length > 0) return this.pickByScan(avoid);
    return this.useGroups ? this.pickByGroups() : this.pickByScan();
  }

  private pickByScan(avoid?: readonly number[]): number {
    const view = this.view;
    const { slots } = view;
    const count = slots.length;
    const { table, worker } = view.context;
    const slowStarting = view.slowStarting;
    const now = slowStarting ? view.now() : 0;
    const { weights, maxConns } = view;
    // Plain reads are enough for the scan: the compareExchange below validates the one count
    // the decision rests on, and a stale read of it fails that exchange and forces a re-scan.
    const i32 = table.i32;
    const base = table.activeBase;
    const remote = table.remoteBase;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let best = -1;
      let bestActive = 0;
      let bestLoad = 0;
      let bestWeight = 1;
      const offset = this.start < count ? this.start : 0;
      this.start = offset + 1;
      for (let k = 0; k < count; k++) {
        const index = offset + k < count ? offset + k : offset + k - count;
        const active = i32[base + slots[index]];
        // What the fleet's other instances hold counts too (0 without a fleet).
        const load = active + i32[remote + slots[index]];
        const max = maxConns[index];
        if ((max !== 0 && load >= max) || view.avoids(index, avoid)) continue;
        const weight = slowStarting ? view.effectiveWeight(index, now) : weights[index];
        // load/weight < bestLoad/bestWeight, without division.
        if (best < 0 || load * bestWeight < bestLoad * weight) {
          best = index;
          bestActive = active;
          bestLoad = load;
          bestWeight = weight;
        }
      }
      if (best < 0) return ALL_FULL;
      if (table.tryAcquire(slots[best], bestActive, worker)) return slots[best];
    }
    return this.view.takeAny(avoid);
  }

  private pickByGroups(): number {
    const view = this.view;
    const { table, worker, poolSlot } = view.context;
    const { memberSlots, memberUp, memberMax } = view;
    const members = memberSlots.length;
    const groups = this.groups;
    const i32 = table.i32;
    const base = table.activeBase;
    const floors = table.groupFloorIndex(poolSlot, 0);
    const poolFloor = table.poolFloorBase + poolSlot;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // Fast path: the next group in rotation holds the pool's floor; any member of it at that
      // floor is a least loaded member of the whole pool.
      let group = this.groupStart < groups ? this.groupStart : 0;
      this.groupStart = group + 1;
      let lowest = i32[poolFloor];
      let next = lowest;
      if (i32[floors + group] > lowest) {
        // Slow path: the lowest group floor, and the next lowest (the bar the group must meet).
        group = -1;
        lowest = EMPTY_GROUP;
        next = EMPTY_GROUP;
        for (let g = 0; g < groups; g++) {
          const floor = i32[floors + g];
          if (floor < lowest) {
            next = lowest;
            lowest = floor;
            group = g;
          } else if (floor < next) next = floor;
        }
        if (group < 0) return ALL_FULL;
        const seenPoolFloor = i32[poolFloor];
        if (lowest > seenPoolFloor) Atomics.compareExchange(i32, poolFloor, seenPoolFloor, lowest);
      }
      const first = group * GROUP_SIZE;
      const size = Math.min(GROUP_SIZE, members - first);
      let best = -1;
      let bestActive = EMPTY_GROUP;
      const offset = this.start < size ? this.start : 0;
      this.start = offset + 1;
      for (let k = 0; k < size; k++) {
        const member = first + (offset + k < size ? offset + k : offset + k - size);
        if (memberUp[member] === 0) continue;
        const active = i32[base + memberSlots[member]];
        const max = memberMax[member];
        if ((max === 0 || active < max) && active < bestActive) {
          best = member;
          bestActive = active;
        }
      }
      if (bestActive > lowest) {
        // The floor was below the group's real minimum: raise it to what was seen, and choose again.
        Atomics.compareExchange(i32, floors + group, lowest, bestActive);
        if (best < 0 || bestActive > next) continue;
      }
      if (table.tryAcquire(memberSlots[best], bestActive, worker)) return memberSlots[best];
    }
    // Starved by other threads for MAX_ATTEMPTS rounds: take any member with room.
    return this.view.takeAny();
  }
}
