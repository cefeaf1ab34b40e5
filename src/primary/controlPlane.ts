// Changes to the running fleet (admin API, reload): validated here, applied to the shared table
// and sent to every worker, without touching open sessions on backends that stay.

import { ResponseCaches } from './responseCache.js';
import { loadConfigFile } from '../config/load.js';
import { ConfigError, validateBackend } from '../config/schema.js';
import type { BackendConfig, Config, DiscoverySource } from '../config/types.js';
import { FULL_SHARE, type SlotPlan, type SlotRegistry } from '../core/state/slotRegistry.js';
import { BACKEND_DOWN, BACKEND_DRAINING, BACKEND_EJECTED, BACKEND_REMOVED, BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import { BackendStates } from './backendStates.js';
import type { SourceStatus } from './discovery.js';
import { EventLog } from './history.js';
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
  /** The DNS name a discovered backend came from, e.g. "dns chat.internal". */
  source?: string;
  state: 'up' | 'down' | 'draining' | 'ejected';
  /** As configured (or from SRV); `effective_weight` is what the pickers use after agent and degraded shares. */
  weight: number;
  effective_weight: number;
  /** The last active check's reason when it failed or found the backend degraded; the agent's last word. */
  check?: string;
  agent?: { mode: string; up: boolean; percent: number };
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

/** One discovery source's key within its pool. */
export const sourceKey = (source: DiscoverySource): string => `${source.kind} ${source.name}:${source.port}`;

/** An admin change that every instance of a fleet applies (docs/fleet.md). */
export type SharedChange =
  | { op: 'drain' | 'undrain' | 'remove'; id: string }
  | { op: 'weight'; id: string; weight: number }
  | { op: 'add'; pool: string; body: unknown }
  | { op: 'reload' };

export class ControlPlane {
  /**
   * Backends leaving a pool: draining until their last session ends, then removed. `carry`: it
   * stays in its pool meanwhile (admin removal, gone from DNS), so drain settings apply to it.
   */
  private readonly leaving = new Map<string, { slot: number; carry?: BackendConfig; finished?: boolean }>();
  /** What each pool's discovery sources found last, by source. */
  private readonly discovered = new Map<string, Map<string, BackendConfig[]>>();
  /** The config as given (file, reloads, admin changes), without what discovery found. */
  private base: Config;
  private removalTimer: NodeJS.Timeout | null = null;
  readonly states: BackendStates;
  /** Called after every applied config (the health checker follows the backends). */
  onApply: (() => void) | undefined;
  /** What happened to backends and to the instance lately, for the dashboard's timeline. */
  readonly events = new EventLog();
  /** What each DNS discovery source found, for the admin API and /metrics. */
  sources: () => SourceStatus[] = () => [];
  /** Called after an admin change made here that the other instances of a fleet apply too. */
  onShared: ((change: SharedChange) => void) | undefined;
  /** The response cache stores of the routes that cache. */
  readonly caches: ResponseCaches;

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
    this.caches = new ResponseCaches(config, (worker, message) => supervisor.sendTo(worker, message), (worker) => supervisor.catchUp(worker));
    this.base = config;
    this.states.onChange = (slot, state) => {
      const id = registry.idOf(slot);
      const name = STATE_NAMES[state];
      if (id && name) this.events.add(name, `${id} is ${name}`, id);
    };
  }

  /** Applies a validated config (a reload, an admin change): what DNS found and what is still leaving stays. */
  apply(next: Config): void {
    this.base = next;
    this.compose();
  }

  /**
   * Runs the base config plus what discovery found and the backends still leaving their pool:
   * slots, weights and limits in the table, then every worker.
   */
  private compose(): void {
    const listed = this.withDiscovered(this.base);
    const listedIds = new Set(Object.values(listed.pools).flatMap((p) => p.backends.map((b) => b.id)));
    const next = this.withCarried(listed, listedIds);
    const kept = new Set(Object.values(next.pools).flatMap((p) => p.backends.map((b) => b.id)));
    for (const pool of Object.values(this.config.pools)) {
      for (const backend of pool.backends) {
        if (!kept.has(backend.id)) this.startLeaving(backend.id);
      }
    }
    for (const id of listedIds) {
      // Listed again (a reload, an admin add, DNS): it stays.
      if (this.leaving.delete(id)) this.states.setDrained(this.registry.slotOf(id)!, false);
      const slot = this.registry.slotOf(id);
      // Back after removal: a fresh start, whatever was known of it before.
      if (slot !== undefined && this.table.state(slot) === BACKEND_REMOVED) this.states.reset(slot);
    }
    const plan = this.registry.assign(next, (slot) => this.states.weightShare(slot));
    // The listen addresses, worker count and engine are fixed for the life of the process. TLS
    // stays on or off; its certificates may change (workers re-read the files on every apply).
    const tls = this.config.tls && next.tls ? { ...next.tls, redirect: this.config.tls.redirect } : this.config.tls;
    const applied: Config = { ...next, listen: this.config.listen, tls, workers: this.config.workers, engine: this.config.engine, admin: this.config.admin, tcp: this.config.tcp, fleet: this.config.fleet };
    this.config = applied;
    this.plan = plan;
    this.caches.configure(applied);
    this.supervisor.broadcast({ type: 'config', config: applied, plan });
    this.onApply?.();
  }

  /** Each pool with its discovery sources' backends added, for the sources it still has. */
  private withDiscovered(config: Config): Config {
    if (this.discovered.size === 0) return config;
    const pools = { ...config.pools };
    for (const [name, pool] of Object.entries(pools)) {
      const found = this.discovered.get(name);
      if (!found) continue;
      const ids = new Set(pool.backends.map((b) => b.id));
      const backends = [...pool.backends];
      for (const source of pool.discovery) {
        for (const backend of found.get(sourceKey(source)) ?? []) {
          if (ids.has(backend.id)) continue;
          ids.add(backend.id);
          // A name's weight and max_conns as configured now; its addresses as last resolved.
          backends.push(source.kind === 'dns' ? { ...backend, weight: source.weight, maxConns: source.maxConns } : { ...backend, maxConns: source.maxConns });
        }
      }
      pools[name] = { ...pool, backends };
    }
    return { ...config, pools };
  }

  /** Backends leaving a pool that still exists stay in it, drained, until their last session ends. */
  private withCarried(config: Config, listed: Set<string>): Config {
    let pools: Config['pools'] | undefined;
    for (const [id, entry] of this.leaving) {
      const pool = entry.carry && !entry.finished && !listed.has(id) ? config.pools[entry.carry.pool] : undefined;
      if (!pool) continue;
      pools ??= { ...config.pools };
      pools[pool.name] = { ...pools[pool.name], backends: [...pools[pool.name].backends, entry.carry!] };
    }
    return pools ? { ...config, pools } : config;
  }

  /**
   * What a discovery source found now; addresses that are gone leave the way an admin removal
   * does (drained with the pool's drain settings, out once their last session ends).
   */
  setDiscovered(poolName: string, source: DiscoverySource, backends: BackendConfig[]): void {
    const pool = this.base.pools[poolName];
    if (!pool || !pool.discovery.some((s) => sourceKey(s) === sourceKey(source))) return;
    let found = this.discovered.get(poolName);
    if (!found) this.discovered.set(poolName, (found = new Map()));
    const before = found.get(sourceKey(source)) ?? [];
    const now = new Set(backends.map((b) => b.id));
    if (before.length === backends.length && before.every((b, i) => b.id === backends[i].id && b.weight === backends[i].weight)) return;
    found.set(sourceKey(source), backends);
    for (const gone of before) {
      if (now.has(gone.id)) continue;
      const current = this.config.pools[poolName]?.backends.find((b) => b.id === gone.id);
      if (current) this.startLeaving(gone.id, current);
      this.logger.info({ backend: gone.id, source: gone.source }, 'backend no longer in DNS: draining');
      this.events.add('dns', `${gone.id} is no longer in ${gone.source}: draining`, gone.id);
    }
    for (const backend of backends) {
      if (before.some((b) => b.id === backend.id)) continue;
      this.logger.info({ backend: backend.id, source: backend.source }, 'backend found in DNS: joining');
      this.events.add('joined', `${backend.id} found in ${backend.source}`, backend.id);
    }
    this.compose();
  }

  /**
   * Writes a backend's weight share (an agent's percentage, a degraded health check) into the
   * table at once: every worker's pickers see it on their next pick.
   */
  setShare(id: string, change: { agentPercent?: number; degradedShare?: number }): void {
    const slot = this.plan.backendSlots[id];
    if (slot === undefined) return;
    const share = this.states.setShare(slot, change);
    if (share !== undefined) this.registry.writeWeight(slot, this.find(id).weight, share);
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
    this.events.add('reload', 'config reloaded');
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
      else if (change.op === 'remove') this.removeListed(this.configured(change.id));
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
      ...(backend.source && { source: backend.source }),
      state: STATE_NAMES[table.state(slot)] ?? 'down',
      weight: backend.weight,
      effective_weight: table.weight(slot) / FULL_SHARE,
      ...(this.checkNotes.has(backend.id) && { check: this.checkNotes.get(backend.id) }),
      ...(this.agents.has(backend.id) && { agent: this.states.agentView(slot) }),
      active: table.active(slot),
      requests: Number(table.requests(slot)),
      failures: Number(table.failures(slot)),
    };
  }

  /** The last check's reason for a backend (failed or degraded), or none when it passed plainly. */
  readonly checkNotes = new Map<string, string>();
  /** Backends an agent check has answered for. */
  readonly agents = new Set<string>();

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
    this.apply(this.withPool(poolName, [...this.base.pools[poolName].backends, backend]));
    return this.view(backend);
  }

  setWeight(id: string, body: unknown): BackendView {
    this.configured(id);
    const weight = (body as { weight?: unknown } | null)?.weight;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1000) {
      throw new ControlError(400, `weight: expected a whole number from 1 to 1000, got ${JSON.stringify(weight)}`);
    }
    this.applyWeight(id, weight);
    this.onShared?.({ op: 'weight', id, weight });
    return this.view(this.find(id));
  }

  private applyWeight(id: string, weight: number): void {
    const backend = this.configured(id);
    this.apply(this.withPool(backend.pool, this.base.pools[backend.pool].backends.map((b) => (b.id === id ? { ...b, weight } : b))));
  }

  /** A backend of the config as given; one found by DNS is changed through DNS, not the admin API. */
  private configured(id: string): BackendConfig {
    const backend = this.find(id);
    if (backend.source) throw new ControlError(409, `backend ${id} comes from ${backend.source}: change its DNS records (its weight and removal follow them)`);
    return backend;
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
    const backend = this.configured(id);
    this.removeListed(backend);
    this.onShared?.({ op: 'remove', id });
    return this.view(backend);
  }

  /** Out of the config as given, and carried in its pool until its last session ends. */
  private removeListed(backend: BackendConfig): void {
    this.startLeaving(backend.id, backend);
    const listed = this.base.pools[backend.pool]?.backends;
    if (listed?.some((b) => b.id === backend.id)) this.apply(this.withPool(backend.pool, listed.filter((b) => b.id !== backend.id)));
  }

  private withPool(poolName: string, backends: BackendConfig[]): Config {
    return { ...this.base, pools: { ...this.base.pools, [poolName]: { ...this.base.pools[poolName], backends } } };
  }

  private startLeaving(id: string, carry?: BackendConfig): void {
    const slot = this.registry.slotOf(id);
    if (slot === undefined || this.leaving.has(id)) return;
    this.states.setDrained(slot, true);
    this.leaving.set(id, { slot, carry });
    this.removalTimer ??= setInterval(() => this.finishLeaving(), REMOVAL_POLL_MS);
  }

  private finishLeaving(): void {
    for (const [id, entry] of this.leaving) {
      const { slot } = entry;
      if (this.table.active(slot) > 0) continue;
      // Still listed as leaving while the pool is recomposed without it, so that it is not started leaving again.
      entry.finished = true;
      if (entry.carry) this.compose();
      this.leaving.delete(id);
      this.table.setState(slot, BACKEND_REMOVED);
      this.states.reset(slot);
      this.logger.info({ backend: id }, 'backend removed');
      this.events.add('removed', `${id} left its pool`, id);
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
