// A worker's cached view of which pool members can take sessions, rebuilt when the pool changes.

import { BACKEND_UP } from '../state/stateTable.js';
import { ALL_FULL, type PickerContext, type SessionPlan } from './picker.js';

const MIN_RAMP = 0.05;

/** Weights divided by their greatest common divisor: the table holds them scaled by shares (percent). */
export function inLowestTerms(weights: readonly number[]): number[] {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const divisor = weights.reduce(gcd, 0) || 1;
  return weights.map((w) => w / divisor);
}

export class PoolView {
  /** Slots, ids, weights and max_conns of the members that are up with a weight above zero. */
  slots: number[] = [];
  ids: string[] = [];
  weights: number[] = [];
  maxConns: number[] = [];
  totalWeight = 0;
  /** By member index (all members, in config order): slot, whether it can take sessions, max_conns. */
  readonly memberSlots: Int32Array;
  readonly memberUp: Uint8Array;
  readonly memberMax: Int32Array;
  /** True when every member that is up has the same weight (so loads compare without weights). */
  equalWeights = true;
  private version = -1;
  readonly now: () => number;
  readonly random: () => number;

  constructor(readonly context: PickerContext) {
    const { table } = context;
    this.now = context.clock ?? (() => table.now());
    this.random = context.random ?? Math.random;
    this.memberSlots = Int32Array.from(context.members, (m) => m.slot);
    this.memberUp = new Uint8Array(context.members.length);
    this.memberMax = new Int32Array(context.members.length);
  }

  /** Rebuilds the view if the primary changed the pool since the last call; true if it did. */
  refresh(): boolean {
    const { table, members, poolSlot } = this.context;
    const version = table.poolVersion(poolSlot);
    if (version === this.version) return false;
    this.version = version;
    this.slots = [];
    this.ids = [];
    this.weights = [];
    this.maxConns = [];
    this.totalWeight = 0;
    this.equalWeights = true;
    for (const [member, { slot, id }] of members.entries()) {
      const weight = table.weight(slot);
      const up = table.state(slot) === BACKEND_UP && weight > 0;
      this.memberUp[member] = up ? 1 : 0;
      this.memberMax[member] = table.maxConns(slot);
      if (!up) continue;
      if (this.weights.length > 0 && weight !== this.weights[0]) this.equalWeights = false;
      this.slots.push(slot);
      this.ids.push(id);
      this.weights.push(weight);
      this.maxConns.push(table.maxConns(slot));
      this.totalWeight += weight;
    }
    return true;
  }

  get slowStarting(): boolean {
    return this.context.pool.slowStart > 0;
  }

  /**
   * Weight after slow start: a backend that joined or came back up `elapsed` ms ago counts for
   * weight × elapsed / slow_start (at least 5%), until slow_start has passed.
   */
  effectiveWeight(index: number, now: number): number {
    const weight = this.weights[index];
    const slowStart = this.context.pool.slowStart;
    if (slowStart <= 0) return weight;
    const from = this.context.table.rampFrom(this.slots[index]);
    if (from === 0) return weight;
    const elapsed = (now - from) | 0;
    if (elapsed >= slowStart || elapsed < 0) return weight;
    return weight * Math.max(MIN_RAMP, elapsed / slowStart);
  }

  /**
   * For pickers that choose without comparing loads: during slow start a backend is passed over
   * with the probability it is still short of its full weight.
   */
  passesRamp(index: number, now: number): boolean {
    if (!this.slowStarting) return true;
    const share = this.effectiveWeight(index, now) / this.weights[index];
    return share >= 1 || this.random() < share;
  }

  /**
   * The members up now, for a fleet-wide session pick: in ring order when `order` (member
   * indexes of the view as the caller just refreshed it) is given, else starting one further
   * along at each call, so that ties rotate.
   */
  sessionPlan(order?: readonly number[]): SessionPlan {
    if (!order) this.refresh();
    const count = this.slots.length;
    const now = this.slowStarting ? this.now() : 0;
    const indexes = order ?? Array.from({ length: count }, (_, k) => (this.planStart + k) % count);
    if (!order) this.planStart = count === 0 ? 0 : (this.planStart + 1) % count;
    return {
      ring: order !== undefined,
      balanceFactor: this.context.pool.hash?.balanceFactor ?? 0,
      slots: indexes.map((i) => this.slots[i]),
      weights: indexes.map((i) => this.effectiveWeight(i, now)),
      maxConns: indexes.map((i) => this.maxConns[i]),
    };
  }

  private planStart = 0;

  /** Member `index` is one of the slots a retry avoids. */
  avoids(index: number, avoid: readonly number[] | undefined): boolean {
    return avoid !== undefined && avoid.includes(this.slots[index]);
  }

  /** Whether member `index` is below its max_conns with `load` sessions (local + remote). */
  hasRoom(index: number, load: number): boolean {
    const max = this.maxConns[index];
    return max === 0 || load < max;
  }

  /** The fallback of every picker: the first member with room and not avoided, taken, or ALL_FULL. */
  takeAny(avoid?: readonly number[]): number {
    for (let index = 0; index < this.slots.length; index++) if (!this.avoids(index, avoid) && this.takeIfRoom(index)) return this.slots[index];
    return ALL_FULL;
  }

  /** Takes one session on member `index` unless it is at max_conns; false when full. */
  takeIfRoom(index: number): boolean {
    const { table, worker } = this.context;
    const slot = this.slots[index];
    for (;;) {
      const seen = table.active(slot);
      if (!this.hasRoom(index, seen + table.remote(slot))) return false;
      if (table.tryAcquire(slot, seen, worker)) return true;
    }
  }
}
