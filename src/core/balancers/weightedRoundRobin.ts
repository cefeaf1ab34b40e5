// weighted-round-robin: NGINX's smooth weighted rotation, precomputed once per pool change and
// walked with one shared counter, so the sequence is global across workers and never bursts.

import { NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { inLowestTerms, PoolView } from './poolView.js';

/** Longest precomputed cycle; heavier pools are scaled down to it, keeping every weight >= 1. */
const MAX_CYCLE = 65_536;

/** One cycle of smooth weighted round robin: member indexes, each `weights[i]` times, interleaved. */
export function smoothSequence(weights: number[]): number[] {
  let scaled = inLowestTerms(weights);
  const reduced = scaled.reduce((a, b) => a + b, 0);
  if (reduced > MAX_CYCLE) scaled = scaled.map((w) => Math.max(1, Math.round((w * MAX_CYCLE) / reduced)));
  const sum = scaled.reduce((a, b) => a + b, 0);
  const current = scaled.map(() => 0);
  const sequence: number[] = [];
  for (let n = 0; n < sum; n++) {
    let best = 0;
    for (let i = 0; i < scaled.length; i++) {
      current[i] += scaled[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= sum;
    sequence.push(best);
  }
  return sequence;
}

export class WeightedRoundRobin implements Picker {
  private readonly view: PoolView;
  private sequence: number[] = [];

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
  }

  sessionPlan(): SessionPlan {
    return this.view.sessionPlan();
  }

  pick(_key?: string, avoid?: readonly number[]): number {
    const view = this.view;
    if (view.refresh()) this.sequence = smoothSequence(view.weights);
    const count = view.slots.length;
    if (count === 0) return NO_BACKEND;
    const { table, poolSlot } = view.context;
    const sequence = this.sequence;
    const now = view.slowStarting ? view.now() : 0;
    for (let tried = 0; tried < sequence.length; tried++) {
      const index = sequence[table.nextRoundRobin(poolSlot) % sequence.length];
      if (!view.avoids(index, avoid) && view.passesRamp(index, now) && view.takeIfRoom(index)) return view.slots[index];
    }
    return view.takeAny(avoid);
  }
}
