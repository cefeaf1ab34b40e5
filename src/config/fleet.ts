// Parsing of `fleet`: the Redis that several instances share their counts through.

import { hostname } from 'node:os';
import type { FleetConfig } from './types.js';
import { join, type Checker } from './checker.js';
import { CONFIG_KEYS } from './keys.js';
import { DEFAULTS, defaultMs } from './defaults.js';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function parseFleet(check: Checker, raw: unknown): FleetConfig | undefined {
  const obj = check.object('fleet', raw, CONFIG_KEYS.fleet);
  if (!obj) return undefined;
  const before = check.problems.length;
  const redis = check.string('fleet.redis', obj.redis);
  if (redis !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(redis);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') {
      check.fail('fleet.redis', 'a redis:// or rediss:// URL such as "redis://127.0.0.1:6379"', redis);
    }
  }
  let name = `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  if (obj.name !== undefined) {
    const given = check.string(join('fleet', 'name'), obj.name);
    if (given !== undefined && !NAME.test(given)) check.fail('fleet.name', 'up to 64 letters, digits, ".", "-" and "_"', given);
    else if (given !== undefined) name = given;
  }
  const positive = (key: 'heartbeat' | 'sync' | 'timeout'): number | undefined => {
    if (obj[key] === undefined) return defaultMs(`fleet.${key}`);
    const ms = check.duration(`fleet.${key}`, obj[key]);
    if (ms !== undefined && ms <= 0) return check.fail(`fleet.${key}`, 'a duration above zero', obj[key]);
    return ms;
  };
  const heartbeat = positive('heartbeat');
  const sync = positive('sync');
  const timeout = positive('timeout');
  if (heartbeat !== undefined && sync !== undefined && sync > heartbeat) {
    check.fail('fleet.sync', `at most fleet.heartbeat (${obj.heartbeat ?? DEFAULTS['fleet.heartbeat']}): each sync is also the heartbeat`, obj.sync);
  }
  const exactSessions = obj.exact_sessions === undefined ? (DEFAULTS['fleet.exact_sessions'] as boolean) : check.boolean('fleet.exact_sessions', obj.exact_sessions);
  if (check.problems.length > before || redis === undefined || heartbeat === undefined || sync === undefined || timeout === undefined || exactSessions === undefined) return undefined;
  return { redis, name, heartbeat, sync, timeout, exactSessions };
}
