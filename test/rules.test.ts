// The primary's decisions without I/O, table-driven: passive-health outlier rules and the
// rebalancing shed plan.

import test from 'ava';
import { eject, mayEject, newOutlierRecord, readmit, trips } from '../dist/src/core/health/outlierRules.js';
import { shedPlan } from '../dist/src/core/rebalancePlan.js';

const OUTLIER = { consecutiveFailures: 5, consecutive5xx: 3, baseEjection: 1000, maxEjectedShare: 0.5 };

const TRIPS: [string, { consecutiveFailures: number; consecutive5xx: number }, number, number, boolean, boolean][] = [
  ['below both streaks', OUTLIER, 4, 2, false, false],
  ['connect failures reach their streak', OUTLIER, 5, 0, false, true],
  ['5xx answers reach their streak', OUTLIER, 0, 3, false, true],
  ['on trial one failure is enough', OUTLIER, 1, 0, true, true],
  ['on trial one 5xx is enough', OUTLIER, 0, 1, true, true],
  ['on trial, nothing failed', OUTLIER, 0, 0, true, false],
  ['a streak set to 0 is off', { consecutiveFailures: 0, consecutive5xx: 0 }, 100, 100, true, false],
];
for (const [name, config, failures, fiveXx, onTrial, expected] of TRIPS) {
  test(`outlier rules: ${name}`, (t) => {
    t.is(trips({ ...OUTLIER, ...config }, failures, fiveXx, onTrial), expected);
  });
}

test('outlier rules: at most max_ejected_share of the pool is out at once', (t) => {
  t.deepEqual([0, 1, 2].map((out) => mayEject(OUTLIER, out, 4)), [true, true, false]);
  t.deepEqual([0, 1].map((out) => mayEject(OUTLIER, out, 3)), [true, false]);
  t.false(mayEject(OUTLIER, 0, 1), 'a pool of one is never emptied');
});

test('outlier rules: each ejection lasts one base time longer; a trial follows; ten calm base times start over', (t) => {
  const record = newOutlierRecord();
  t.is(eject(record, OUTLIER, 100_000), 1000);
  t.like(record, { ejections: 1, ejectedUntil: 101_000, trialUntil: 0 });
  readmit(record, OUTLIER, 101_000);
  t.like(record, { ejectedUntil: 0, trialUntil: 102_000 });
  t.is(eject(record, OUTLIER, 101_500), 2000);
  t.like(record, { ejections: 2, ejectedUntil: 103_500 });
  t.is(eject(record, OUTLIER, 103_500 + 10_001), 1000, 'the count starts over after ten calm base times');
});

const PLANS: [string, number[], number, number, number[], number][] = [
  ['level: nothing to shed', [10, 10, 10], 1.25, 20, [0, 0, 0], 20],
  ['one hot backend sheds down to the bound', [40, 0], 1.25, 100, [15, 0], 85],
  ['the rate caps a round', [40, 0], 1.25, 6, [6, 0], 0],
  ['fractional tokens wait for a whole one', [40, 0], 1.25, 0.5, [0, 0], 0.5],
  ['within max_skew stays', [12, 8], 1.25, 20, [0, 0], 20],
  ['the bound is at least the rounded-up average', [3, 2], 1.0, 20, [0, 0], 20],
  ['several hot backends in order while tokens last', [30, 30, 0], 1.0, 15, [10, 5, 0], 0],
  ['an average below one sheds nothing', [1, 0, 0], 1.25, 20, [0, 0, 0], 20],
];
for (const [name, loads, maxSkew, tokens, counts, left] of PLANS) {
  test(`rebalance plan: ${name}`, (t) => {
    t.deepEqual(shedPlan(loads, maxSkew, tokens), { counts, tokens: left });
  });
}
