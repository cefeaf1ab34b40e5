// The primary's loop over the pools, every 100 ms: outlier ejection, closing what drained
// backends still hold, rebalancing; and the active health checks and DNS discovery, which
// follow every change.

import type { StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';
import { Discovery } from './discovery.js';
import { DrainClosing } from './draining.js';
import { HealthChecks } from './healthChecks.js';
import { OutlierEjection } from './outliers.js';
import { Rebalancing } from './rebalancing.js';
import type { Supervisor } from './supervisor.js';

const LOOP_MS = 100;

export class Lifecycle {
  private readonly checks: HealthChecks;
  private readonly discovery: Discovery;
  private readonly outliers: OutlierEjection;
  private readonly draining: DrainClosing;
  private readonly rebalancing: Rebalancing;
  private readonly loop: NodeJS.Timeout;
  private lastTick = Date.now();

  constructor(
    private readonly control: ControlPlane,
    table: StateTable,
    supervisor: Supervisor,
    logger: Logger,
  ) {
    this.outliers = new OutlierEjection(control, table, logger);
    // Passing active checks also end a passive ejection (as Envoy does by default).
    this.checks = new HealthChecks(control, logger, (slot) => this.outliers.endEjection(slot));
    this.draining = new DrainClosing(control, table, supervisor, logger);
    this.rebalancing = new Rebalancing(control, table, supervisor, logger);
    this.discovery = new Discovery(control, logger);
    control.sources = () => [...this.discovery.status.values()];
    control.onApply = () => {
      this.checks.sync();
      this.discovery.sync();
    };
    this.checks.sync();
    this.discovery.sync();
    this.loop = setInterval(() => this.tick(), LOOP_MS);
  }

  private tick(): void {
    const now = Date.now();
    const elapsed = (now - this.lastTick) / 1000;
    this.lastTick = now;
    for (const pool of Object.values(this.control.config.pools)) {
      this.outliers.run(pool, now);
      this.draining.run(pool, now);
      if (pool.rebalance) this.rebalancing.run(pool, now, elapsed);
    }
  }

  close(): void {
    clearInterval(this.loop);
    this.checks.close();
    this.discovery.close();
  }
}
