// What one worker thread holds while serving: routing, pickers, upstream clients, open sessions.

import { Pool } from 'undici';
import type { BackendConfig, Config } from '../../config/schema.js';
import { PICKERS } from '../../core/balancers/registry.js';
import type { Picker } from '../../core/balancers/picker.js';
import { Router } from '../../core/routing.js';
import type { SlotPlan } from '../../core/state/slotRegistry.js';
import type { StateTable } from '../../core/state/stateTable.js';
import type { Logger } from '../../log.js';

/** A session the worker can end on shutdown: a WebSocket or an in-flight HTTP exchange. */
export interface OpenSession {
  /** Ends the session from our side with a WebSocket close code. */
  shutdown(code: number, reason: string): void;
  /** Checks that the backend is still alive (called every ping interval). */
  keepalive(): void;
}

export class WorkerContext {
  readonly router: Router;
  readonly pickers = new Map<string, Picker>();
  /** Indexed by state-table slot. */
  readonly backends: BackendConfig[] = [];
  readonly dispatchers: Pool[] = [];
  readonly webSockets = new Set<OpenSession>();
  inFlightHttp = 0;
  shuttingDown = false;

  constructor(
    readonly worker: number,
    readonly table: StateTable,
    readonly config: Config,
    plan: SlotPlan,
    readonly logger: Logger,
    readonly testHooks: boolean,
  ) {
    this.router = new Router(config);
    for (const pool of Object.values(config.pools)) {
      const members = pool.backends.map((b) => ({ slot: plan.backendSlots[b.id] }));
      this.pickers.set(pool.name, PICKERS[pool.algorithm]({ table, members, poolSlot: plan.poolSlots[pool.name], worker }));
      for (const backend of pool.backends) {
        const slot = plan.backendSlots[backend.id];
        this.backends[slot] = backend;
        this.dispatchers[slot] = new Pool(backend.origin, {
          connections: null,
          pipelining: 1,
          connectTimeout: config.timeouts.connect,
          headersTimeout: config.timeouts.response,
          bodyTimeout: config.timeouts.idle,
          keepAliveTimeout: 4_000,
        });
      }
    }
  }

  get accessLog(): boolean {
    return this.config.log.access;
  }

  async closeDispatchers(): Promise<void> {
    await Promise.allSettled(this.dispatchers.filter(Boolean).map((d) => d.destroy()));
  }
}
