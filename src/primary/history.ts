// The last 15 minutes of the instance, sampled once a second in the primary (a ring buffer, no
// database), and the events of that time: what the dashboard's charts draw and mark.

import { FAULT_CODES, LATENCY_BUCKETS, SESSION_BUCKETS, type StateTable } from '../core/state/stateTable.js';
import type { ControlPlane } from './controlPlane.js';
import type { FleetView } from './fleet.js';
import { quantile } from './liveStats.js';

/** Seconds of history kept: one point a second. */
export const HISTORY_SECONDS = 900;
const EVENTS_KEPT = 500;

/** One second of the instance. Rates are per second over the second before `at`. */
export interface HistoryPoint {
  /** Unix time, seconds. */
  at: number;
  /** By backend id: open sessions and in-flight requests, requests per second, latency quantiles (s). */
  backends: Record<string, { active: number; rps: number; p50: number | null; p99: number | null }>;
  /** WebSocket sessions opened, and WebSocket and TCP sessions that ended, per second, instance-wide. */
  opened: number;
  closed: number;
  /** Answers with an x-fairway-error code, per second, by code (codes with none left out). */
  errors: Record<string, number>;
  /** By worker thread: what it holds now, and requests it read per second. */
  workers: { active: number[]; rps: number[] };
  /** With a fleet: what each live instance holds over all backends, and each backend's fleet total. */
  fleet?: { instances: Record<string, number>; backends: Record<string, number> };
}

export interface HistoryEvent {
  /** Unix time, milliseconds. */
  at: number;
  kind: 'up' | 'down' | 'draining' | 'ejected' | 'removed' | 'joined' | 'reload' | 'shed' | 'worker-restart' | 'dns';
  /** What happened, for people. */
  text: string;
  backend?: string;
}

/** Events as they happen, the last EVENTS_KEPT of them. */
export class EventLog {
  readonly events: HistoryEvent[] = [];

  add(kind: HistoryEvent['kind'], text: string, backend?: string): void {
    this.events.push({ at: Date.now(), kind, text, ...(backend && { backend }) });
    if (this.events.length > EVENTS_KEPT) this.events.shift();
  }
}

interface Totals {
  at: number;
  requests: Map<string, number>;
  latency: Map<string, number[]>;
  opened: number;
  closed: number;
  faults: number[];
  workerRequests: number[];
}

export class History {
  readonly points: HistoryPoint[] = [];
  private last: Totals;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
    /** The fleet's view, when this instance is part of one. */
    private readonly fleet?: () => FleetView,
  ) {
    this.last = this.totals();
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  /** The points after `since` (Unix seconds) and the events after it (in ms), for the dashboard. */
  since(since = 0): { points: HistoryPoint[]; events: HistoryEvent[] } {
    return { points: this.points.filter((p) => p.at > since), events: this.control.events.events.filter((e) => e.at > since * 1000) };
  }

  private totals(): Totals {
    const { table } = this;
    const requests = new Map<string, number>();
    const latency = new Map<string, number[]>();
    let opened = 0;
    let closed = 0;
    for (const [id, slot] of Object.entries(this.control.plan.backendSlots)) {
      requests.set(id, Number(table.requests(slot)));
      latency.set(id, Array.from({ length: LATENCY_BUCKETS.length + 1 }, (_, k) => Number(table.latencyBucket(slot, k))));
      opened += Number(table.webSockets(slot));
      for (let k = 0; k <= SESSION_BUCKETS.length; k++) closed += Number(table.sessionBucket(slot, k));
    }
    const faults = FAULT_CODES.map((_, index) => Number(table.faults(index)));
    const workerRequests = Array.from({ length: this.control.config.workers }, (_, w) => Number(table.workerRequests(w)));
    return { at: Date.now(), requests, latency, opened, closed, faults, workerRequests };
  }

  private sample(): void {
    const now = this.totals();
    const before = this.last;
    this.last = now;
    const seconds = Math.max(0.001, (now.at - before.at) / 1000);
    const rate = (a: number, b = 0) => Math.max(0, Math.round((a - b) / seconds));
    const backends: HistoryPoint['backends'] = {};
    for (const backend of this.control.backends()) {
      const latency = now.latency.get(backend.id)!;
      const was = before.latency.get(backend.id);
      const delta = latency.map((n, k) => n - (was?.[k] ?? 0));
      backends[backend.id] = { active: backend.active, rps: rate(now.requests.get(backend.id)!, before.requests.get(backend.id)), p50: quantile(delta, 0.5), p99: quantile(delta, 0.99) };
    }
    const errors: Record<string, number> = {};
    FAULT_CODES.forEach((code, index) => {
      const perSecond = rate(now.faults[index], before.faults[index]);
      if (perSecond > 0) errors[code] = perSecond;
    });
    this.points.push({
      at: Math.round(now.at / 1000),
      backends,
      // A backend that left between two samples takes its counts with it: never a negative rate.
      opened: rate(now.opened, before.opened),
      closed: rate(now.closed, before.closed),
      errors,
      workers: { active: now.workerRequests.map((_, w) => this.table.heldByWorker(w)), rps: now.workerRequests.map((n, w) => rate(n, before.workerRequests[w])) },
      ...(this.fleet && { fleet: fleetPoint(this.fleet()) }),
    });
    if (this.points.length > HISTORY_SECONDS) this.points.shift();
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** Per instance: the sum over backends of what it holds; per backend: the fleet's total. */
function fleetPoint(view: FleetView): NonNullable<HistoryPoint['fleet']> {
  const instances: Record<string, number> = Object.fromEntries(view.instances.map((name) => [name, 0]));
  const backends: Record<string, number> = {};
  for (const backend of view.backends) {
    backends[backend.id] = backend.total;
    for (const [name, count] of Object.entries(backend.instances)) instances[name] = (instances[name] ?? 0) + count;
  }
  return { instances, backends };
}
