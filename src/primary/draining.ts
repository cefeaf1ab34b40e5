// Draining: once a drained backend's drain.timeout has passed, the sessions still open on it are
// closed by the workers, spread over drain.window.

import type { PoolConfig } from '../config/types.js';
import type { StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';
import type { Supervisor } from './supervisor.js';

export class DrainClosing {
  /** drainingSince value for which the sessions of a slot were already told to close. */
  private readonly drainClosed = new Map<number, number>();

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
  ) {}

  /** After drain.timeout, the sessions still open on a drained backend are closed, spread out. */
  run(pool: PoolConfig, now: number): void {
    for (const backend of pool.backends) {
      const slot = this.control.plan.backendSlots[backend.id];
      const since = this.control.states.drainingSince(slot);
      if (since === 0 || now - since < pool.drain.timeout || this.drainClosed.get(slot) === since) continue;
      this.drainClosed.set(slot, since);
      if (this.table.active(slot) === 0) continue;
      const { window, rate, code } = pool.drain;
      this.logger.info({ backend: backend.id, sessions: this.table.active(slot), windowMs: window, rate }, 'drain timeout: closing the sessions left, spread over the window');
      this.supervisor.broadcast({ type: 'close-sessions', slot, window, rate: rate / this.control.config.workers, code, reason: 'backend draining' });
    }
  }
}
