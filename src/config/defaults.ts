// Every default of the config in one table, written as a user writes the value: the section
// parsers take their defaults from here, and a test checks that docs/configuration.md shows each.

import { parseDuration, parseSize } from './units.js';

export const DEFAULTS = {
  listen: '127.0.0.1:8080',
  workers: 'auto',
  engine: 'native-free',
  'log.level': 'info',
  'log.access': true,
  'log.format': 'auto',
  'timeouts.connect': '5s',
  'timeouts.response': '60s',
  'timeouts.idle': '60s',
  'timeouts.request_head': '10s',
  'timeouts.request_body': '60s',
  'limits.max_request_line': '8kb',
  'limits.max_request_head': '32kb',
  'websocket.max_message': '16mb',
  'websocket.ping_interval': '30s',
  'websocket.max_buffered': '16mb',
  'websocket.compression': 'off',
  'shutdown.grace': '10s',
  'resolver.timeout': '2s',
  'fleet.heartbeat': '1s',
  'fleet.sync': '100ms',
  'fleet.timeout': '50ms',
  'fleet.exact_sessions': true,
  'routes[].rate_limit.scope': 'instance',
  'routes[].cache.size': '64mb',
  'routes[].cache.max_object': '1mb',
  'routes[].cache.default_ttl': '0s',
  'routes[].cache.lock_timeout': '5s',
  'routes[].cache.status_header': 'x-fairway-cache',
  'pools.NAME.algorithm': 'least-conn',
  'pools.NAME.least_time.decay': '10s',
  'pools.NAME.queue.size': 0,
  'pools.NAME.queue.timeout': '5s',
  'pools.NAME.health.type': 'http',
  'pools.NAME.health.path': '/health',
  'pools.NAME.health.interval': '5s',
  'pools.NAME.health.timeout': '2s',
  'pools.NAME.health.rise': 2,
  'pools.NAME.health.fall': 3,
  'pools.NAME.health.expect_status': '200-399',
  'pools.NAME.health.degraded_weight': 0.5,
  'pools.NAME.health.agent.interval': '2s',
  'pools.NAME.health.agent.timeout': '1s',
  'pools.NAME.backends[].interval': '5s',
  'pools.NAME.outlier.consecutive_failures': 5,
  'pools.NAME.outlier.consecutive_5xx': 0,
  'pools.NAME.outlier.base_ejection': '30s',
  'pools.NAME.outlier.max_ejected_share': 0.5,
  'pools.NAME.retries.count': 2,
  'pools.NAME.retries.budget': 0.2,
  'pools.NAME.drain.timeout': '30s',
  'pools.NAME.drain.window': '10s',
  'pools.NAME.drain.rate': '100/s',
  'pools.NAME.drain.code': 1001,
  'pools.NAME.rebalance.max_skew': 1.25,
  'pools.NAME.rebalance.rate': '20/s',
  'pools.NAME.rebalance.order': 'newest',
} as const;

type DefaultKey = keyof typeof DEFAULTS;

/** A default duration, ms. */
export function defaultMs(key: DefaultKey): number {
  return parseDuration(String(DEFAULTS[key]))!;
}

/** A default size, bytes. */
export function defaultBytes(key: DefaultKey): number {
  return parseSize(String(DEFAULTS[key]))!;
}

/** A default rate such as "20/s", per second. */
export function defaultRate(key: DefaultKey): number {
  const [count, unit] = String(DEFAULTS[key]).split('/');
  return Number(count) / (unit === 'm' ? 60 : 1);
}
