// The primary's decisions without I/O, table-driven: passive-health outlier rules, the
// rebalancing shed plan, what a health body says, and what an agent check's reply says.

import test from 'ava';
import { eject, mayEject, newOutlierRecord, readmit, trips } from '../dist/src/core/health/outlierRules.js';
import { shedPlan } from '../dist/src/core/rebalancePlan.js';
import { parseAgentReply } from '../dist/src/core/health/agentReply.js';
import { judgeBody } from '../dist/src/core/health/healthBody.js';

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

const AGENT_REPLIES: [string, unknown][] = [
  ['75%\n', { percent: 75 }],
  ['up 50%\r\n', { up: true, percent: 50 }],
  ['drain', { mode: 'drain' }],
  ['READY,UP,100%', { mode: 'ready', up: true, percent: 100 }],
  ['maint\n', { mode: 'maint' }],
  ['down # disk full\n', { up: false, note: 'disk full' }],
  ['fail', { up: false }],
  ['stopped', { up: false }],
  ['300%', { percent: 256 }],
  ['up\nignored second line', { up: true }],
  ['up and more words', { up: true }],
];
for (const [reply, expected] of AGENT_REPLIES) {
  test(`agent reply ${JSON.stringify(reply)}`, (t) => {
    t.deepEqual(parseAgentReply(reply), expected);
  });
}

test('agent reply: nothing known, or nothing at all, is an error message', (t) => {
  t.regex(parseAgentReply('hello\n') as string, /no word fairway knows/);
  t.is(parseAgentReply(''), 'the agent sent an empty reply');
  t.regex(parseAgentReply('50 percent') as string, /no word fairway knows/);
});

const JSON_RULES = {
  unhealthy: [
    { field: 'cpu_usage', op: '>', value: 90 },
    { field: 'load.memory', op: '>=', value: 95 },
  ],
  degraded: [{ field: 'status', op: '==', value: 'degraded' }],
} as const;
const BODIES: [string, string, unknown][] = [
  ['fine', '{"cpu_usage": 10, "load": {"memory": 20}, "status": "ok"}', { passed: true, degraded: false }],
  ['cpu over the line', '{"cpu_usage": 91, "load": {"memory": 20}, "status": "ok"}', { passed: false, reason: 'unhealthy: cpu_usage > 90 (is 91)' }],
  ['cpu on the line', '{"cpu_usage": 90, "load": {"memory": 20}, "status": "ok"}', { passed: true, degraded: false }],
  ['memory at the line (dotted path)', '{"cpu_usage": 1, "load": {"memory": 95}, "status": "ok"}', { passed: false, reason: 'unhealthy: load.memory >= 95 (is 95)' }],
  ['a number as a string', '{"cpu_usage": "95", "load": {"memory": 1}, "status": "ok"}', { passed: false, reason: 'unhealthy: cpu_usage > 90 (is "95")' }],
  ['degraded', '{"cpu_usage": 1, "load": {"memory": 1}, "status": "degraded"}', { passed: true, degraded: true, reason: 'degraded: status == "degraded"' }],
  ['unhealthy wins over degraded', '{"cpu_usage": 99, "load": {"memory": 1}, "status": "degraded"}', { passed: false, reason: 'unhealthy: cpu_usage > 90 (is 99)' }],
  ['not JSON', 'OK', { passed: false, reason: 'the health body is not JSON: "OK"' }],
  ['a field missing', '{"cpu_usage": 1, "status": "ok"}', { passed: false, reason: 'the health body has no field load.memory' }],
  ['a field that is not a number', '{"cpu_usage": "busy", "load": {"memory": 1}, "status": "ok"}', { passed: false, reason: 'the health body\'s cpu_usage is "busy", not a number' }],
];
for (const [name, body, expected] of BODIES) {
  test(`health body: ${name}`, (t) => {
    t.deepEqual(judgeBody({ json: JSON_RULES as never }, body), expected);
  });
}

test('health body: expect_body is checked before the JSON rules', (t) => {
  t.deepEqual(judgeBody({ expectBody: '^OK$' }, 'OK'), { passed: true, degraded: false });
  t.deepEqual(judgeBody({ expectBody: '^OK$', json: JSON_RULES as never }, 'busy'), { passed: false, reason: 'the health body does not match expect_body /^OK$/' });
});
