// A worker's side of fleet-exact session picks: it asks the primary, which holds the one Redis
// connection, and tells it of every session the fleet counts taken or ended (docs/fleet.md).

import type { SessionPlan } from '../core/balancers/picker.js';
import { FLEET_UP, type StateTable } from '../core/state/stateTable.js';
import type { Bucket } from '../core/limits/clientLimits.js';
import type { FleetVerdict, WorkerMessage } from '../engine/messages.js';

/** The fleet's answer when Redis cannot decide in time: the worker picks from its local view. */
export const PICK_LOCALLY = -3;

export class FleetSessions {
  private nextId = 1;
  private readonly asked = new Map<number, (slot: number) => void>();
  private readonly limits = new Map<number, (verdict: FleetVerdict | null) => void>();

  constructor(
    private readonly table: StateTable,
    private readonly post: (message: WorkerMessage) => void,
    /** Session picks are made over the fleet's counts (fleet.exact_sessions). */
    readonly exactSessions: boolean,
  ) {}

  /** Takes a token from each bucket in Redis; null when Redis could not answer (check locally then). */
  limit(key: string, requests: Bucket | undefined, sessions: Bucket | undefined): Promise<FleetVerdict | null> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.limits.set(id, resolve);
      this.post({ type: 'fleet-limit', id, key, requests, sessions });
    });
  }

  /** The primary's answer to limit `id`. */
  limited(id: number, verdict: FleetVerdict | null): void {
    const resolve = this.limits.get(id);
    this.limits.delete(id);
    resolve?.(verdict);
  }

  /** Whether a new session should ask the fleet now (Redis is answering). */
  get answering(): boolean {
    return this.table.fleetState() === FLEET_UP;
  }

  /** Asks for a backend over the fleet's counts; resolves to a slot the fleet took, ALL_FULL or PICK_LOCALLY. */
  pick(plan: SessionPlan): Promise<number> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.asked.set(id, resolve);
      this.post({ type: 'fleet-pick', id, plan });
    });
  }

  /** The primary's answer to pick `id`. */
  answer(id: number, slot: number): void {
    const resolve = this.asked.get(id);
    this.asked.delete(id);
    resolve?.(slot);
  }

  /** A session on `slot` taken without the fleet's pick: the fleet counts it too. */
  held(slot: number): void {
    this.post({ type: 'fleet-held', slot });
  }

  released(slot: number): void {
    this.post({ type: 'fleet-release', slot });
  }
}
