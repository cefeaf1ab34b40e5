// This instance's part in a fleet (docs/fleet.md): it publishes its counts to Redis and folds the
// other instances' into the remote column of the table, makes the workers' fleet-exact session
// picks over the one Redis connection, and shares admin changes. Redis holds nothing this
// instance cannot rebuild: whenever it was lost, the instance's exact local truth replaces it.

import { Redis } from 'ioredis';
import type { SessionPlan } from '../core/balancers/picker.js';
import { ALL_FULL } from '../core/balancers/picker.js';
import type { FleetConfig } from '../config/types.js';
import { FLEET_DEGRADED, FLEET_UP, LATENCY_BUCKETS, type StateTable } from '../core/state/stateTable.js';
import type { FleetVerdict, WorkerMessage } from '../engine/messages.js';
import type { Bucket } from '../core/limits/clientLimits.js';
import { PICK_LOCALLY } from '../dataplane/fleetSessions.js';
import type { Logger } from '../log.js';
import { validateBackend } from '../config/schema.js';
import type { ControlPlane, SharedChange } from './controlPlane.js';
import { LIMIT, PICK, PREFIX, RELEASE, REPLACE, SYNC, TAKE } from './fleetScripts.js';
import type { Supervisor } from './supervisor.js';
import type { InstanceRates } from './history.js';
import type { SlotRegistry } from '../core/state/slotRegistry.js';

/** An instance silent for this many heartbeats is dead. */
const HEARTBEATS_TO_DEATH = 3;
const ADMIN_CHANNEL = `${PREFIX}admin`;
const KEY = {
  instances: `${PREFIX}instances`,
  sessions: `${PREFIX}sessions`,
  held: (name: string) => `${PREFIX}held:${name}`,
  active: (name: string) => `${PREFIX}active:${name}`,
  rates: (name: string) => `${PREFIX}rates:${name}`,
  drained: `${PREFIX}admin:drained`,
  weight: `${PREFIX}admin:weight`,
  added: `${PREFIX}admin:added`,
  removed: `${PREFIX}admin:removed`,
};


/** What the admin API and /metrics show of the fleet. */
export interface FleetView {
  name: string;
  degraded: boolean;
  /** Live instances, this one included. */
  instances: string[];
  /** Per backend: what each instance holds there (sessions + requests), and the fleet-counted sessions. */
  backends: { id: string; instances: Record<string, number>; total: number; sessions: number }[];
  /** Each other live instance's last second, as it published it (none until it has, none while degraded). */
  rates: Record<string, InstanceRates>;
}

/** Another instance's rates as Redis returned them, or undefined when absent or not of this shape. */
function parseRates(raw: unknown): InstanceRates | undefined {
  if (typeof raw !== 'string') return undefined;
  try {
    const rates = JSON.parse(raw) as InstanceRates;
    // Counts of an instance whose latency buckets differ (another version) would skew the sum.
    const counts = [rates.rps, rates.errors, rates.opened, rates.closed, ...(Array.isArray(rates.latency) ? rates.latency : [])];
    const valid = Array.isArray(rates.latency) && rates.latency.length === LATENCY_BUCKETS.length + 1 && counts.every((n) => Number.isFinite(n) && n >= 0);
    return valid ? rates : undefined;
  } catch {
    return undefined;
  }
}

class Timeout extends Error {}

