// What a health check's response body says: a pattern it must match, and thresholds on the fields
// of a JSON body that make the backend unhealthy or degraded.

import type { BodyCondition, HealthConfig } from '../../config/types.js';

/** The verdict on one body: failed (with the reason), degraded (with the reason), or fine. */
export type BodyVerdict = { passed: false; reason: string } | { passed: true; degraded: boolean; reason?: string };

function valueAt(document: unknown, field: string): unknown {
  let value = document;
  for (const key of field.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Whether `condition` holds for the document; a string saying why it cannot be judged. */
function holds(document: unknown, condition: BodyCondition): boolean | string {
  const value = valueAt(document, condition.field);
  if (value === undefined) return `the health body has no field ${condition.field}`;
  const { op, value: expected } = condition;
  if (op === '==' || op === '!=') {
    // A number in the body may be compared with "2" as written in YAML, and the other way round.
    const same = typeof expected === 'number' ? Number(value) === expected : String(value) === String(expected);
    return op === '==' ? same : !same;
  }
  const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(number)) return `the health body's ${condition.field} is ${JSON.stringify(value)}, not a number`;
  const limit = expected as number;
  return op === '>' ? number > limit : op === '>=' ? number >= limit : op === '<' ? number < limit : number <= limit;
}

const show = (c: BodyCondition) => `${c.field} ${c.op} ${typeof c.value === 'string' ? JSON.stringify(c.value) : c.value}`;

/** Judges a health response body by `expect_body` and `json`. */
export function judgeBody(health: Pick<HealthConfig, 'expectBody' | 'json'>, body: string): BodyVerdict {
  if (health.expectBody !== undefined && !new RegExp(health.expectBody).test(body)) {
    return { passed: false, reason: `the health body does not match expect_body /${health.expectBody}/` };
  }
  if (!health.json) return { passed: true, degraded: false };
  let document: unknown;
  try {
    document = JSON.parse(body);
  } catch {
    return { passed: false, reason: `the health body is not JSON: ${JSON.stringify(body.slice(0, 60))}` };
  }
  for (const condition of health.json.unhealthy) {
    const verdict = holds(document, condition);
    if (typeof verdict === 'string') return { passed: false, reason: verdict };
    if (verdict) return { passed: false, reason: `unhealthy: ${show(condition)} (is ${JSON.stringify(valueAt(document, condition.field))})` };
  }
  for (const condition of health.json.degraded) {
    const verdict = holds(document, condition);
    if (typeof verdict === 'string') return { passed: false, reason: verdict };
    if (verdict) return { passed: true, degraded: true, reason: `degraded: ${show(condition)}` };
  }
  return { passed: true, degraded: false };
}
