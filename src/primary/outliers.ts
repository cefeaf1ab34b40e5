// Passive health: a backend whose requests fail in a row is ejected for a while, longer each
// time, readmitted on trial, and never more than the pool's max_ejected_share at once.

import type { PoolConfig } from '../config/types.js';
import { BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';

interface Outlier {
  ejections: number;
  lastEjectedAt: number;
  ejectedUntil: number;
  /** Until then, one failure re-ejects it (the half-open trial after an ejection). */
  trialUntil: number;
}

export class OutlierEjection {
  private readonly outliers = new Map<number, Outlier>();

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
      const record = this.outliers.get(slot) ?? { ejections: 0, lastEjectedAt: 0, ejectedUntil: 0, trialUntil: 0 };
      this.outliers.set(slot, record);
      if (record.ejectedUntil > now) continue;
      if (record.ejectedUntil > 0) {
        // Ejection over: back in, on trial.
        record.ejectedUntil = 0;
        record.trialUntil = now + outlier.baseEjection;
        table.resetStreaks(slot);
        this.control.states.setEjected(slot, false);
        ejected--;
        this.logger.info({ backend: pool.backends[index].id }, 'ejected backend readmitted on trial');
        continue;
      }
      const onTrial = now < record.trialUntil;
      const failures = table.failStreak(slot);
      const fiveXx = table.fiveXxStreak(slot);
      const tripped =
        (outlier.consecutiveFailures > 0 && failures >= (onTrial ? 1 : outlier.consecutiveFailures)) ||
        (outlier.consecutive5xx > 0 && fiveXx >= (onTrial ? 1 : outlier.consecutive5xx));
      if (!tripped || table.state(slot) !== BACKEND_UP) continue;
      if (ejected + 1 > Math.floor(outlier.maxEjectedShare * slots.length)) continue;
      // The ejection time grows with each ejection; ten calm base times start the count over.
      if (now - record.lastEjectedAt > 10 * outlier.baseEjection) record.ejections = 0;
      record.ejections++;
      record.lastEjectedAt = now;
      record.ejectedUntil = now + outlier.baseEjection * record.ejections;
      record.trialUntil = 0;
      ejected++;
      table.resetStreaks(slot);
      table.countEjection(slot);
      this.control.states.setEjected(slot, true);
      this.logger.warn({ backend: pool.backends[index].id, failures, fiveXx, forMs: outlier.baseEjection * record.ejections }, 'backend ejected (passive health)');
    }
  }
}
