// The primary's loops over the fleet: active health checks, outlier ejection, closing the
// sessions of drained backends after their drain timeout, and active rebalancing.

import { connect } from 'node:net';
import { Client, request } from 'undici';
import { WebSocket } from 'ws';
import type { BackendConfig, HealthConfig, PoolConfig } from '../config/schema.js';
import { RiseFall } from '../core/health/riseFall.js';
import { tlsConnectOptions, type TlsConnectOptions } from '../core/upstreamTls.js';
import { BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';
import type { Supervisor } from './supervisor.js';

const LOOP_MS = 100;

interface Check {
  key: string;
  timer: NodeJS.Timeout;
  verdict: RiseFall;
  stopped: boolean;
}

interface Outlier {
  ejections: number;
  lastEjectedAt: number;
  ejectedUntil: number;
  /** Until then, one failure re-ejects it (the half-open trial after an ejection). */
  trialUntil: number;
}

/** One active check of `backend`: resolves true when it passes. Never rejects. */
export async function runCheck(backend: BackendConfig, health: HealthConfig, tls?: TlsConnectOptions): Promise<boolean> {
  const host = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
  try {
    if (health.type === 'tcp') {
      // A TCP check of a TLS backend is a TCP connect too: the handshake is the HTTP check's job.
      return await new Promise<boolean>((resolve) => {
        const socket = connect({ host: backend.host, port: backend.port, timeout: health.timeout });
        socket.once('connect', () => (socket.destroy(), resolve(true)));
        socket.once('timeout', () => (socket.destroy(), resolve(false)));
        socket.once('error', () => resolve(false));
      });
    }
    if (health.type === 'websocket') {
      return await new Promise<boolean>((resolve) => {
        const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://${host}:${backend.port}${health.path}`, { ...tls, handshakeTimeout: health.timeout });
        ws.once('open', () => (ws.close(1000), resolve(true)));
        ws.once('error', () => resolve(false));
        ws.once('unexpected-response', (_req, res) => (res.resume(), ws.terminate(), resolve(false)));
      });
    }
    // A TLS check makes a new connection each round, so that the handshake is checked every time.
    const client = tls ? new Client(backend.origin, { connect: tls }) : undefined;
    try {
      const res = await request(`${backend.origin}${health.path}`, {
        dispatcher: client,
        headersTimeout: health.timeout,
        bodyTimeout: health.timeout,
        signal: AbortSignal.timeout(health.timeout),
        headers: { 'user-agent': 'fairway-health-check' },
      });
      await res.body.dump();
      return res.statusCode >= health.expectStatus[0] && res.statusCode <= health.expectStatus[1];
    } finally {
      void client?.destroy().catch(() => undefined);
    }
  } catch {
    return false;
  }
}

export class Lifecycle {
  private readonly checks = new Map<string, Check>();
  private readonly outliers = new Map<number, Outlier>();
  /** drainingSince value for which the sessions of a slot were already told to close. */
  private readonly drainClosed = new Map<number, number>();
  private readonly shedTokens = new Map<string, number>();
  /** Sessions asked to close by rebalancing and not yet gone: slot → [count, asked at]. */
  private readonly shedPending = new Map<number, [number, number]>();
  private readonly loop: NodeJS.Timeout;
  private lastTick = Date.now();

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
  ) {
    control.onApply = () => this.syncChecks();
    this.syncChecks();
    this.loop = setInterval(() => this.tick(), LOOP_MS);
  }

  /** Starts, keeps or stops the checks so that they follow the current backends and settings. */
  private syncChecks(): void {
    const wanted = new Map<string, [BackendConfig, HealthConfig, TlsConnectOptions | undefined]>();
    for (const pool of Object.values(this.control.config.pools)) {
      if (!pool.health) continue;
      for (const backend of pool.backends) wanted.set(backend.id, [backend, pool.health, tlsConnectOptions(pool, backend)]);
    }
    for (const [id, check] of this.checks) {
      const want = wanted.get(id);
      if (!want || JSON.stringify(want.slice(1)) !== check.key) {
        check.stopped = true;
        clearTimeout(check.timer);
        this.checks.delete(id);
        // No checks any more: nothing says it is down.
        if (!want) {
          const slot = this.control.plan.backendSlots[id];
          if (slot !== undefined) this.control.states.setHealthy(slot, true);
        }
      }
    }
    for (const [id, [backend, health, tls]] of wanted) {
      if (this.checks.has(id)) continue;
      const slot = this.control.plan.backendSlots[id];
      const check: Check = { key: JSON.stringify([health, tls]), timer: undefined as unknown as NodeJS.Timeout, verdict: new RiseFall(health.rise, health.fall, this.control.states.isHealthy(slot)), stopped: false };
      const schedule = (delay: number) => {
        check.timer = setTimeout(async () => {
          const passed = await runCheck(backend, health, tls);
          if (check.stopped) return;
          if (check.verdict.record(passed)) {
            // Passing active checks also end a passive ejection (as Envoy does by default).
            if (check.verdict.healthy) this.endEjection(slot);
            this.control.states.setHealthy(slot, check.verdict.healthy);
            this.logger.warn({ backend: id, healthy: check.verdict.healthy }, check.verdict.healthy ? 'backend is up again (health checks pass)' : 'backend is down (health checks fail)');
          }
          // ±10% jitter on every round, so checks of many backends drift apart.
          schedule(health.interval * (0.9 + Math.random() * 0.2));
        }, delay);
        check.timer.unref();
      };
      // The first round of checks is spread over one interval.
      schedule(Math.random() * Math.min(health.interval, 1000));
      this.checks.set(id, check);
    }
  }

  private endEjection(slot: number): void {
    const record = this.outliers.get(slot);
    if (!record || record.ejectedUntil === 0) return;
    record.ejectedUntil = 0;
    record.trialUntil = 0;
    this.table.resetStreaks(slot);
    this.control.states.setEjected(slot, false);
  }

  private tick(): void {
    const now = Date.now();
    const elapsed = (now - this.lastTick) / 1000;
    this.lastTick = now;
    for (const pool of Object.values(this.control.config.pools)) {
      this.ejectOutliers(pool, now);
      this.closeDrained(pool, now);
      if (pool.rebalance) this.rebalance(pool, now, elapsed);
    }
  }

  private ejectOutliers(pool: PoolConfig, now: number): void {
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

  /** After drain.timeout, the sessions still open on a drained backend are closed, spread out. */
  private closeDrained(pool: PoolConfig, now: number): void {
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

  /** Sheds sessions from backends above max_skew × the pool's average, at most `rate` per second. */
  private rebalance(pool: PoolConfig, now: number, elapsed: number): void {
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
    const limit = Math.floor(maxSkew * average);
    let tokens = Math.min(rate, (this.shedTokens.get(pool.name) ?? 0) + rate * elapsed);
    for (const [i, slot] of slots.entries()) {
      const excess = loads[i] - Math.max(limit, Math.ceil(average));
      if (excess <= 0 || average < 1) continue;
      const count = Math.min(excess, Math.floor(tokens));
      if (count <= 0) break;
      tokens -= count;
      this.shedPending.set(slot, [pending(slot) + count, now]);
      table.countSheds(slot, count);
      this.logger.info({ backend: pool.backends.find((b) => this.control.plan.backendSlots[b.id] === slot)?.id, count, active: loads[i], average }, 'rebalancing: closing sessions with 1012');
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
    this.shedTokens.set(pool.name, tokens);
  }

  close(): void {
    clearInterval(this.loop);
    for (const check of this.checks.values()) {
      check.stopped = true;
      clearTimeout(check.timer);
    }
    this.checks.clear();
  }
}
