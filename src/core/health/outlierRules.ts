// The rules of passive health, without I/O: when a backend trips, how long it stays out, and the
// trial after it comes back. The primary's OutlierEjection applies them to the shared table.

import type { OutlierConfig } from '../../config/types.js';

/** What the primary remembers of one backend between rounds. */
export interface OutlierRecord {
  ejections: number;
  lastEjectedAt: number;
  /** 0 when the backend is in. */
  ejectedUntil: number;
  /** Until then, one failure re-ejects it (the half-open trial after an ejection). */
  trialUntil: number;
}

export function newOutlierRecord(): OutlierRecord {
  return { ejections: 0, lastEjectedAt: 0, ejectedUntil: 0, trialUntil: 0 };
}

/**
 * Whether failure streaks trip the outlier rules: `consecutive_failures` connect failures or
 * `consecutive_5xx` 5xx answers in a row; on trial, one of either is enough.
 */
export function trips(outlier: OutlierConfig, failures: number, fiveXx: number, onTrial: boolean): boolean {
  return (
    (outlier.consecutiveFailures > 0 && failures >= (onTrial ? 1 : outlier.consecutiveFailures)) ||
    (outlier.consecutive5xx > 0 && fiveXx >= (onTrial ? 1 : outlier.consecutive5xx))
  );
}

/** Room for one more ejection: never more than max_ejected_share of the pool out at once. */
export function mayEject(outlier: OutlierConfig, ejectedNow: number, poolSize: number): boolean {
  return ejectedNow + 1 <= Math.floor(outlier.maxEjectedShare * poolSize);
}

/**
 * Ejects: the time out grows with each ejection (base × count), and ten calm base times start
 * the count over. Returns how long it is out, ms.
 */
export function eject(record: OutlierRecord, outlier: OutlierConfig, now: number): number {
  if (now - record.lastEjectedAt > 10 * outlier.baseEjection) record.ejections = 0;
  record.ejections++;
  record.lastEjectedAt = now;
  record.ejectedUntil = now + outlier.baseEjection * record.ejections;
  record.trialUntil = 0;
  return outlier.baseEjection * record.ejections;
}

/** The ejection is over: back in, on trial for one base time. */
export function readmit(record: OutlierRecord, outlier: OutlierConfig, now: number): void {
  record.ejectedUntil = 0;
  record.trialUntil = now + outlier.baseEjection;
}
