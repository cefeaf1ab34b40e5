// One place that decides each backend's state in the shared table, from what every part of the
// primary knows: admin drain, active health verdicts, outlier ejection, the backend's own agent;
// and the share of its weight it keeps (agent percentage, degraded health).

import { FULL_SHARE } from '../core/state/slotRegistry.js';
import { BACKEND_DOWN, BACKEND_DRAINING, BACKEND_EJECTED, BACKEND_REMOVED, BACKEND_UP, type StateTable } from '../core/state/stateTable.js';

interface BackendStatus {
  drained: boolean;
  healthy: boolean;
  ejected: boolean;
  /** What the agent check said last (HAProxy's administrative and operating states). */
  agentMode: 'ready' | 'drain' | 'maint';
  agentUp: boolean;
  /** Weight share the agent gave, percent. */
  agentPercent: number;
  /** Share of its weight a degraded backend keeps (1 = not degraded). */
  degradedShare: number;
  /** When the backend last entered the draining state (Date.now()), for drain timeouts. */
  drainingSince: number;
}

export class BackendStates {
  private readonly status = new Map<number, BackendStatus>();

  /** Called on every change of a backend's state in the table, for the event log. */
  onChange: ((slot: number, state: number) => void) | undefined;

  constructor(private readonly table: StateTable) {}

  private get(slot: number): BackendStatus {
    let status = this.status.get(slot);
    if (!status) {
      status = { drained: false, healthy: true, ejected: false, agentMode: 'ready', agentUp: true, agentPercent: FULL_SHARE, degradedShare: 1, drainingSince: 0 };
      this.status.set(slot, status);
    }
    return status;
  }

  setDrained(slot: number, drained: boolean): void {
    this.update(slot, (s) => (s.drained = drained));
  }

  setHealthy(slot: number, healthy: boolean): void {
    this.update(slot, (s) => (s.healthy = healthy));
  }

  setEjected(slot: number, ejected: boolean): void {
    this.update(slot, (s) => (s.ejected = ejected));
  }

  /** What an agent check said: the parts it mentioned change, the others stay. */
  setAgent(slot: number, reply: { mode?: BackendStatus['agentMode']; up?: boolean }): void {
    this.update(slot, (s) => {
      if (reply.mode !== undefined) s.agentMode = reply.mode;
      if (reply.up !== undefined) s.agentUp = reply.up;
    });
  }

  /**
   * Sets the agent's percentage or the degraded share; returns the backend's weight share in
   * percent when it changed (the caller writes the weight), else undefined.
   */
  setShare(slot: number, change: { agentPercent?: number; degradedShare?: number }): number | undefined {
    const status = this.get(slot);
    const before = this.weightShare(slot);
    if (change.agentPercent !== undefined) status.agentPercent = change.agentPercent;
    if (change.degradedShare !== undefined) status.degradedShare = change.degradedShare;
    const after = this.weightShare(slot);
    return after === before ? undefined : after;
  }

  /** The share of its configured weight the backend keeps, percent (100 = all of it). */
  weightShare(slot: number): number {
    const status = this.status.get(slot);
    if (!status) return FULL_SHARE;
    const share = status.agentPercent * status.degradedShare;
    // A degraded backend the agent still gives weight to keeps at least 1 %.
    return share > 0 ? Math.max(1, Math.round(share)) : 0;
  }

  /** The agent's last word on the backend, for the admin API. */
  agentView(slot: number): { mode: string; up: boolean; percent: number } {
    const { agentMode, agentUp, agentPercent } = this.get(slot);
    return { mode: agentMode, up: agentUp, percent: agentPercent };
  }

  /** A backend added again after removal starts afresh. */
  reset(slot: number): void {
    this.status.delete(slot);
  }

  isDrained(slot: number): boolean {
    return this.get(slot).drained;
  }

  isHealthy(slot: number): boolean {
    return this.get(slot).healthy;
  }

  /** When the backend started draining (admin or agent), 0 when it is not draining. */
  drainingSince(slot: number): number {
    const status = this.get(slot);
    return status.drained || status.agentMode === 'drain' ? status.drainingSince : 0;
  }

  private update(slot: number, change: (status: BackendStatus) => void): void {
    const status = this.get(slot);
    const before = this.table.state(slot);
    if (before === BACKEND_REMOVED) return;
    change(status);
    // An agent's maint or down takes the backend out as failed checks do; its drain as an admin drain.
    const draining = status.drained || status.agentMode === 'drain';
    const down = !status.healthy || !status.agentUp || status.agentMode === 'maint';
    const after = draining ? BACKEND_DRAINING : down ? BACKEND_DOWN : status.ejected ? BACKEND_EJECTED : BACKEND_UP;
    if (after === before) return;
    if (after === BACKEND_DRAINING) status.drainingSince = Date.now();
    this.table.setState(slot, after);
    this.onChange?.(slot, after);
    // Coming back up: slow start ramps it in (pools without slow_start ignore the origin).
    if (after === BACKEND_UP) this.table.startRamp(slot);
  }
}
