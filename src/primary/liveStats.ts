// Per-backend rates and latency quantiles over the last seconds, for the dashboard.

import type { BackendView, ControlPlane } from './controlPlane.js';
import { LATENCY_BUCKETS, type StateTable } from '../core/state/stateTable.js';

const WINDOW = 5;

export interface LiveBackend extends BackendView {
  rps: number;
  /** Seconds, estimated from the histogram of the last few seconds; null without traffic. */
  p50: number | null;
  p99: number | null;
}

interface Sample {
  at: number;
  requests: number;
  buckets: number[];
}

/** Samples the shared counters once a second and keeps a short history per backend. */
export class LiveStats {
  private readonly history = new Map<string, Sample[]>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly control: ControlPlane,
    private readonly table: StateTable,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 1000);
    this.timer.unref();
  }

  private sample(): void {
    const at = Date.now();
    for (const backend of this.control.backends()) {
      const slot = this.control.plan.backendSlots[backend.id];
      const buckets = Array.from({ length: LATENCY_BUCKETS.length + 1 }, (_, k) => Number(this.table.latencyBucket(slot, k)));
      const samples = this.history.get(backend.id) ?? [];
      samples.push({ at, requests: backend.requests, buckets });
      if (samples.length > WINDOW + 1) samples.shift();
      this.history.set(backend.id, samples);
    }
  }

  snapshot(): LiveBackend[] {
    return this.control.backends().map((backend) => {
      const samples = this.history.get(backend.id) ?? [];
      const first = samples[0];
      const last = samples.at(-1);
      if (!first || !last || last === first) return { ...backend, rps: 0, p50: null, p99: null };
      const seconds = (last.at - first.at) / 1000;
      const delta = last.buckets.map((n, k) => n - first.buckets[k]);
      return { ...backend, rps: Math.round((last.requests - first.requests) / seconds), p50: quantile(delta, 0.5), p99: quantile(delta, 0.99) };
    });
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** histogram_quantile: linear interpolation inside the bucket where the quantile falls. */
export function quantile(buckets: number[], q: number): number | null {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let k = 0; k < buckets.length; k++) {
    if (seen + buckets[k] >= rank) {
      const lower = k === 0 ? 0 : LATENCY_BUCKETS[k - 1];
      const upper = k < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[k] : LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1];
      return lower + (upper - lower) * ((rank - seen) / buckets[k]);
    }
    seen += buckets[k];
  }
  return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1];
}
