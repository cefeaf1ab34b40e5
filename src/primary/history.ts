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
  /** Unix time of the sample, in seconds with its milliseconds as the fraction. */
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
  /**
   * With a fleet: what each live instance holds over all backends, and each backend's fleet total;
   * each instance's requests and errors per second and latency quantiles (s), and the same over
   * the fleet (`total`: latency from the instances' summed buckets).
   */
  fleet?: {
    instances: Record<string, number>;
    backends: Record<string, number>;
    rates: Record<string, FleetRates>;
    /** null while degraded: this instance's second alone is not the fleet's. */
    total: FleetRates | null;
  };
}

/** Requests and errors per second, latency quantiles (s) of one instance or of the fleet. */
export interface FleetRates {
  rps: number;
  errors: number;
  p50: number | null;
  p99: number | null;
}

/** One second of an instance as it shares it with the fleet: rates, and the latency histogram's counts in that second. */
export interface InstanceRates {
  rps: number;
  errors: number;
  opened: number;
  closed: number;
  latency: number[];
}

/** The fleet's side of the history: its view, and where this instance's last second goes. */
export interface FleetSide {
  snapshot(): FleetView;
  shareRates(rates: InstanceRates): void;
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
    /** The fleet, when this instance is part of one. */
    private readonly fleet?: FleetSide,
  ) {
    this.last = this.totals();
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  /**
   * For the dashboard, which asks with the `at` of the last point it holds: the points after it,
   * and the events from that same millisecond on (one logged in that millisecond after the answer
   * that carried the point is still new; the page drops what it already has).
   */
  since(since = 0): { points: HistoryPoint[]; events: HistoryEvent[] } {
    const fromMs = Math.round(since * 1000);
    return { points: this.points.filter((p) => p.at > since), events: this.control.events.events.filter((e) => e.at >= fromMs) };
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
    const own: InstanceRates = { rps: 0, errors: 0, opened: rate(now.opened, before.opened), closed: rate(now.closed, before.closed), latency: Array<number>(LATENCY_BUCKETS.length + 1).fill(0) };
    for (const backend of this.control.backends()) {
      const latency = now.latency.get(backend.id)!;
      const was = before.latency.get(backend.id);
      // A backend that left between two samples takes its counts with it: never a negative rate.
      const delta = latency.map((n, k) => Math.max(0, n - (was?.[k] ?? 0)));
      const rps = rate(now.requests.get(backend.id)!, before.requests.get(backend.id));
      backends[backend.id] = { active: backend.active, rps, p50: quantile(delta, 0.5), p99: quantile(delta, 0.99) };
      own.rps += rps;
      delta.forEach((n, k) => (own.latency[k] += n));
    }
    const errors: Record<string, number> = {};
    FAULT_CODES.forEach((code, index) => {
      const perSecond = rate(now.faults[index], before.faults[index]);
      if (perSecond > 0) errors[code] = perSecond;
      own.errors += perSecond;
    });
    this.fleet?.shareRates(own);
    this.points.push({
      at: now.at / 1000,
      backends,
      opened: own.opened,
      closed: own.closed,
      errors,
      workers: { active: now.workerRequests.map((_, w) => this.table.heldByWorker(w)), rps: now.workerRequests.map((n, w) => rate(n, before.workerRequests[w])) },
      ...(this.fleet && { fleet: fleetPoint(this.fleet.snapshot(), own) }),
    });
    if (this.points.length > HISTORY_SECONDS) this.points.shift();
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * Per instance: the sum over backends of what it holds, and its rates (this one's own, the others'
 * as they last published them); per backend: the fleet's total; the fleet's rates summed.
 */
function fleetPoint(view: FleetView, own: InstanceRates): NonNullable<HistoryPoint['fleet']> {
  const instances: Record<string, number> = Object.fromEntries(view.instances.map((name) => [name, 0]));
  const backends: Record<string, number> = {};
  for (const backend of view.backends) {
    backends[backend.id] = backend.total;
    for (const [name, count] of Object.entries(backend.instances)) instances[name] = (instances[name] ?? 0) + count;
  }
  const shared: Record<string, InstanceRates> = { ...view.rates, [view.name]: own };
  const rates: Record<string, FleetRates> = {};
  // Every instance's latency has as many buckets as this one's (FleetAgent refuses others).
  const sum = { rps: 0, errors: 0, latency: own.latency.map(() => 0) };
  for (const [name, r] of Object.entries(shared)) {
    rates[name] = fleetRates(r);
    sum.rps += r.rps;
    sum.errors += r.errors;
    r.latency.forEach((n, k) => (sum.latency[k] += n));
  }
  return { instances, backends, rates, total: view.degraded ? null : fleetRates(sum) };
}

function fleetRates({ rps, errors, latency }: Pick<InstanceRates, 'rps' | 'errors' | 'latency'>): FleetRates {
  return { rps, errors, p50: quantile(latency, 0.5), p99: quantile(latency, 0.99) };
}
