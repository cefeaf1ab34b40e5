// Parsing of `routes[]`: matches, access lists, limits, timeouts, rewrites and header edits.

import { isRange } from '../core/accessList.js';
import { isToken } from '../core/httpSyntax.js';
import { KEY_PARTS } from '../core/cache/httpCaching.js';
import type { CacheConfig, Config, HeaderEdit, RateLimitConfig, RouteConfig, RouteMatch } from './types.js';
import { Checker, join, parseRate } from './checker.js';
import { CONFIG_KEYS } from './keys.js';
import { DEFAULTS } from './defaults.js';

function parseBucket(check: Checker, path: string, raw: unknown): { rate: number; burst: number } | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[].rate_limit.requests']);
  if (!obj) return undefined;
  const rate = parseRate(check, join(path, 'rate'), obj.rate);
  const burst = obj.burst === undefined ? Math.max(1, Math.ceil(rate ?? 1)) : check.integer(join(path, 'burst'), obj.burst, 1, 1_000_000);
  return rate !== undefined && burst !== undefined ? { rate, burst } : undefined;
}

function parseRateLimit(check: Checker, path: string, raw: unknown): RateLimitConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[].rate_limit']);
  if (!obj) return undefined;
  let key: RateLimitConfig['key'] = { from: 'ip', name: '' };
  if (obj.key !== undefined) {
    const match = typeof obj.key === 'string' ? /^(?:(ip)|header:([A-Za-z0-9_-]+))$/.exec(obj.key) : null;
    if (!match) check.fail(join(path, 'key'), 'ip or header:NAME', obj.key);
    else key = match[1] ? key : { from: 'header', name: match[2].toLowerCase() };
  }
  const requests = obj.requests === undefined ? undefined : parseBucket(check, join(path, 'requests'), obj.requests);
  const newSessions = obj.new_sessions === undefined ? undefined : parseBucket(check, join(path, 'new_sessions'), obj.new_sessions);
  const concurrentSessions =
    obj.concurrent_sessions === undefined ? 0 : (check.integer(join(path, 'concurrent_sessions'), obj.concurrent_sessions, 1, 1_000_000) ?? 0);
  if (obj.requests === undefined && obj.new_sessions === undefined && obj.concurrent_sessions === undefined) {
    return check.fail(path, 'at least one of requests, new_sessions, concurrent_sessions', raw);
  }
  const scope = obj.scope === undefined ? (DEFAULTS['routes[].rate_limit.scope'] as 'instance') : (check.oneOf(join(path, 'scope'), obj.scope, ['instance', 'fleet'] as const) ?? 'instance');
  return { key, requests, newSessions, concurrentSessions, scope };
}

function parseCache(check: Checker, path: string, raw: unknown): CacheConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[].cache']);
  if (!obj) return undefined;
  const size = (key: 'size' | 'max_object') => check.size(join(path, key), obj[key] ?? DEFAULTS[`routes[].cache.${key}`]) ?? 0;
  const duration = (key: 'default_ttl' | 'lock_timeout') => check.duration(join(path, key), obj[key] ?? DEFAULTS[`routes[].cache.${key}`]) ?? 0;
  const cache: CacheConfig = { size: size('size'), maxObject: size('max_object'), defaultTtl: duration('default_ttl'), lockTimeout: duration('lock_timeout'), key: [...KEY_PARTS], statusHeader: DEFAULTS['routes[].cache.status_header'] };
  if (cache.size < 1024) check.fail(join(path, 'size'), 'at least 1kb', obj.size);
  else if (cache.maxObject < 1 || cache.maxObject > cache.size) check.fail(join(path, 'max_object'), `a size from 1 byte to the cache's size (${cache.size} bytes)`, obj.max_object);
  if (obj.key !== undefined) {
    const parts = Array.isArray(obj.key) ? obj.key : [];
    if (parts.length === 0 || parts.some((part) => !KEY_PARTS.includes(part)) || new Set(parts).size !== parts.length) {
      check.fail(join(path, 'key'), `a list of ${KEY_PARTS.join(', ')}, each at most once`, obj.key);
    } else cache.key = parts as CacheConfig['key'];
  }
  if (obj.status_header !== undefined) {
    const name = check.string(join(path, 'status_header'), obj.status_header);
    if (name !== undefined && name !== '' && !isToken(name)) check.fail(join(path, 'status_header'), 'a header name, or "" for none', name);
    else if (name !== undefined) cache.statusHeader = name.toLowerCase();
  }
  return cache;
}

/** Headers a route may not set or remove: they describe the connection or the message framing. */
const FRAMING_HEADERS = new Set(['connection', 'content-length', 'transfer-encoding', 'upgrade', 'host', 'keep-alive', 'te', 'trailer']);

