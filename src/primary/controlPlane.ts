// Changes to the running fleet (admin API, reload): validated here, applied to the shared table
// and sent to every worker, without touching open sessions on backends that stay.

import { loadConfigFile } from '../config/load.js';
import { ConfigError, validateBackend } from '../config/schema.js';
import type { BackendConfig, Config } from '../config/types.js';
import type { SlotPlan, SlotRegistry } from '../core/state/slotRegistry.js';
import { BACKEND_DOWN, BACKEND_DRAINING, BACKEND_EJECTED, BACKEND_REMOVED, BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import { BackendStates } from './backendStates.js';
import type { Logger } from '../log.js';
import type { Supervisor } from './supervisor.js';

/** A failed admin request: an HTTP status and a message naming what is wrong. */
export class ControlError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

export interface BackendView {
  id: string;
  pool: string;
  url: string;
  name: string;
  state: 'up' | 'down' | 'draining' | 'ejected';
  weight: number;
  active: number;
  requests: number;
  failures: number;
}

const STATE_NAMES: Record<number, BackendView['state']> = {
  [BACKEND_UP]: 'up',
  [BACKEND_DOWN]: 'down',
  [BACKEND_DRAINING]: 'draining',
  [BACKEND_EJECTED]: 'ejected',
};

const REMOVAL_POLL_MS = 100;

/** An admin change that every instance of a fleet applies (docs/fleet.md). */
export type SharedChange =
  | { op: 'drain' | 'undrain' | 'remove'; id: string }
  | { op: 'weight'; id: string; weight: number }
  | { op: 'add'; pool: string; body: unknown }
  | { op: 'reload' };

export class ControlPlane {
  /** Backends leaving a pool: draining until their last session ends, then removed. */
  private readonly leaving = new Map<string, { slot: number }>();
  private removalTimer: NodeJS.Timeout | null = null;
  readonly states: BackendStates;
  /** Called after every applied config (the health checker follows the backends). */
  onApply: (() => void) | undefined;
  /** Called after an admin change made here that the other instances of a fleet apply too. */
  onShared: ((change: SharedChange) => void) | undefined;

  constructor(
    public config: Config,
    public plan: SlotPlan,
    private readonly table: StateTable,
    private readonly registry: SlotRegistry,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
    private readonly configPath?: string,
    /** The config as read at start, before ports and worker count were resolved. */
    private readonly asStarted: Config = config,
  ) {
    this.states = new BackendStates(table);
  }

  /** Applies a validated config: slots, weights and limits in the table, then every worker. */
  apply(next: Config): void {
    const kept = new Set(Object.values(next.pools).flatMap((p) => p.backends.map((b) => b.id)));
    for (const pool of Object.values(this.config.pools)) {
      for (const backend of pool.backends) {
        if (!kept.has(backend.id)) this.startLeaving(backend.id);
      }
    }
    for (const id of kept) {
      if (this.leaving.delete(id)) this.states.setDrained(this.registry.slotOf(id)!, false);
      const slot = this.registry.slotOf(id);
      // Back after removal: a fresh start, whatever was known of it before.
      if (slot !== undefined && this.table.state(slot) === BACKEND_REMOVED) this.states.reset(slot);
    }
    const plan = this.registry.assign(next);
    // The listen addresses, worker count and engine are fixed for the life of the process. TLS
    // stays on or off; its certificates may change (workers re-read the files on every apply).
    const tls = this.config.tls && next.tls ? { ...next.tls, redirect: this.config.tls.redirect } : this.config.tls;
    const applied: Config = { ...next, listen: this.config.listen, tls, workers: this.config.workers, engine: this.config.engine, admin: this.config.admin, tcp: this.config.tcp, fleet: this.config.fleet };
    this.config = applied;
    this.plan = plan;
    this.supervisor.broadcast({ type: 'config', config: applied, plan });
    this.onApply?.();
  }

  /** Re-reads the config file (SIGHUP, POST /api/reload); an invalid file changes nothing. */
  reload(): void {
    this.reloadFile();
    this.onShared?.({ op: 'reload' });
  }

  private reloadFile(): void {
    if (!this.configPath) throw new ControlError(400, 'fairway was started without --config: there is no file to reload');
    let next: Config;
    try {
      next = loadConfigFile(this.configPath);
    } catch (err) {
      if (err instanceof ConfigError) throw new ControlError(400, err.message);
      throw err;
    }
    // Compared with the file as read at start (port 0 and `workers` as written, not as resolved).
    for (const key of ['listen', 'workers', 'engine', 'tcp', 'fleet', 'admin', 'limits'] as const) {
      if (JSON.stringify(next[key]) !== JSON.stringify(this.asStarted[key])) this.logger.warn({ key }, `${key} changed in the config file: it takes effect only on restart`);
    }
    // Settings the listeners were made with.
    const made: [string, (c: Config) => unknown][] = [
      ['timeouts.request_head', (c) => c.timeouts.requestHead],
      ['websocket.compression', (c) => c.websocket.compression],
      ['log.format', (c) => c.log.format],
    ];
    for (const [key, read] of made) {
      if (read(next) !== read(this.asStarted)) this.logger.warn({ key }, `${key} changed in the config file: it takes effect only on restart`);
    }
    if (Boolean(next.tls) !== Boolean(this.config.tls) || JSON.stringify(next.tls?.redirect) !== JSON.stringify(this.config.tls?.redirect)) {
      this.logger.warn({ key: 'tls' }, 'TLS turned on or off, or its redirect listener changed: that takes effect only on restart (certificates are reloaded)');
    }
    this.apply(next);
    this.logger.info({ pools: Object.keys(next.pools) }, 'config reloaded');
  }

  isDrained(id: string): boolean {
    return this.states.isDrained(this.plan.backendSlots[this.find(id).id]);
  }

  /** Applies a change another instance of the fleet made; one that does not apply here is logged. */
  applyShared(change: SharedChange): void {
    try {
      if (change.op === 'reload') this.reloadFile();
      else if (change.op === 'weight') this.applyWeight(change.id, change.weight);
      else if (change.op === 'add') this.applyAdd(change.pool, change.body);
      else if (change.op === 'remove') this.startLeaving(this.find(change.id).id);
      else this.setDrained(change.id, change.op === 'drain');
      this.logger.info({ change }, 'admin change from the fleet applied');
    } catch (err) {
      this.logger.warn({ change, err: (err as Error).message }, 'admin change from the fleet does not apply here');
    }
  }

  backends(): BackendView[] {
    const views: BackendView[] = [];
    for (const pool of Object.values(this.config.pools)) for (const backend of pool.backends) views.push(this.view(backend));
    return views;
  }

  pools(): { name: string; algorithm: string; backends: BackendView[] }[] {
    return Object.values(this.config.pools).map((pool) => ({ name: pool.name, algorithm: pool.algorithm, backends: pool.backends.map((b) => this.view(b)) }));
  }

  view(backend: BackendConfig): BackendView {
    const slot = this.plan.backendSlots[backend.id];
    const { table } = this;
    return {
      id: backend.id,
      pool: backend.pool,
      url: backend.origin,
      name: backend.name,
      state: STATE_NAMES[table.state(slot)] ?? 'down',
      weight: table.weight(slot),
      active: table.active(slot),
      requests: Number(table.requests(slot)),
      failures: Number(table.failures(slot)),
    };
  }

  find(id: string): BackendConfig {
    for (const pool of Object.values(this.config.pools)) {
      const backend = pool.backends.find((b) => b.id === id);
      if (backend) return backend;
    }
    throw new ControlError(404, `no backend with id ${JSON.stringify(id)}`);
  }

  addBackend(poolName: string, body: unknown): BackendView {
    const view = this.applyAdd(poolName, body);
    this.onShared?.({ op: 'add', pool: poolName, body });
    return view;
  }

  /** Whether pool `poolName` has a backend with this id. */
  has(poolName: string, id: string): boolean {
    return this.config.pools[poolName]?.backends.some((b) => b.id === id) ?? false;
  }

  private applyAdd(poolName: string, body: unknown): BackendView {
    const pool = this.config.pools[poolName];
    if (!pool) throw new ControlError(404, `no pool named ${JSON.stringify(poolName)}`);
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ControlError(400, 'body: expected a JSON object such as {"url": "http://127.0.0.1:9004", "weight": 1}');
    let backend: BackendConfig;
    try {
      backend = validateBackend(poolName, body);
    } catch (err) {
      if (err instanceof ConfigError) throw new ControlError(400, err.problems.join('; '));
      throw err;
    }
    if (pool.backends.some((b) => b.id === backend.id)) throw new ControlError(409, `pool ${poolName} already has backend ${backend.origin}`);
    this.apply(this.withPool(poolName, [...pool.backends, backend]));
    return this.view(backend);
  }

  setWeight(id: string, body: unknown): BackendView {
    const backend = this.find(id);
    const weight = (body as { weight?: unknown } | null)?.weight;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1000) {
      throw new ControlError(400, `weight: expected a whole number from 1 to 1000, got ${JSON.stringify(weight)}`);
    }
    this.applyWeight(id, weight);
    this.onShared?.({ op: 'weight', id, weight });
    return this.view(this.find(id));
  }

  private applyWeight(id: string, weight: number): void {
    const backend = this.find(id);
    const pool = this.config.pools[backend.pool];
    this.apply(this.withPool(backend.pool, pool.backends.map((b) => (b.id === id ? { ...b, weight } : b))));
  }

  drain(id: string): BackendView {
    const view = this.setDrained(id, true);
    this.onShared?.({ op: 'drain', id });
    return view;
  }

  undrain(id: string): BackendView {
    const view = this.setDrained(id, false);
    this.onShared?.({ op: 'undrain', id });
    return view;
  }

  private setDrained(id: string, drained: boolean): BackendView {
    const backend = this.find(id);
    if (!drained && this.leaving.has(id)) throw new ControlError(409, `backend ${id} is being removed`);
    this.states.setDrained(this.plan.backendSlots[id], drained);
    if (drained) this.logger.info({ backend: id }, 'backend draining: no new sessions');
    else this.logger.info({ backend: id }, 'backend undrained');
    return this.view(backend);
  }

  /** Drains a backend, and takes it out of its pool once its last session has ended. */
  remove(id: string): BackendView {
    const backend = this.find(id);
    this.startLeaving(id);
    this.onShared?.({ op: 'remove', id });
    return this.view(backend);
  }

  private withPool(poolName: string, backends: BackendConfig[]): Config {
    return { ...this.config, pools: { ...this.config.pools, [poolName]: { ...this.config.pools[poolName], backends } } };
  }

  private startLeaving(id: string): void {
    const slot = this.registry.slotOf(id);
    if (slot === undefined || this.leaving.has(id)) return;
    this.states.setDrained(slot, true);
    this.leaving.set(id, { slot });
    this.removalTimer ??= setInterval(() => this.finishLeaving(), REMOVAL_POLL_MS);
  }

  private finishLeaving(): void {
    for (const [id, { slot }] of this.leaving) {
      if (this.table.active(slot) > 0) continue;
      const pool = Object.values(this.config.pools).find((p) => p.backends.some((b) => b.id === id));
      // Still listed as leaving while applying, so that apply does not start it leaving again.
      if (pool) this.apply(this.withPool(pool.name, pool.backends.filter((b) => b.id !== id)));
      this.leaving.delete(id);
      this.table.setState(slot, BACKEND_REMOVED);
      this.states.reset(slot);
      this.logger.info({ backend: id }, 'backend removed');
    }
    if (this.leaving.size === 0 && this.removalTimer) {
      clearInterval(this.removalTimer);
      this.removalTimer = null;
    }
  }

  close(): void {
    if (this.removalTimer) clearInterval(this.removalTimer);
    this.removalTimer = null;
  }
}
