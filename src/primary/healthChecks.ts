// Active health checks, run by the primary: one timer per checked backend, rise/fall verdicts
// written into the shared table through the control plane; the health body's thresholds and
// HAProxy-style agent checks move a backend's weight share and state.

import { connect } from 'node:net';
import type { AgentConfig, BackendConfig, HealthConfig } from '../config/types.js';
import { parseAgentReply } from '../core/health/agentReply.js';
import { judgeBody } from '../core/health/healthBody.js';
import { RiseFall } from '../core/health/riseFall.js';
import { FULL_SHARE } from '../core/state/slotRegistry.js';
import { tlsConnectOptions, type TlsConnectOptions } from '../core/upstreamTls.js';
import type { Logger } from '../log.js';
import type { ControlPlane } from './controlPlane.js';

interface Check {
  key: string;
  timer: NodeJS.Timeout;
  verdict: RiseFall;
  stopped: boolean;
  /** The agent check's timer, when the pool has one. */
  agentTimer?: NodeJS.Timeout;
}

/** One check's outcome: passed or not, degraded (still up, at a share of its weight), and why. */
export interface CheckResult {
  passed: boolean;
  degraded: boolean;
  reason?: string;
}

/** Most of a health body read: thresholds are on small status documents. */
const MAX_BODY = 64 * 1024;
/** Most of an agent's reply read: one line. */
const MAX_AGENT_REPLY = 1024;

const failed = (reason: string): CheckResult => ({ passed: false, degraded: false, reason });