function parseHeaderEdit(check: Checker, path: string, raw: unknown): HeaderEdit | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[].request_headers']);
  if (!obj) return undefined;
  const edit: HeaderEdit = { set: [], remove: [] };
  const allowedName = (at: string, name: string): boolean => {
    if (!isToken(name)) return check.fail(at, 'a header name', name) ?? false;
    if (FRAMING_HEADERS.has(name.toLowerCase())) return check.fail(at, 'a header other than connection, content-length, transfer-encoding, upgrade, host, keep-alive, te and trailer', name) ?? false;
    return true;
  };
  if (obj.set !== undefined) {
    const set = check.mapping(join(path, 'set'), obj.set);
    for (const [name, value] of Object.entries(set ?? {})) {
      const at = join(join(path, 'set'), name);
      if (!allowedName(at, name)) continue;
      if (typeof value !== 'string' || /[\r\n\0]/.test(value)) check.fail(at, 'a header value (text without line breaks)', value);
      else edit.set.push([name.toLowerCase(), value]);
    }
  }
  if (obj.remove !== undefined) {
    if (!Array.isArray(obj.remove)) check.fail(join(path, 'remove'), 'a list of header names', obj.remove);
    else obj.remove.forEach((name, i) => {
      if (typeof name !== 'string') check.fail(join(join(path, 'remove'), i), 'a header name', name);
      else if (allowedName(join(join(path, 'remove'), i), name)) edit.remove.push(name.toLowerCase());
    });
  }
  return edit;
}

function parsePrefix(check: Checker, path: string, value: unknown): string | undefined {
  const prefix = check.string(path, value);
  if (prefix !== undefined && (!prefix.startsWith('/') || /[?#\s]/.test(prefix))) return check.fail(path, 'a path prefix starting with / (no query, no spaces)', prefix);
  return prefix;
}


export function parseRoute(check: Checker, path: string, raw: unknown, pools: Record<string, unknown>, defaults: Config['timeouts']): RouteConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[]']);
  if (!obj) return undefined;
  const pool = check.string(join(path, 'pool'), obj.pool);
  const ranges = (key: 'allow' | 'deny'): string[] | undefined => {
    const value = obj[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !isRange(v))) {
      check.fail(join(path, key), 'a list of addresses or CIDR ranges such as "10.0.0.0/8" or "::1"', value);
      return undefined;
    }
    return value as string[];
  };
  const allow = ranges('allow');
  const deny = ranges('deny');
  const websocket = obj.websocket === undefined ? true : (check.boolean(join(path, 'websocket'), obj.websocket) ?? true);
  const maxBody = obj.max_body === undefined ? 0 : (check.size(join(path, 'max_body'), obj.max_body) ?? 0);
  const timeouts = { response: defaults.response, idle: defaults.idle };
  if (obj.timeouts !== undefined) {
    const t = check.object(join(path, 'timeouts'), obj.timeouts, CONFIG_KEYS['routes[].timeouts']);
    for (const key of ['response', 'idle'] as const) {
      if (t?.[key] !== undefined) timeouts[key] = check.duration(join(path, `timeouts.${key}`), t[key]) ?? timeouts[key];
    }
  }
  const stripPrefix = obj.strip_prefix === undefined ? undefined : parsePrefix(check, join(path, 'strip_prefix'), obj.strip_prefix);
  const addPrefix = obj.add_prefix === undefined ? undefined : parsePrefix(check, join(path, 'add_prefix'), obj.add_prefix);
  const requestHeaders = obj.request_headers === undefined ? undefined : parseHeaderEdit(check, join(path, 'request_headers'), obj.request_headers);
  const responseHeaders = obj.response_headers === undefined ? undefined : parseHeaderEdit(check, join(path, 'response_headers'), obj.response_headers);
  const rateLimit = obj.rate_limit === undefined ? undefined : parseRateLimit(check, join(path, 'rate_limit'), obj.rate_limit);
  const cache = obj.cache === undefined ? undefined : parseCache(check, join(path, 'cache'), obj.cache);
  if (pool !== undefined && !(pool in pools)) {
    check.fail(join(path, 'pool'), `the name of a pool (${Object.keys(pools).join(', ')})`, pool);
  }
  const match: RouteMatch = {};
  if (obj.match !== undefined) {
    const m = check.object(join(path, 'match'), obj.match, CONFIG_KEYS['routes[].match']);
    if (m?.method !== undefined) {
      const list = Array.isArray(m.method) ? m.method : [m.method];
      if (list.length === 0 || list.some((x) => typeof x !== 'string' || !/^[A-Za-z]+$/.test(x))) check.fail(join(path, 'match.method'), 'a method or a list of methods such as GET', m.method);
      else match.methods = list.map((x) => String(x).toUpperCase());
    }
    if (m?.query !== undefined) {
      const q = check.mapping(join(path, 'match.query'), m.query);
      if (q) {
        match.query = {};
        for (const [key, value] of Object.entries(q)) {
          const v = check.string(join(path, `match.query.${key}`), value);
          if (v !== undefined) match.query[key] = v;
        }
      }
    }
    if (m?.path !== undefined) {
      const p = check.string(join(path, 'match.path'), m.path);
      if (p !== undefined && !p.startsWith('/')) check.fail(join(path, 'match.path'), 'a path starting with /', p);
      else match.path = p;
    }
    if (m?.host !== undefined) match.host = check.string(join(path, 'match.host'), m.host)?.toLowerCase();
    if (m?.headers !== undefined) {
      const h = check.mapping(join(path, 'match.headers'), m.headers);
      if (h) {
        match.headers = {};
        for (const [key, value] of Object.entries(h)) {
          const v = check.string(join(path, `match.headers.${key}`), value);
          if (v !== undefined) match.headers[key.toLowerCase()] = v;
        }
      }
    }
  }
  return pool === undefined ? undefined : { match, pool, allow, deny, websocket, maxBody, timeouts, stripPrefix, addPrefix, requestHeaders, responseHeaders, rateLimit, cache };
}
