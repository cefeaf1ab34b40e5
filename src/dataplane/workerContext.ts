// What one worker thread holds while serving: routing, pickers, upstream clients, open sessions.

import type { BackendConfig, Config } from '../config/types.js';
import { PICKERS } from '../core/balancers/registry.js';
import type { ClientLimits } from '../core/limits/clientLimits.js';
import { addressing, type Addressing } from '../core/clientAddress.js';
import type { HeadRules } from '../core/forwarding.js';
import { Router } from '../core/routing.js';
import { tlsConnectOptions } from '../core/upstreamTls.js';
import type { SlotPlan } from '../core/state/slotRegistry.js';
import type { StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import { PoolRuntime } from './admission.js';
import type { CacheChannel } from './responseCache.js';
import type { FleetSessions } from './fleetSessions.js';
import { UpstreamHttpPool } from './upstreamHttp.js';

/** Idle upstream connections close after this long: below the 5 s of Node's and many servers' keep-alive. */
const KEEP_ALIVE_MS = 4_000;

/** A long-lived session the worker can end (shutdown, drain, rebalance): a WebSocket session or a TCP connection. */
export interface OpenSession {
  /** Ends the session from our side with a WebSocket close code. */
  shutdown(code: number, reason: string): void;
  /** Checks that the backend is still alive (called every ping interval). */
  keepalive(): void;
  /** The backend's slot, or -1 while none is admitted. */
  readonly backendSlot: number;
  /** True once the client's upgrade is done and until the session ends. */
  readonly isOpen: boolean;
  readonly startedAt: number;
  /** The client's address. */
  readonly clientAddress: string;
}

export class WorkerContext implements HeadRules {
  router!: Router;
  addressing!: Addressing;
  pools = new Map<string, PoolRuntime>();
  /** Indexed by state-table slot. */
  readonly backends: BackendConfig[] = [];
  readonly upstreams: UpstreamHttpPool[] = [];
  /** What each upstream client was made with, to tell when a reload changes it. */
  private readonly upstreamSettings: string[] = [];
  readonly webSockets = new Set<OpenSession>();
  /** Connections of the TCP listeners this worker runs. */
  readonly tcpSessions = new Set<OpenSession>();
  /** The fleet's session picks and rate limits, with a `fleet` section. */
  fleet: FleetSessions | undefined;
  /** The primary's response cache stores, when a route caches. */
  cache: CacheChannel | undefined;

  /** What a session's lease counts in the fleet through, when session picks are fleet-exact. */
  get sessionFleet(): FleetSessions | undefined {
    return this.fleet?.exactSessions ? this.fleet : undefined;
  }
  inFlightHttp = 0;
  /** HTTP requests and upgrades this worker read; published to the table every 250 ms. */
  requestsRead = 0;
  shuttingDown = false;
  /** Scheme clients use, for X-Forwarded-Proto. */
  readonly proto: 'http' | 'https';

  constructor(
    readonly worker: number,
    readonly table: StateTable,
    /** Per-client rate limits and session counts, shared with the other workers. */
    readonly limits: ClientLimits,
    public config: Config,
    plan: SlotPlan,
    readonly logger: Logger,
    readonly testHooks: boolean,
  ) {
    this.proto = config.tls ? 'https' : 'http';
    this.apply(config, plan);
  }

  /**
   * Takes a new config (start, reload, admin API): new routes and pickers; an upstream client for
   * each new backend; clients and open sessions of kept backends untouched.
   */
  apply(config: Config, plan: SlotPlan): void {
    const { table, worker } = this;
    const pools = new Map<string, PoolRuntime>();
    for (const pool of Object.values(config.pools)) {
      const members = pool.backends.map((b) => ({ slot: plan.backendSlots[b.id], id: b.id }));
      const poolSlot = plan.poolSlots[pool.name];
      const picker = PICKERS[pool.algorithm]({ table, members, poolSlot, worker, pool });
      pools.set(pool.name, new PoolRuntime(pool, poolSlot, picker, table, worker, plan.backendSlots));
      for (const backend of pool.backends) {
        const slot = plan.backendSlots[backend.id];
        this.backends[slot] = backend;
        // A backend whose connection settings changed (reload) gets a new client; the old one
        // finishes what it has in flight.
        const connect = tlsConnectOptions(pool, backend);
        const { connect: connectTimeout, response, idle } = config.timeouts;
        const settings = JSON.stringify([backend.origin, connectTimeout, response, idle, config.timeouts.requestBody, connect]);
        if (this.upstreams[slot] && this.upstreamSettings[slot] === settings) continue;
        this.upstreams[slot]?.close();
        this.upstreamSettings[slot] = settings;
        this.upstreams[slot] = new UpstreamHttpPool({
          host: backend.host,
          port: backend.port,
          tls: connect,
          connectTimeout: config.timeouts.connect,
          responseTimeout: config.timeouts.response,
          idleTimeout: config.timeouts.idle,
          keepAliveTimeout: KEEP_ALIVE_MS,
          requestBodyTimeout: config.timeouts.requestBody,
        });
      }
    }
    this.config = config;
    this.router = new Router(config);
    this.addressing = addressing(config.trustedProxies, config.proxyProtocol);
    this.pools = pools;
  }

  get maxRequestLine(): number {
    return this.config.limits.maxRequestLine;
  }

  get maxRequestHead(): number {
    return this.config.limits.maxRequestHead;
  }

  get accessLog(): boolean {
    return this.config.log.access;
  }

  /** Refuses requests still waiting for a backend (shutdown). */
  closeQueues(): void {
    for (const pool of this.pools.values()) pool.close();
  }

  /** Cuts every upstream HTTP connection (shutdown, after the grace period). */
  closeUpstreams(): void {
    for (const upstream of this.upstreams) upstream?.destroy();
  }
}
