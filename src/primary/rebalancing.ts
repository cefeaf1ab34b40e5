// Active rebalancing: sessions are shed (closed with 1012, for clients to reconnect elsewhere)
// from backends above max_skew × the pool's average, at most `rate` per second.

import type { PoolConfig } from '../config/types.js';
import { shedPlan } from '../core/rebalancePlan.js';
import { BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';
import type { Supervisor } from './supervisor.js';

export class Rebalancing {
  private readonly shedTokens = new Map<string, number>();
  /** Sessions asked to close by rebalancing and not yet gone: slot → [count, asked at]. */
  private readonly shedPending = new Map<number, [number, number]>();

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
  ) {}

  /** Sheds sessions from backends above max_skew × the pool's average, at most `rate` per second. */
  run(pool: PoolConfig, now: number, elapsed: number): void {
    const { maxSkew, rate, order } = pool.rebalance!;
    const { table } = this;
    const slots = pool.backends.map((b) => this.control.plan.backendSlots[b.id]).filter((slot) => table.state(slot) === BACKEND_UP);
    if (slots.length < 2) return;
    const pending = (slot: number) => {
      const entry = this.shedPending.get(slot);
      return entry && now - entry[1] < 2000 ? entry[0] : 0;
    };
    const loads = slots.map((slot) => table.active(slot) - pending(slot));
    const average = loads.reduce((a, b) => a + b, 0) / slots.length;
    const plan = shedPlan(loads, maxSkew, Math.min(rate, (this.shedTokens.get(pool.name) ?? 0) + rate * elapsed));
    for (const [i, slot] of slots.entries()) {
      const count = plan.counts[i];
      if (count === 0) continue;
      this.shedPending.set(slot, [pending(slot) + count, now]);
      table.countSheds(slot, count);
      const backend = pool.backends.find((b) => this.control.plan.backendSlots[b.id] === slot)?.id;
      this.logger.info({ backend, count, active: loads[i], average }, 'rebalancing: closing sessions with 1012');
      this.control.events.add('shed', `rebalancing closes ${count} session(s) on ${backend}`, backend);
      // The workers holding the most sessions there close them, each at most what it holds.
      const holders = Array.from({ length: this.control.config.workers }, (_, worker) => [worker, table.activeByWorker(slot, worker)]).sort((a, b) => b[1] - a[1]);
      let left = count;
      for (const [worker, held] of holders) {
        const share = Math.min(left, held);
        if (share <= 0) break;
        this.supervisor.sendTo(worker, { type: 'shed', slot, count: share, order });
        left -= share;
      }
    }
    this.shedTokens.set(pool.name, plan.tokens);
  }
}