/** One active check of `backend`. Never rejects. */
export async function runCheck(backend: BackendConfig, health: HealthConfig, tls?: TlsConnectOptions): Promise<CheckResult> {
  const passed = (ok: boolean, reason: string): CheckResult => (ok ? { passed: true, degraded: false } : failed(reason));
  const host = backend.host.includes(':') ? `[${backend.host}]` : backend.host;
  try {
    if (health.type === 'tcp') {
      // A TCP check of a TLS backend is a TCP connect too: the handshake is the HTTP check's job.
      const ok = await new Promise<boolean | string>((resolve) => {
        const socket = connect({ host: backend.host, port: backend.port, timeout: health.timeout });
        socket.once('connect', () => (socket.destroy(), resolve(true)));
        socket.once('timeout', () => (socket.destroy(), resolve('timed out')));
        socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      return passed(ok === true, `TCP connect: ${ok}`);
    }
    if (health.type === 'websocket') {
      // Loaded with the first check that needs it: start-up does not wait for it.
      const { WebSocket } = await import('ws');
      const ok = await new Promise<boolean | string>((resolve) => {
        const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://${host}:${backend.port}${health.path}`, { ...tls, handshakeTimeout: health.timeout });
        ws.once('open', () => (ws.close(1000), resolve(true)));
        ws.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        ws.once('unexpected-response', (_req, res) => (res.resume(), ws.terminate(), resolve(`status ${res.statusCode}`)));
      });
      return passed(ok === true, `WebSocket handshake: ${ok}`);
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
      const inRange = res.statusCode >= health.expectStatus[0] && res.statusCode <= health.expectStatus[1];
      if (!inRange || (health.expectBody === undefined && !health.json)) {
        await res.body.dump();
        return passed(inRange, `status ${res.statusCode}, expected ${health.expectStatus.join('-')}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_BODY) {
          res.body.destroy();
          return failed(`the health body is larger than ${MAX_BODY} bytes`);
        }
        chunks.push(chunk);
      }
      // Decoded once: a character split between two chunks stays whole.
      const verdict = judgeBody(health, Buffer.concat(chunks).toString('utf8'));
      return verdict.passed ? { passed: true, degraded: verdict.degraded, reason: verdict.reason } : failed(verdict.reason);
    } finally {
      void client?.destroy().catch(() => undefined);
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    return failed(`HTTP check: ${e.cause?.code ?? e.code ?? e.message}`);
  }
}

/** Asks a backend's agent (HAProxy's agent-check): its first line, or why there is none. Never rejects. */
export function askAgent(backend: BackendConfig, agent: AgentConfig): Promise<string | { error: string }> {
  return new Promise((resolve) => {
    let reply = '';
    let settled = false;
    const finish = (result: string | { error: string }) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    const socket = connect({ host: backend.host, port: agent.port, timeout: agent.timeout });
    socket.setEncoding('latin1');
    socket.once('connect', () => {
      if (agent.send) socket.write(agent.send);
    });
    socket.on('data', (chunk: string) => {
      reply += chunk;
      // The reply ends with its line, or with the agent closing the connection.
      if (/[\r\n]/.test(reply) || reply.length > MAX_AGENT_REPLY) finish(reply.slice(0, MAX_AGENT_REPLY));
    });
    socket.once('end', () => finish(reply));
    socket.once('timeout', () => finish(reply === '' ? { error: 'the agent did not answer in time' } : reply));
    socket.once('error', (err: NodeJS.ErrnoException) => finish({ error: `agent connect: ${err.code ?? err.message}` }));
  });
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
        this.stop(check);
        this.checks.delete(id);
        // No checks any more: nothing says it is down, degraded or weighed down.
        if (!want) {
          const slot = this.control.plan.backendSlots[id];
          if (slot !== undefined) {
            this.control.states.setHealthy(slot, true);
            this.control.states.setAgent(slot, { mode: 'ready', up: true });
            this.control.setShare(id, { agentPercent: FULL_SHARE, degradedShare: 1 });
          }
          this.control.checkNotes.delete(id);
          this.control.agents.delete(id);
        }
      }
    }
    for (const [id, [backend, health, tls]] of wanted) {
      if (this.checks.has(id)) continue;
      const slot = this.control.plan.backendSlots[id];
      const check: Check = { key: JSON.stringify([health, tls]), timer: undefined as unknown as NodeJS.Timeout, verdict: new RiseFall(health.rise, health.fall, this.control.states.isHealthy(slot)), stopped: false };
      const schedule = (delay: number) => {
        check.timer = setTimeout(async () => {
          const result = await runCheck(backend, health, tls);
          if (check.stopped) return;
          this.note(id, result);
          if (check.verdict.record(result.passed)) {
            // Passing active checks also end a passive ejection (as Envoy does by default).
            if (check.verdict.healthy) this.onUp(slot);
            this.control.states.setHealthy(slot, check.verdict.healthy);
            const where = { backend: id, healthy: check.verdict.healthy, reason: result.reason };
            this.logger.warn(where, check.verdict.healthy ? 'backend is up again (health checks pass)' : 'backend is down (health checks fail)');
          }
          // A degraded backend keeps its share of the weight from the check that found it so.
          if (result.passed) this.control.setShare(id, { degradedShare: result.degraded ? health.degradedWeight : 1 });
          // ±10% jitter on every round, so checks of many backends drift apart.
          schedule(health.interval * (0.9 + Math.random() * 0.2));
        }, delay);
        check.timer.unref();
      };
      // The first round of checks is spread over one interval.
      schedule(Math.random() * Math.min(health.interval, 1000));
      if (health.agent) this.startAgent(id, backend, health.agent, check);
      this.checks.set(id, check);
    }
  }

  /** A failed or degraded check's reason, logged when it changes and shown by the admin API. */
  private note(id: string, result: CheckResult): void {
    const reason = result.passed && !result.degraded ? undefined : result.reason;
    if (reason === this.control.checkNotes.get(id)) return;
    if (reason === undefined) this.control.checkNotes.delete(id);
    else {
      this.control.checkNotes.set(id, reason);
      this.logger.info({ backend: id, passed: result.passed, reason }, result.passed ? 'health check: backend degraded' : 'health check failed');
    }
  }

  /**
   * The agent's answers, every `agent.interval`: a percentage scales the weight, drain, maint,
   * ready, up and down move the state, as HAProxy's agent-check. An agent that cannot be reached
   * changes nothing (the health check decides whether the backend is up), as in HAProxy.
   */
  private startAgent(id: string, backend: BackendConfig, agent: AgentConfig, check: Check): void {
    const slot = this.control.plan.backendSlots[id];
    let last = '';
    const round = async () => {
      const answer = await askAgent(backend, agent);
      if (check.stopped) return;
      const reply = typeof answer === 'string' ? parseAgentReply(answer) : answer.error;
      const said = typeof reply === 'string' ? reply : JSON.stringify(reply);
      if (typeof reply === 'string') {
        if (said !== last) this.logger.warn({ backend: id, reason: reply }, 'agent check: no usable reply, nothing changed');
      } else {
        this.control.agents.add(id);
        this.control.states.setAgent(slot, reply);
        if (reply.percent !== undefined) this.control.setShare(id, { agentPercent: reply.percent });
        if (said !== last) this.logger.info({ backend: id, agent: reply, state: this.control.view(backend).state }, 'agent check: backend reported');
      }
      last = said;
      check.agentTimer = setTimeout(round, agent.interval);
      check.agentTimer.unref();
    };
    check.agentTimer = setTimeout(round, Math.random() * Math.min(agent.interval, 1000));
    check.agentTimer.unref();
  }

  private stop(check: Check): void {
    check.stopped = true;
    clearTimeout(check.timer);
    clearTimeout(check.agentTimer);
  }

  close(): void {
    for (const check of this.checks.values()) this.stop(check);
    this.checks.clear();
  }
}
