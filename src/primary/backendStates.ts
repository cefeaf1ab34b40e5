// One place that decides each backend's state in the shared table, from what every part of the
// primary knows: admin drain, active health verdicts, outlier ejection.

import { BACKEND_DOWN, BACKEND_DRAINING, BACKEND_EJECTED, BACKEND_REMOVED, BACKEND_UP, type StateTable } from '../core/state/stateTable.js';

interface BackendStatus {
  drained: boolean;
  healthy: boolean;
  ejected: boolean;
  /** When the backend last entered the draining state (Date.now()), for drain timeouts. */
  drainingSince: number;
}

export class BackendStates {
  private readonly status = new Map<number, BackendStatus>();

  constructor(private readonly table: StateTable) {}

  private get(slot: number): BackendStatus {
    let status = this.status.get(slot);
    if (!status) {
      status = { drained: false, healthy: true, ejected: false, drainingSince: 0 };
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

  drainingSince(slot: number): number {
    return this.get(slot).drained ? this.get(slot).drainingSince : 0;
  }

  private update(slot: number, change: (status: BackendStatus) => void): void {
    const status = this.get(slot);
    const before = this.table.state(slot);
    if (before === BACKEND_REMOVED) return;
    change(status);
    const after = status.drained ? BACKEND_DRAINING : !status.healthy ? BACKEND_DOWN : status.ejected ? BACKEND_EJECTED : BACKEND_UP;
    if (after === before) return;
    if (after === BACKEND_DRAINING) status.drainingSince = Date.now();
    this.table.setState(slot, after);
    // Coming back up: slow start ramps it in (pools without slow_start ignore the origin).
    if (after === BACKEND_UP) this.table.startRamp(slot);
  }
}
