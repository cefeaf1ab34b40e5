// Passive health: a backend whose requests fail in a row is ejected for a while, longer each
// time, readmitted on trial, and never more than the pool's max_ejected_share at once.

import type { PoolConfig } from '../config/types.js';
import { eject, mayEject, newOutlierRecord, readmit, trips, type OutlierRecord } from '../core/health/outlierRules.js';
import { BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';

export class OutlierEjection {
  private readonly outliers = new Map<number, OutlierRecord>();

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
    private readonly logger: Logger,
  ) {}

  /** Ends an ejection early (active checks pass again). */
  endEjection(slot: number): void {
    const record = this.outliers.get(slot);
    if (!record || record.ejectedUntil === 0) return;
    record.ejectedUntil = 0;
    record.trialUntil = 0;
    this.table.resetStreaks(slot);
    this.control.states.setEjected(slot, false);
  }

  /** One round over a pool: ejects the backends that tripped, readmits those whose time is up. */
  run(pool: PoolConfig, now: number): void {
    const { outlier } = pool;
    if (outlier.consecutiveFailures === 0 && outlier.consecutive5xx === 0) return;
    const { table } = this;
    const slots = pool.backends.map((b) => this.control.plan.backendSlots[b.id]);
    let ejected = slots.filter((slot) => (this.outliers.get(slot)?.ejectedUntil ?? 0) > now).length;
    for (const [index, slot] of slots.entries()) {
      const record = this.outliers.get(slot) ?? newOutlierRecord();
      this.outliers.set(slot, record);
      if (record.ejectedUntil > now) continue;
      if (record.ejectedUntil > 0) {
        readmit(record, outlier, now);
        table.resetStreaks(slot);
        this.control.states.setEjected(slot, false);
        ejected--;
        this.logger.info({ backend: pool.backends[index].id }, 'ejected backend readmitted on trial');
        continue;
      }
      const failures = table.failStreak(slot);
      const fiveXx = table.fiveXxStreak(slot);
      if (!trips(outlier, failures, fiveXx, now < record.trialUntil) || table.state(slot) !== BACKEND_UP) continue;
      if (!mayEject(outlier, ejected, slots.length)) continue;
      const forMs = eject(record, outlier, now);
      ejected++;
      table.resetStreaks(slot);
      table.countEjection(slot);
      this.control.states.setEjected(slot, true);
      this.logger.warn({ backend: pool.backends[index].id, failures, fiveXx, forMs }, 'backend ejected (passive health)');
    }
  }
}