/** `promise`, or a Timeout rejection after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Timeout(`no answer from Redis within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

function pairs(flat: unknown): Map<string, number> {
  const map = new Map<string, number>();
  const list = flat as string[];
  for (let i = 0; i + 1 < list.length; i += 2) map.set(list[i], Number(list[i + 1]));
  return map;
}

export class FleetAgent {
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  /** Fleet-counted sessions each worker holds, by slot: this instance's exact truth. */
  private readonly held = new Map<number, Int32Array>();
  private timer: NodeJS.Timeout | null = null;
  private syncing = false;
  /** Session picks go to Redis: the fleet view is rebuilt and current. */
  private up = false;
  /**
   * Session counts go to Redis: set the moment the replace that rebuilds this instance's counts
   * is sent (every later command follows it on the one connection, in order), cleared by any
   * failure. While clear, counts change only here, and the next rebuild sends the truth.
   */
  private sending = false;
  /** Bumped by every failure, so that a rebuild that overlapped one does not go up. */
  private failures = 0;
  private stopped = false;
  private lastError = '';
  /** Times this instance fell back to local picks. */
  degradations = 0;
  private view: { instances: Map<string, Map<string, number>>; sessions: Map<string, number>; rates: Map<string, InstanceRates> } = { instances: new Map(), sessions: new Map(), rates: new Map() };
  /** This instance's last second (History), published with every sync. */
  private ownRates = '';

  constructor(
    private readonly config: FleetConfig,
    private readonly table: StateTable,
    private readonly control: ControlPlane,
    private readonly registry: SlotRegistry,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
  ) {
    const options = {
      // A command is sent only while connected, and never again after a reconnect: an unknown
      // outcome is settled by replacing this instance's counts with its truth instead.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.max(1000, config.timeout),
      retryStrategy: (times: number) => Math.min(100 * times, 1000),
      password: new URL(config.redis).password === '' ? process.env.FAIRWAY_REDIS_PASSWORD : undefined,
      lazyConnect: true,
    };
    this.redis = new Redis(config.redis, options);
    this.redis.on('error', (err: Error) => this.degrade(err.message));
    this.redis.on('close', () => this.degrade('connection to Redis closed'));
    this.subscriber = new Redis(config.redis, { ...options, enableOfflineQueue: true, autoResubscribe: false });
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('ready', () => void this.subscriber.subscribe(ADMIN_CHANNEL).catch(() => undefined));
    this.subscriber.on('message', (_channel: string, text: string) => this.onAdminMessage(text));
    control.onShared = (change) => this.share(change);
    table.setFleetState(FLEET_DEGRADED);
  }

  /** Connects in the background: until Redis answers, picks are local. */
  start(): void {
    this.redis.connect().catch(() => undefined);
    this.subscriber.connect().catch(() => undefined);
    this.timer = setInterval(() => void this.tick(), this.config.sync);
    void this.tick();
  }

  get degraded(): boolean {
    return !this.up;
  }

  /** When this instance last stopped sharing the fleet view, and whether it then forgot the others' counts. */
  private lostAt = Date.now();
  private remoteForgotten = false;

  /**
   * Remote counts older than 3 heartbeats are no better than a dead instance's: after that long
   * without Redis, this instance picks from its own counts alone.
   */
  private forgetStaleRemote(): void {
    if (this.up || this.remoteForgotten || Date.now() - this.lostAt < HEARTBEATS_TO_DEATH * this.config.heartbeat) return;
    this.remoteForgotten = true;
    for (const slot of Object.values(this.control.plan.backendSlots)) this.table.setRemote(slot, 0);
    this.logger.warn('fleet degraded for 3 heartbeats: the other instances\' counts are forgotten, picks use this instance\'s own');
  }

  private degrade(reason: string): void {
    if (this.stopped) return;
    if (this.up) this.lostAt = Date.now();
    this.sending = false;
    this.failures++;
    this.table.setFleetState(FLEET_DEGRADED);
    if (!this.up) {
      if (reason !== this.lastError) this.logger.debug({ reason }, 'fleet still degraded');
      this.lastError = reason;
      return;
    }
    this.up = false;
    this.degradations++;
    this.lastError = reason;
    this.logger.warn({ reason }, 'fleet degraded: Redis is not answering; picks use local counts, and the last known remote ones for up to 3 heartbeats, until it does');
  }

  private get ready(): boolean {
    return this.redis.status === 'ready';
  }

  /**
   * Runs a script with EVAL, never EVALSHA: a client that meets NOSCRIPT sends the command again
   * behind those sent since, and these scripts must run in the order they were sent.
   */
  private run(script: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.redis.eval(script, keys.length, ...keys, ...args);
  }

  private get mine(): string[] {
    return [KEY.sessions, KEY.held(this.config.name), KEY.instances];
  }

  /** Every sync interval: publish and fold counts, or, while degraded, rebuild once Redis answers. */
  private async tick(): Promise<void> {
    this.forgetStaleRemote();
    if (this.syncing || this.stopped || !this.ready) return;
    this.syncing = true;
    try {
      if (!this.up) await this.rebuild();
      else if (!(await this.sync())) await this.rebuild();
    } catch (err) {
      this.degrade((err as Error).message);
    } finally {
      this.syncing = false;
    }
  }

  /** Replaces what Redis holds of this instance with its truth, reloads shared admin state, then goes up. */
  private async rebuild(): Promise<void> {
    // Picks answered from here until the rebuild is done go local: one sent before the replace
    // below is wiped by it, and the worker's local pick is counted after it.
    if (this.up) this.lostAt = Date.now();
    this.up = false;
    this.table.setFleetState(FLEET_DEGRADED);
    const failures = this.failures;
    const truth: (string | number)[] = [];
    const totals = this.heldTotals();
    for (const [slot, count] of totals) truth.push(this.idOf(slot), count);
    const replaced = this.run(REPLACE, [KEY.instances, KEY.sessions, KEY.held(this.config.name), KEY.active(this.config.name), KEY.rates(this.config.name)], [this.config.name, 1, ...truth]);
    this.sending = true;
    await within(replaced, this.syncTimeout);
    await this.storeDrains();
    await this.loadSharedAdmin();
    await this.sync();
    if (this.failures !== failures) throw new Error('Redis failed during the rebuild');
    this.up = true;
    this.remoteForgotten = false;
    this.table.setFleetState(FLEET_UP);
    this.logger.info({ instances: [...this.view.instances.keys()], sessions: totals.size === 0 ? 0 : [...totals.values()].reduce((a, b) => a + b, 0) }, 'fleet up: counts published and shared through Redis');
  }

  /** Publishes this instance's counts, folds in the others'; false when Redis had lost this instance. */
  private async sync(): Promise<boolean> {
    const counts: (string | number)[] = [];
    const slots = this.control.plan.backendSlots;
    for (const id of Object.keys(slots)) {
      const active = this.table.active(slots[id]);
      if (active > 0) counts.push(id, active);
    }
    const deadAfter = HEARTBEATS_TO_DEATH * this.config.heartbeat;
    const reply = (await within(this.run(SYNC, [KEY.instances, KEY.sessions], [this.config.name, deadAfter, PREFIX, this.ownRates, ...counts]), this.syncTimeout)) as unknown[];
    const instances = new Map<string, Map<string, number>>();
    const rates = new Map<string, InstanceRates>();
    for (let i = 2; i + 2 < reply.length; i += 3) {
      const name = String(reply[i]);
      instances.set(name, pairs(reply[i + 1]));
      const published = parseRates(reply[i + 2]);
      if (published && name !== this.config.name) rates.set(name, published);
    }
    this.view = { instances, sessions: pairs(reply[1]), rates };
    const remote = new Map<string, number>();
    for (const [name, active] of instances) {
      if (name === this.config.name) continue;
      for (const [id, count] of active) remote.set(id, (remote.get(id) ?? 0) + count);
    }
    for (const id of Object.keys(slots)) this.table.setRemote(slots[id], remote.get(id) ?? 0);
    return reply[0] === 1;
  }

  /** A sync is off every client's path: it may wait longer than a pick. */
  private get syncTimeout(): number {
    return Math.max(this.config.timeout, this.config.heartbeat);
  }

  private heldTotals(): Map<number, number> {
    const totals = new Map<number, number>();
    for (const row of this.held.values()) {
      row.forEach((count, slot) => {
        if (count > 0) totals.set(slot, (totals.get(slot) ?? 0) + count);
      });
    }
    return totals;
  }

  private rowOf(worker: number): Int32Array {
    let row = this.held.get(worker);
    if (!row) this.held.set(worker, (row = new Int32Array(this.table.backends)));
    return row;
  }

  private idOf(slot: number): string {
    return this.registry.idOf(slot) ?? `slot-${slot}`;
  }

  /** A worker's message about a session (see WorkerMessage). */
  onWorkerMessage(worker: number, message: WorkerMessage): void {
    if (message.type === 'fleet-pick') void this.pick(worker, message.id, message.plan);
    else if (message.type === 'fleet-held') this.count(worker, message.slot, 1);
    else if (message.type === 'fleet-release') this.count(worker, message.slot, -1);
    else if (message.type === 'fleet-limit') void this.limit(worker, message.id, message.key, message.requests, message.sessions);
  }

  /** Takes a client's tokens of a scope: fleet route in Redis; null to the worker when Redis cannot answer in time. */
  private async limit(worker: number, id: number, key: string, requests: Bucket | undefined, sessions: Bucket | undefined): Promise<void> {
    let verdict: FleetVerdict | null = null;
    if (this.ready) {
      try {
        const args = [requests?.interval ?? 0, requests?.tolerance ?? 0, sessions?.interval ?? 0, sessions?.tolerance ?? 0];
        const [reason, wait] = (await within(this.run(LIMIT, [`${PREFIX}limit:${key}:r`, `${PREFIX}limit:${key}:s`], args), this.config.timeout)) as [string, string?];
        verdict = reason === 'ok' ? { allowed: true } : { allowed: false, reason: reason as 'requests' | 'new-sessions', retryAfterMs: Number(wait) };
      } catch (err) {
        this.degrade((err as Error).message);
      }
    }
    this.supervisor.sendTo(worker, { type: 'fleet-limited', id, verdict });
  }

  private async pick(worker: number, id: number, plan: SessionPlan): Promise<void> {
    let slot = PICK_LOCALLY;
    const launch = this.launches.get(worker) ?? 0;
    if (this.up && this.ready && plan.slots.every((s) => s >= 0)) {
      const args: (string | number)[] = [this.config.name, plan.ring ? 1 : 0, plan.balanceFactor];
      for (let i = 0; i < plan.slots.length; i++) args.push(this.idOf(plan.slots[i]), plan.weights[i], plan.maxConns[i]);
      try {
        const index = Number(await within(this.run(PICK, this.mine, args), this.config.timeout));
        if (index === -2) throw new Error('this instance was removed from the fleet as dead: rebuilding');
        const taken = index >= 0 ? plan.slots[index] : ALL_FULL;
        if ((this.launches.get(worker) ?? 0) !== launch) {
          // The worker died meanwhile: nobody holds what Redis took.
          if (taken >= 0 && this.sending) this.send(RELEASE, this.idOf(taken), 1);
          return;
        }
        // Not up (degraded, or rebuilding): the worker picks locally and counts its pick, and the
        // rebuild's replace (sent after this pick) settles what Redis holds of this instance.
        if (this.up) {
          slot = taken;
          if (slot >= 0) this.rowOf(worker)[slot]++;
        }
      } catch (err) {
        this.degrade((err as Error).message);
        slot = PICK_LOCALLY;
      }
    }
    if ((this.launches.get(worker) ?? 0) === launch) this.supervisor.sendTo(worker, { type: 'fleet-picked', id, slot });
  }

  /** Launches of each worker that died: a pick answered after its worker died belongs to nobody. */
  private readonly launches = new Map<number, number>();

  /** Sends a TAKE or RELEASE of `count` sessions on backend `id`; a failure degrades. */
  private send(script: string, id: string, count: number): void {
    within(this.run(script, this.mine, [this.config.name, id, count]), this.syncTimeout).then(
      (result) => {
        if (script === TAKE && Number(result) === 0) this.degrade('this instance was removed from the fleet as dead: rebuilding');
      },
      (err: Error) => this.degrade(err.message),
    );
  }

  /** A session the fleet counts began (+1) or ended (-1) on `slot` in `worker`. */
  private count(worker: number, slot: number, change: 1 | -1): void {
    const row = this.rowOf(worker);
    // A worker's end of a session it was never counted for (it died and was reconciled) changes nothing.
    if (change < 0 && row[slot] === 0) return;
    row[slot] += change;
    if (this.sending) this.send(change > 0 ? TAKE : RELEASE, this.idOf(slot), 1);
  }

  /** A worker's thread has exited: the sessions it held leave the fleet's counts. */
  onWorkerDied(worker: number): void {
    this.launches.set(worker, (this.launches.get(worker) ?? 0) + 1);
    const row = this.held.get(worker);
    if (!row) return;
    this.held.delete(worker);
    if (!this.sending) return;
    row.forEach((count, slot) => {
      if (count > 0) this.send(RELEASE, this.idOf(slot), count);
    });
  }

  /** Stores an admin change made here and tells the other instances. */
  private share(change: SharedChange): void {
    if (!this.ready) {
      this.logger.warn({ change }, 'fleet degraded: this admin change applies to this instance only');
      return;
    }
    const stored = this.store(change);
    stored
      .then(() => this.redis.publish(ADMIN_CHANNEL, JSON.stringify({ from: this.config.name, change })))
      .catch((err: Error) => this.logger.warn({ change, err: err.message }, 'admin change not shared with the fleet'));
  }

  /** Keeps the change where instances that start later find it (a reload is each instance's own file). */
  private store(change: SharedChange): Promise<unknown> {
    const redis = this.redis;
    switch (change.op) {
      case 'drain':
        return redis.hset(KEY.drained, change.id, 1);
      case 'undrain':
        return redis.hdel(KEY.drained, change.id);
      case 'weight':
        return redis.hset(KEY.weight, change.id, change.weight);
      case 'add': {
        const id = validateBackend(change.pool, change.body).id;
        return redis.multi().hset(KEY.added, id, JSON.stringify({ pool: change.pool, body: change.body })).hdel(KEY.removed, id).exec();
      }
      case 'remove':
        return redis.multi().hset(KEY.removed, change.id, 1).hdel(KEY.added, change.id).hdel(KEY.drained, change.id).exec();
      case 'reload':
        return Promise.resolve(0);
    }
  }

  private onAdminMessage(text: string): void {
    let message: { from?: string; change?: SharedChange };
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.from === this.config.name || !message.change) return;
    this.control.applyShared(message.change);
  }

  /** Stores the drains this instance applies, so that a Redis restarted empty learns them again. */
  private async storeDrains(): Promise<void> {
    const drained = Object.keys(this.control.plan.backendSlots).filter((id) => this.control.isDrained(id));
    if (drained.length > 0) await within(this.redis.hset(KEY.drained, ...drained.flatMap((id) => [id, 1])), this.syncTimeout);
  }

  /** Applies the stored admin state: what was drained or weighted on any instance, before this one started too. */
  private async loadSharedAdmin(): Promise<void> {
    const [added, removed, drained, weights] = await within(Promise.all([KEY.added, KEY.removed, KEY.drained, KEY.weight].map((key) => this.redis.hgetall(key))), this.syncTimeout);
    for (const [id, text] of Object.entries(added)) {
      const { pool, body } = JSON.parse(text) as { pool: string; body: unknown };
      if (!this.control.has(pool, id)) this.control.applyShared({ op: 'add', pool, body });
    }
    for (const id of Object.keys(removed)) if (id in this.control.plan.backendSlots) this.control.applyShared({ op: 'remove', id });
    const known = this.control.plan.backendSlots;
    for (const id of Object.keys(drained)) if (id in known && !this.control.isDrained(id)) this.control.applyShared({ op: 'drain', id });
    for (const [id, weight] of Object.entries(weights)) {
      if (id in known && this.control.find(id).weight !== Number(weight)) this.control.applyShared({ op: 'weight', id, weight: Number(weight) });
    }
  }

  /** What the admin API and /metrics show. */
  snapshot(): FleetView {
    const backends: FleetView['backends'] = [];
    const live = [...this.view.instances].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
    for (const id of Object.keys(this.control.plan.backendSlots)) {
      const instances: Record<string, number> = {};
      let total = 0;
      for (const [name, active] of live) {
        const count = name === this.config.name ? this.table.active(this.control.plan.backendSlots[id]) : (active.get(id) ?? 0);
        instances[name] = count;
        total += count;
      }
      backends.push({ id, instances, total, sessions: this.view.sessions.get(id) ?? 0 });
    }
    // Rates only while shared: degraded, the last ones seen would be drawn as if current.
    const rates = this.up ? Object.fromEntries(live.filter(([name]) => this.view.rates.has(name)).map(([name]) => [name, this.view.rates.get(name)!])) : {};
    return { name: this.config.name, degraded: !this.up, instances: live.map(([name]) => name), backends, rates };
  }

  /** This instance's last second, for the other instances' dashboards: sent with the next sync. */
  shareRates(rates: InstanceRates): void {
    this.ownRates = JSON.stringify(rates);
  }

  /** Leaves the fleet: this instance's counts go at once instead of after 3 heartbeats. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.table.setFleetState(FLEET_DEGRADED);
    if (this.ready) {
      await within(this.run(REPLACE, [KEY.instances, KEY.sessions, KEY.held(this.config.name), KEY.active(this.config.name), KEY.rates(this.config.name)], [this.config.name, 0]), this.syncTimeout).catch(() => undefined);
    }
    this.redis.disconnect();
    this.subscriber.disconnect();
  }
}
