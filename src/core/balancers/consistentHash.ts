// hash: consistent hashing of a request key on a ring of virtual nodes, with optional bounded
// loads (Mirrokni, Thorup, Zadimoghaddam): no backend takes a new session while at or above
// ceil(factor × (pool active + 1) / backends); the next backend along the ring takes it instead.

import { LeastConnections } from './leastConnections.js';
import { ALL_FULL, NO_BACKEND, type Picker, type PickerContext, type SessionPlan } from './picker.js';
import { inLowestTerms, PoolView } from './poolView.js';

/** Ring points per unit of weight: enough that each backend owns close to its share of keys. */
const POINTS_PER_WEIGHT = 160;
const MAX_POINTS = 1 << 20;

/** 32-bit FNV-1a of a string's UTF-16 units, finished with murmur3's avalanche. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class ConsistentHash implements Picker {
  private readonly view: PoolView;
  private readonly fallback: LeastConnections;
  /** Ring point hashes, ascending, and the member index owning each. */
  private points = new Uint32Array(0);
  private owners = new Int32Array(0);
  /** seen[i] === stamp marks member i as visited in the current pick (no clearing per pick). */
  private readonly seen: Uint32Array;
  private stamp = 0;

  constructor(context: PickerContext) {
    this.view = new PoolView(context);
    this.fallback = new LeastConnections(context);
    this.seen = new Uint32Array(context.members.length);
  }

  private rebuild(): void {
    const { ids } = this.view;
    // The ring's size follows the proportions, not the scale the table keeps weights in.
    const weights = inLowestTerms(this.view.weights);
    const total = weights.reduce((a, b) => a + b, 0);
    const perWeight = Math.max(1, Math.min(POINTS_PER_WEIGHT, Math.floor(MAX_POINTS / Math.max(1, total))));
    const ring: [number, number][] = [];
    for (let index = 0; index < ids.length; index++) {
      const points = weights[index] * perWeight;
      // Points depend on the backend's identity only, so other backends' points never move.
      for (let v = 0; v < points; v++) ring.push([hash32(`${ids[index]}#${v}`), index]);
    }
    ring.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    this.points = Uint32Array.from(ring, (p) => p[0]);
    this.owners = Int32Array.from(ring, (p) => p[1]);
  }

  /** A key's members in ring order (the fleet applies the bounded load); no key: least-conn's plan. */
  sessionPlan(key?: string): SessionPlan {
    if (key === undefined || key === '') return this.fallback.sessionPlan();
    const view = this.view;
    if (view.refresh()) this.rebuild();
    const order: number[] = [];
    const seen = this.seen;
    const stamp = (this.stamp = (this.stamp + 1) >>> 0 || 1);
    let position = lowerBound(this.points, hash32(key));
    for (let step = 0; step < this.points.length && order.length < view.slots.length; step++, position++) {
      if (position === this.points.length) position = 0;
      const index = this.owners[position];
      if (seen[index] === stamp) continue;
      seen[index] = stamp;
      order.push(index);
    }
    return view.sessionPlan(order);
  }

  pick(key?: string, avoid?: readonly number[]): number {
    if (key === undefined || key === '') return this.fallback.pick(undefined, avoid);
    const view = this.view;
    if (view.refresh()) this.rebuild();
    const count = view.slots.length;
    if (count === 0) return NO_BACKEND;
    const { table, worker, pool, poolSlot } = view.context;
    const factor = pool.hash?.balanceFactor ?? 0;
    const now = view.slowStarting ? view.now() : 0;
    const points = this.points;
    const owners = this.owners;
    let position = lowerBound(points, hash32(key));
    const seen = this.seen;
    const stamp = (this.stamp = (this.stamp + 1) >>> 0 || 1);
    let visited = 0;
    for (let step = 0; step < points.length && visited < count; step++, position++) {
      if (position === points.length) position = 0;
      const index = owners[position];
      if (seen[index] === stamp) continue;
      seen[index] = stamp;
      visited++;
      if (view.avoids(index, avoid) || !view.passesRamp(index, now)) continue;
      for (;;) {
        const active = table.active(view.slots[index]);
        const load = active + table.remote(view.slots[index]);
        if (!view.hasRoom(index, load)) break;
        if (factor > 0 && load >= Math.ceil((factor * (table.poolActive(poolSlot) + table.poolRemote(poolSlot) + 1)) / count)) break;
        if (table.tryAcquire(view.slots[index], active, worker)) return view.slots[index];
      }
    }
    // Every backend was over its bound or ramping: fall back to the least loaded one with room.
    const slot = this.fallback.pick(undefined, avoid);
    return slot === NO_BACKEND ? ALL_FULL : slot;
  }
}

/** First index whose point is >= target (or points.length). */
function lowerBound(points: Uint32Array, target: number): number {
  let low = 0;
  let high = points.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (points[mid] < target) low = mid + 1;
    else high = mid;
  }
  return low;
}
