// Active health checks, run by the primary: one timer per checked backend, rise/fall verdicts
// written into the shared table through the control plane.

import { connect } from 'node:net';
import type { BackendConfig, HealthConfig } from '../config/types.js';
import { RiseFall } from '../core/health/riseFall.js';
import { tlsConnectOptions, type TlsConnectOptions } from '../core/upstreamTls.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';

interface Check {
  key: string;
  timer: NodeJS.Timeout;
  verdict: RiseFall;
  stopped: boolean;
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
      // Loaded with the first check that needs it: start-up does not wait for it.
      const { WebSocket } = await import('ws');
      return await new Promise<boolean>((resolve) => {
        const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://${host}:${backend.port}${health.path}`, { ...tls, handshakeTimeout: health.timeout });
        ws.once('open', () => (ws.close(1000), resolve(true)));
        ws.once('error', () => resolve(false));
        ws.once('unexpected-response', (_req, res) => (res.resume(), ws.terminate(), resolve(false)));
      });
    }
    const { Client, request } = await import('undici');
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

export class HealthChecks {
  private readonly checks = new Map<string, Check>();

  constructor(
    private readonly control: ControlPlane,
    private readonly logger: Logger,
    /** Called when checks find a backend up again (which also ends a passive ejection). */
    private readonly onUp: (slot: number) => void,
  ) {}

  /** Starts, keeps or stops the checks so that they follow the current backends and settings. */
  sync(): void {
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
            if (check.verdict.healthy) this.onUp(slot);
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

  close(): void {
    for (const check of this.checks.values()) {
      check.stopped = true;
      clearTimeout(check.timer);
    }
    this.checks.clear();
  }
}
