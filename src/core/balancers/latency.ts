// Measuring upstream latency for least-time: a peak-EWMA per backend kept in the shared table.

import type { StateTable } from '../state/stateTable.js';

const MAX_MICROS = 2 ** 31 - 1;

/**
 * Folds one latency sample (µs) into `slot`'s peak-EWMA, as Finagle and Linkerd do: a sample
 * above the estimate replaces it at once (react to trouble immediately); a lower one pulls it down
 * with weight 1 - e^(-Δt/decay). A compareExchange keeps concurrent samples from other threads.
 */
export function recordLatency(table: StateTable, slot: number, sampleMicros: number, now: number, decayMs: number): void {
  const sample = Math.max(1, Math.min(MAX_MICROS, Math.round(sampleMicros)));
  for (let attempt = 0; attempt < 16; attempt++) {
    const previous = table.latency(slot);
    let next = sample;
    if (previous !== 0 && sample < previous) {
      const elapsed = Math.max(0, (now - table.latencyAt(slot)) | 0);
      const keep = Math.exp(-elapsed / decayMs);
      next = Math.max(1, Math.round(previous * keep + sample * (1 - keep)));
    }
    if (table.tryRecordLatency(slot, previous, next, now)) return;
  }
}

/** The estimate as of `now`: it decays toward zero while no sample comes, so an idle backend is retried. */
export function decayedLatency(table: StateTable, slot: number, now: number, decayMs: number): number {
  const value = table.latency(slot);
  if (value === 0) return 0;
  const elapsed = Math.max(0, (now - table.latencyAt(slot)) | 0);
  return value * Math.exp(-elapsed / decayMs);
}
