// The configuration schema in one place: validation of raw YAML/JSON input into a normalised Config.

import { accessSync, constants, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isRange } from '../core/accessList.js';
import { parseDuration, parseSize } from './units.js';

export const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'least-conn', 'random', 'p2c', 'least-time', 'hash'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
export const ENGINES = ['auto', 'uws', 'native-free'] as const;
export type EngineName = (typeof ENGINES)[number];
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export interface HostPort {
  host: string;
  port: number;
}

export interface BackendConfig {
  /** Identity of the backend across reloads: pool name and address. */
  id: string;
  /** Public name (sticky cookies, logs): configured, or derived from the identity. */
  name: string;
  pool: string;
  /** Origin for the HTTP client, e.g. http://127.0.0.1:9001 */
  origin: string;
  /** https:// backend: TLS to it (wss:// for WebSocket sessions), per its pool's `tls` settings. */
  tls: boolean;
  host: string;
  port: number;
  weight: number;
  /** Most sessions at once on this backend; 0 = no limit. */
  maxConns: number;
}

/** Where a hash key comes from: the client address, the path, or a named header/cookie/query parameter. */
export interface HashKeySource {
  from: 'ip' | 'path' | 'header' | 'cookie' | 'query';
  name: string;
}

export interface PoolConfig {
  name: string;
  algorithm: Algorithm;
  backends: BackendConfig[];
  /** For `hash`: the key and the bounded-load factor (0 = unbounded). */
  hash?: { key: HashKeySource; balanceFactor: number };
  /** least-time: decay time of the latency estimate, ms. */
  decay: number;
  /** Slow start ramp, ms; 0 = off. */
  slowStart: number;
  sticky?: { cookie: string };
  /** Requests that wait for a backend under max_conns: how many at most (0 = none), how long. */
  queue: { size: number; timeout: number };
  /** Active health checks; absent = backends are taken to be up. */
  health?: HealthConfig;
  /** Passive outlier ejection. */
  outlier: OutlierConfig;
  /** Retries on another backend. */
  retries: { count: number; budget: number };
  /** Draining: how long sessions may stay, then how their closes are spread. */
  drain: { timeout: number; window: number; rate: number; code: number };
  /** Active rebalancing of long-lived sessions; absent = off. */
  rebalance?: { maxSkew: number; rate: number; order: 'newest' | 'oldest' };
  /** TLS to https:// backends. */
  tls: UpstreamTlsConfig;
}

export interface UpstreamTlsConfig {
  /** Check the backend's certificate (chain and name); on by default. */
  verify: boolean;
  /** PEM of the CAs trusted for backends (read from the `ca` file), instead of Node's default list. */
  ca?: string;
  /** Name to ask for (SNI) and to check the certificate against, instead of the backend's host. */
  serverName?: string;
}

export interface HealthConfig {
  type: 'http' | 'tcp' | 'websocket';
  path: string;
  interval: number;
  timeout: number;
  rise: number;
  fall: number;
  /** Inclusive status range that counts as healthy. */
  expectStatus: [number, number];
}

export interface OutlierConfig {
  /** Consecutive connect failures, resets and timeouts that eject (0 = off). */
  consecutiveFailures: number;
  /** Consecutive 5xx responses that eject (0 = off). */
  consecutive5xx: number;
  baseEjection: number;
  /** Most of the pool that may be ejected at once (0–1). */
  maxEjectedShare: number;
}

export interface RouteMatch {
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  /** Upper-case methods, any of which matches. */
  methods?: string[];
  query?: Record<string, string>;
}

export interface RouteConfig {
  match: RouteMatch;
  pool: string;
  /** Client addresses (CIDR) let through; absent = everyone not denied. */
  allow?: string[];
  deny?: string[];
  /** Whether WebSocket upgrades may use the route. */
  websocket: boolean;
  /** Largest request body in bytes (413 past it); 0 = no limit. */
  maxBody: number;
  /** Upstream response and idle timeouts for this route, ms (default: the top-level ones). */
  timeouts: { response: number; idle: number };
  /** Path rewriting on the way upstream: this prefix taken off, then `addPrefix` put on. */
  stripPrefix?: string;
  addPrefix?: string;
  /** Headers set (replacing any of the same name) or removed on the request and on the response. */
  requestHeaders?: HeaderEdit;
  responseHeaders?: HeaderEdit;
  /** Per-client limits, shared by every worker; absent = none. */
  rateLimit?: RateLimitConfig;
}

export interface RateLimitConfig {
  /** Who a client is: its address (after trusted proxies), or a header's value. */
  key: { from: 'ip' | 'header'; name: string };
  /** Token bucket for HTTP requests and WebSocket upgrades. */
  requests?: { rate: number; burst: number };
  /** Token bucket for new WebSocket sessions (reconnect loops). */
  newSessions?: { rate: number; burst: number };
  /** Most WebSocket sessions open at once per client; 0 = no limit. */
  concurrentSessions: number;
}

export interface HeaderEdit {
  /** Lower-case names and values. */
  set: [string, string][];
  /** Lower-case names. */
  remove: string[];
}

export interface AdminConfig {
  listen: HostPort;
  token?: string;
}

export interface TlsConfig {
  /** Default certificate and key files (PEM). */
  cert: string;
  key: string;
  /** More certificates, chosen by the SNI name the client asks for. */
  certs: { names: string[]; cert: string; key: string }[];
  /** A plain-HTTP listener that redirects every request to HTTPS. */
  redirect?: HostPort;
}

export interface Config {
  listen: HostPort;
  /** TLS termination on the listener; absent = plain HTTP. */
  tls?: TlsConfig;
  /** Admin API, metrics and dashboard; off when absent. */
  admin?: AdminConfig;
  workers: number;
  engine: EngineName;
  log: { level: (typeof LOG_LEVELS)[number]; access: boolean };
  /** Upstream HTTP timeouts, in milliseconds. */
  timeouts: { connect: number; response: number; idle: number };
  websocket: { maxMessage: number; pingInterval: number; maxBuffered: number };
  shutdown: { grace: number };
  pools: Record<string, PoolConfig>;
  routes: RouteConfig[];
  /** Peers (CIDR) whose X-Forwarded-For names the client; empty = none. */
  trustedProxies: string[];
  /** The listener takes PROXY protocol (v2) headers from an L4 balancer in front. */
  proxyProtocol: boolean;
  /** L4 listeners: raw TCP connections balanced over a pool. */
  tcp: TcpListenerConfig[];
}

export interface TcpListenerConfig {
  listen: HostPort;
  pool: string;
  /** A connection with no byte either way for this long is closed, ms; 0 = never. */
  idleTimeout: number;
  /** PROXY protocol header sent to the backend first: 0 = none, 1 = text, 2 = binary. */
  sendProxy: 0 | 1 | 2;
  /** Clients must start with a PROXY header (v1 or v2): its source is the client address. */
  acceptProxy: boolean;
}

/**
 * Every key the config accepts, by where it sits ("NAME" is a pool name, "[]" a list item). The
 * validators take their allowed keys from here, and a test checks that docs/configuration.md
 * describes each one, so the reference cannot fall behind the schema.
 */
const BUCKET_KEYS = ['rate', 'burst'] as const;
const HEADER_EDIT_KEYS = ['set', 'remove'] as const;
export const CONFIG_KEYS = {
  '': ['listen', 'tls', 'workers', 'engine', 'log', 'timeouts', 'websocket', 'shutdown', 'admin', 'pools', 'routes', 'trusted_proxies', 'proxy_protocol', 'tcp'],
  tls: ['cert', 'key', 'certs', 'redirect'],
  'tls.certs[]': ['names', 'cert', 'key'],
  log: ['level', 'access'],
  timeouts: ['connect', 'response', 'idle'],
  websocket: ['max_message', 'ping_interval', 'max_buffered'],
  shutdown: ['grace'],
  admin: ['listen', 'token'],
  'pools.NAME': ['algorithm', 'backends', 'hash', 'least_time', 'slow_start', 'sticky', 'queue', 'health', 'outlier', 'retries', 'drain', 'rebalance', 'tls'],
  'pools.NAME.backends[]': ['url', 'weight', 'name', 'max_conns'],
  'pools.NAME.hash': ['key', 'balance_factor'],
  'pools.NAME.least_time': ['decay'],
  'pools.NAME.sticky': ['cookie'],
  'pools.NAME.queue': ['size', 'timeout'],
  'pools.NAME.health': ['type', 'path', 'interval', 'timeout', 'rise', 'fall', 'expect_status'],
  'pools.NAME.outlier': ['consecutive_failures', 'consecutive_5xx', 'base_ejection', 'max_ejected_share'],
  'pools.NAME.retries': ['count', 'budget'],
  'pools.NAME.drain': ['timeout', 'window', 'rate', 'code'],
  'pools.NAME.rebalance': ['max_skew', 'rate', 'order'],
  'pools.NAME.tls': ['verify', 'ca', 'server_name'],
  'routes[]': ['match', 'pool', 'allow', 'deny', 'websocket', 'max_body', 'timeouts', 'strip_prefix', 'add_prefix', 'request_headers', 'response_headers', 'rate_limit'],
  'routes[].match': ['path', 'host', 'headers', 'method', 'query'],
  'routes[].timeouts': ['response', 'idle'],
  'routes[].request_headers': HEADER_EDIT_KEYS,
  'routes[].response_headers': HEADER_EDIT_KEYS,
  'routes[].rate_limit': ['key', 'requests', 'new_sessions', 'concurrent_sessions'],
  'routes[].rate_limit.requests': BUCKET_KEYS,
  'routes[].rate_limit.new_sessions': BUCKET_KEYS,
  'tcp[]': ['listen', 'pool', 'idle_timeout', 'send_proxy', 'accept_proxy'],
} as const satisfies Record<string, readonly string[]>;

/** A config problem: where it is, what was expected, what was given. */
export class ConfigError extends Error {
  readonly code = 'FAIRWAY_CONFIG';
  constructor(readonly problems: string[]) {
    super(problems.map((p) => `config: ${p}`).join('\n'));
  }
}

type Raw = Record<string, unknown>;

/** Collects every problem instead of stopping at the first, so one run shows them all. */
class Checker {
  problems: string[] = [];

  fail(path: string, expected: string, got: unknown): undefined {
    this.problems.push(`${path}: expected ${expected}, got ${describe(got)}`);
    return undefined;
  }

  /** A mapping with free-form keys (pool names, header names). */
  mapping(path: string, value: unknown): Raw | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return this.fail(path, 'a mapping', value);
    }
    return value as Raw;
  }

  /** A mapping whose keys must be among `allowed`: a typo is an error, not silently ignored. */
  object(path: string, value: unknown, allowed: readonly string[]): Raw | undefined {
    if (!this.mapping(path, value)) return undefined;
    for (const key of Object.keys(value as Raw)) {
      if (!allowed.includes(key)) {
        this.problems.push(`${join(path, key)}: unknown key (allowed here: ${allowed.join(', ')})`);
      }
    }
    return value as Raw;
  }

  string(path: string, value: unknown): string | undefined {
    if (typeof value !== 'string' || value === '') return this.fail(path, 'a non-empty string', value);
    return value;
  }

  oneOf<T extends string>(path: string, value: unknown, choices: readonly T[]): T | undefined {
    if (typeof value !== 'string' || !choices.includes(value as T)) {
      return this.fail(path, `one of ${choices.join(', ')}`, value);
    }
    return value as T;
  }

  boolean(path: string, value: unknown): boolean | undefined {
    if (typeof value !== 'boolean') return this.fail(path, 'true or false', value);
    return value;
  }

  integer(path: string, value: unknown, min: number, max: number): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      return this.fail(path, `a whole number from ${min} to ${max}`, value);
    }
    return value;
  }

  duration(path: string, value: unknown): number | undefined {
    const ms = typeof value === 'string' ? parseDuration(value) : undefined;
    if (ms === undefined) return this.fail(path, 'a duration with a unit such as "500ms" or "5s"', value);
    return ms;
  }

  size(path: string, value: unknown): number | undefined {
    const bytes = typeof value === 'string' ? parseSize(value) : undefined;
    if (bytes === undefined) return this.fail(path, 'a size with a unit such as "64kb" or "16mb"', value);
    return bytes;
  }

  hostPort(path: string, value: unknown): HostPort | undefined {
    const parsed = typeof value === 'string' ? parseHostPort(value) : undefined;
    if (!parsed) return this.fail(path, 'host:port such as "127.0.0.1:8080"', value);
    return parsed;
  }
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (value !== null && typeof value === 'object') return 'a mapping';
  return String(value);
}

export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? match[2], port };
}

function parseBackend(check: Checker, path: string, pool: string, raw: unknown): BackendConfig | undefined {
  let address: unknown = raw;
  let weight = 1;
  let maxConns = 0;
  let name: string | undefined;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.backends[]'])!;
    address = obj.url;
    if (obj.weight !== undefined) weight = check.integer(join(path, 'weight'), obj.weight, 1, 1000) ?? 1;
    if (obj.max_conns !== undefined) maxConns = check.integer(join(path, 'max_conns'), obj.max_conns, 1, 10_000_000) ?? 0;
    if (obj.name !== undefined) {
      name = check.string(join(path, 'name'), obj.name);
      if (name !== undefined && !/^[A-Za-z0-9_.-]+$/.test(name)) name = check.fail(join(path, 'name'), 'a name of letters, digits, ".", "-" and "_"', name);
    }
    path = join(path, 'url');
  }
  if (typeof address !== 'string') return check.fail(path, 'an http(s) URL or host:port', address);
  const text = address.includes('://') ? address : `http://${address}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return check.fail(path, 'an http(s) URL or host:port', address);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search) {
    return check.fail(path, 'an http(s) URL with no path, or host:port', address);
  }
  const tls = url.protocol === 'https:';
  const port = Number(url.port || (tls ? 443 : 80));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const id = `${pool}/${url.host}`;
  return { id, name: name ?? derivedName(id), pool, origin: url.origin, tls, host, port, weight, maxConns };
}

/** A stable opaque name for a backend that has none, so cookies never carry its address. */
function derivedName(id: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return `b${(h >>> 0).toString(36)}`;
}

function parseHashKey(check: Checker, path: string, value: unknown): HashKeySource | undefined {
  const text = typeof value === 'string' ? value : '';
  const match = /^(ip|path)$|^(header|cookie|query):([A-Za-z0-9_.-]+)$/.exec(text);
  if (!match) return check.fail(path, 'ip, path, header:NAME, cookie:NAME or query:NAME', value);
  if (match[1]) return { from: match[1] as 'ip' | 'path', name: '' };
  return { from: match[2] as 'header' | 'cookie' | 'query', name: match[2] === 'header' ? match[3].toLowerCase() : match[3] };
}


function parseUpstreamTls(check: Checker, path: string, raw: unknown): UpstreamTlsConfig {
  const tls: UpstreamTlsConfig = { verify: true };
  if (raw === undefined) return tls;
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.tls']);
  if (obj?.verify !== undefined) tls.verify = check.boolean(join(path, 'verify'), obj.verify) ?? true;
  if (obj?.ca !== undefined) {
    const file = readableFile(check, join(path, 'ca'), obj.ca);
    if (file !== undefined) {
      const pem = readFileSync(file, 'utf8');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) check.fail(join(path, 'ca'), 'a PEM file of CA certificates', file);
      else tls.ca = pem;
    }
  }
  if (obj?.server_name !== undefined) tls.serverName = check.string(join(path, 'server_name'), obj.server_name);
  return tls;
}

/** "20/s", "600/m" or a plain number: events per second. */
function parseRate(check: Checker, path: string, value: unknown): number | undefined {
  const match = typeof value === 'string' ? /^(\d+(?:\.\d+)?)\/(s|m)$/.exec(value.trim()) : null;
  const rate = typeof value === 'number' ? value : match ? Number(match[1]) / (match[2] === 'm' ? 60 : 1) : NaN;
  if (!(rate > 0)) return check.fail(path, 'a rate such as "20/s" or "600/m"', value);
  return rate;
}

/** `{ rate, burst }`; burst defaults to one second's worth of rate (at least 1). */
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
  return { key, requests, newSessions, concurrentSessions };
}

function parseHealth(check: Checker, path: string, raw: unknown): HealthConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.health']);
  if (!obj) return undefined;
  const health: HealthConfig = { type: 'http', path: '/health', interval: 5000, timeout: 2000, rise: 2, fall: 3, expectStatus: [200, 399] };
  if (obj.type !== undefined) health.type = check.oneOf(`${path}.type`, obj.type, ['http', 'tcp', 'websocket'] as const) ?? 'http';
  if (obj.path !== undefined) {
    const p = check.string(`${path}.path`, obj.path);
    if (p !== undefined && !p.startsWith('/')) check.fail(`${path}.path`, 'a path starting with /', p);
    else if (p !== undefined) health.path = p;
  }
  if (obj.interval !== undefined) health.interval = check.duration(`${path}.interval`, obj.interval) || health.interval;
  if (obj.timeout !== undefined) health.timeout = check.duration(`${path}.timeout`, obj.timeout) || health.timeout;
  if (obj.rise !== undefined) health.rise = check.integer(`${path}.rise`, obj.rise, 1, 100) ?? health.rise;
  if (obj.fall !== undefined) health.fall = check.integer(`${path}.fall`, obj.fall, 1, 100) ?? health.fall;
  if (obj.expect_status !== undefined) {
    const text = String(obj.expect_status);
    const match = /^(\d{3})(?:-(\d{3}))?$/.exec(text);
    if (!match) check.fail(`${path}.expect_status`, 'a status or range such as 200 or "200-399"', obj.expect_status);
    else health.expectStatus = [Number(match[1]), Number(match[2] ?? match[1])];
  }
  return health;
}

function parsePool(check: Checker, path: string, name: string, raw: unknown): PoolConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME']);
  if (!obj) return undefined;
  const algorithm =
    obj.algorithm === undefined ? 'least-conn' : check.oneOf(join(path, 'algorithm'), obj.algorithm, ALGORITHMS);
  let hash: PoolConfig['hash'];
  if (obj.hash !== undefined) {
    const h = check.object(join(path, 'hash'), obj.hash, CONFIG_KEYS['pools.NAME.hash']);
    const key = h ? parseHashKey(check, join(path, 'hash.key'), h.key) : undefined;
    let balanceFactor = 0;
    if (h?.balance_factor !== undefined) {
      const f = h.balance_factor;
      if (typeof f !== 'number' || !(f > 1) || f > 100) check.fail(join(path, 'hash.balance_factor'), 'a number above 1 such as 1.25', f);
      else balanceFactor = f;
    }
    if (key) hash = { key, balanceFactor };
  }
  if (algorithm === 'hash' && obj.hash === undefined) check.fail(join(path, 'hash'), 'hash: { key: ... } for algorithm hash', undefined);
  if (algorithm !== undefined && algorithm !== 'hash' && obj.hash !== undefined) check.fail(join(path, 'hash'), 'no hash options unless algorithm is hash', 'hash options');
  let decay = 10_000;
  if (obj.least_time !== undefined) {
    const lt = check.object(join(path, 'least_time'), obj.least_time, CONFIG_KEYS['pools.NAME.least_time']);
    if (lt?.decay !== undefined) decay = check.duration(join(path, 'least_time.decay'), lt.decay) || decay;
  }
  const slowStart = obj.slow_start === undefined ? 0 : (check.duration(join(path, 'slow_start'), obj.slow_start) ?? 0);
  let sticky: PoolConfig['sticky'];
  if (obj.sticky !== undefined) {
    const st = check.object(join(path, 'sticky'), obj.sticky, CONFIG_KEYS['pools.NAME.sticky']);
    const cookie = st ? check.string(join(path, 'sticky.cookie'), st.cookie) : undefined;
    if (cookie !== undefined && !/^[A-Za-z0-9_.-]+$/.test(cookie)) check.fail(join(path, 'sticky.cookie'), 'a cookie name of letters, digits, ".", "-" and "_"', cookie);
    else if (cookie !== undefined) sticky = { cookie };
  }
  const queue = { size: 0, timeout: 5000 };
  if (obj.queue !== undefined) {
    const q = check.object(join(path, 'queue'), obj.queue, CONFIG_KEYS['pools.NAME.queue']);
    if (q?.size !== undefined) queue.size = check.integer(join(path, 'queue.size'), q.size, 0, 1_000_000) ?? 0;
    if (q?.timeout !== undefined) queue.timeout = check.duration(join(path, 'queue.timeout'), q.timeout) ?? queue.timeout;
  }
  if (!Array.isArray(obj.backends) || obj.backends.length === 0) {
    check.fail(join(path, 'backends'), 'a non-empty list of backends', obj.backends);
    return undefined;
  }
  const backends: BackendConfig[] = [];
  const seen = new Set<string>();
  obj.backends.forEach((item, i) => {
    const backend = parseBackend(check, join(join(path, 'backends'), i), name, item);
    if (!backend) return;
    if (seen.has(backend.id)) {
      check.problems.push(`${join(join(path, 'backends'), i)}: duplicate backend ${backend.origin} in pool ${name}`);
      return;
    }
    seen.add(backend.id);
    backends.push(backend);
  });
  const health = obj.health === undefined ? undefined : parseHealth(check, join(path, 'health'), obj.health);
  const outlier: OutlierConfig = { consecutiveFailures: 5, consecutive5xx: 0, baseEjection: 30_000, maxEjectedShare: 0.5 };
  if (obj.outlier !== undefined) {
    const o = check.object(join(path, 'outlier'), obj.outlier, CONFIG_KEYS['pools.NAME.outlier']);
    if (o?.consecutive_failures !== undefined) outlier.consecutiveFailures = check.integer(join(path, 'outlier.consecutive_failures'), o.consecutive_failures, 0, 1000) ?? 5;
    if (o?.consecutive_5xx !== undefined) outlier.consecutive5xx = check.integer(join(path, 'outlier.consecutive_5xx'), o.consecutive_5xx, 0, 1000) ?? 0;
    if (o?.base_ejection !== undefined) outlier.baseEjection = check.duration(join(path, 'outlier.base_ejection'), o.base_ejection) || outlier.baseEjection;
    if (o?.max_ejected_share !== undefined) {
      const share = o.max_ejected_share;
      if (typeof share !== 'number' || share < 0 || share > 1) check.fail(join(path, 'outlier.max_ejected_share'), 'a number from 0 to 1', share);
      else outlier.maxEjectedShare = share;
    }
  }
  const retries = { count: 2, budget: 0.2 };
  if (obj.retries !== undefined) {
    const r = check.object(join(path, 'retries'), obj.retries, CONFIG_KEYS['pools.NAME.retries']);
    if (r?.count !== undefined) retries.count = check.integer(join(path, 'retries.count'), r.count, 0, 10) ?? 2;
    if (r?.budget !== undefined) {
      if (typeof r.budget !== 'number' || r.budget < 0 || r.budget > 1) check.fail(join(path, 'retries.budget'), 'a share of requests from 0 to 1', r.budget);
      else retries.budget = r.budget;
    }
  }
  const drain = { timeout: 30_000, window: 10_000, rate: 100, code: 1001 };
  if (obj.drain !== undefined) {
    const d = check.object(join(path, 'drain'), obj.drain, CONFIG_KEYS['pools.NAME.drain']);
    if (d?.timeout !== undefined) drain.timeout = check.duration(join(path, 'drain.timeout'), d.timeout) ?? drain.timeout;
    if (d?.window !== undefined) drain.window = check.duration(join(path, 'drain.window'), d.window) ?? drain.window;
    if (d?.rate !== undefined) drain.rate = parseRate(check, join(path, 'drain.rate'), d.rate) ?? drain.rate;
    if (d?.code !== undefined) {
      if (d.code !== 1001 && d.code !== 1012) check.fail(join(path, 'drain.code'), '1001 or 1012', d.code);
      else drain.code = d.code;
    }
  }
  let rebalance: PoolConfig['rebalance'];
  if (obj.rebalance !== undefined) {
    const r = check.object(join(path, 'rebalance'), obj.rebalance, CONFIG_KEYS['pools.NAME.rebalance']);
    if (r) {
      const maxSkew = r.max_skew ?? 1.25;
      if (typeof maxSkew !== 'number' || !(maxSkew > 1)) check.fail(join(path, 'rebalance.max_skew'), 'a number above 1 such as 1.25', maxSkew);
      const rate = r.rate === undefined ? 20 : parseRate(check, join(path, 'rebalance.rate'), r.rate);
      const order = r.order === undefined ? 'newest' : check.oneOf(join(path, 'rebalance.order'), r.order, ['newest', 'oldest'] as const);
      if (typeof maxSkew === 'number' && maxSkew > 1 && rate && order) rebalance = { maxSkew, rate, order };
    }
  }
  const tls = parseUpstreamTls(check, join(path, 'tls'), obj.tls);
  return algorithm ? { name, algorithm, backends, hash, decay, slowStart, sticky, queue, health, outlier, retries, drain, rebalance, tls } : undefined;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers a route may not set or remove: they describe the connection or the message framing. */
const FRAMING_HEADERS = new Set(['connection', 'content-length', 'transfer-encoding', 'upgrade', 'host', 'keep-alive', 'te', 'trailer']);

function parseHeaderEdit(check: Checker, path: string, raw: unknown): HeaderEdit | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['routes[].request_headers']);
  if (!obj) return undefined;
  const edit: HeaderEdit = { set: [], remove: [] };
  const allowedName = (at: string, name: string): boolean => {
    if (!HEADER_NAME.test(name)) return check.fail(at, 'a header name', name) ?? false;
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


function parseRoute(check: Checker, path: string, raw: unknown, pools: Record<string, unknown>, defaults: Config['timeouts']): RouteConfig | undefined {
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
  return pool === undefined ? undefined : { match, pool, allow, deny, websocket, maxBody, timeouts, stripPrefix, addPrefix, requestHeaders, responseHeaders, rateLimit };
}


function parseTcpListener(check: Checker, path: string, raw: unknown, pools: Record<string, unknown>): TcpListenerConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['tcp[]']);
  if (!obj) return undefined;
  const listen = check.hostPort(join(path, 'listen'), obj.listen);
  const pool = check.string(join(path, 'pool'), obj.pool);
  if (pool !== undefined && !(pool in pools)) check.fail(join(path, 'pool'), `the name of a pool (${Object.keys(pools).join(', ')})`, pool);
  const idleTimeout = obj.idle_timeout === undefined ? 3_600_000 : check.duration(join(path, 'idle_timeout'), obj.idle_timeout);
  let sendProxy: 0 | 1 | 2 = 0;
  if (obj.send_proxy !== undefined) {
    const version = check.oneOf(join(path, 'send_proxy'), obj.send_proxy, ['v1', 'v2'] as const);
    sendProxy = version === 'v1' ? 1 : version === 'v2' ? 2 : 0;
  }
  const acceptProxy = obj.accept_proxy === undefined ? false : (check.boolean(join(path, 'accept_proxy'), obj.accept_proxy) ?? false);
  if (!listen || pool === undefined || idleTimeout === undefined) return undefined;
  return { listen, pool, idleTimeout, sendProxy, acceptProxy };
}

function readableFile(check: Checker, path: string, value: unknown): string | undefined {
  const file = check.string(path, value);
  if (file === undefined) return undefined;
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    check.problems.push(`${path}: cannot read ${file} (${(err as NodeJS.ErrnoException).code})`);
    return undefined;
  }
  return file;
}

function parseTls(check: Checker, raw: unknown): TlsConfig | undefined {
  const obj = check.object('tls', raw, CONFIG_KEYS.tls);
  if (!obj) return undefined;
  const cert = readableFile(check, 'tls.cert', obj.cert);
  const key = readableFile(check, 'tls.key', obj.key);
  const certs: TlsConfig['certs'] = [];
  if (obj.certs !== undefined) {
    if (!Array.isArray(obj.certs)) check.fail('tls.certs', 'a list of { names, cert, key }', obj.certs);
    else {
      obj.certs.forEach((item, i) => {
        const path = `tls.certs[${i}]`;
        const entry = check.object(path, item, CONFIG_KEYS['tls.certs[]']);
        if (!entry) return;
        const names = Array.isArray(entry.names) ? entry.names.filter((n): n is string => typeof n === 'string' && /^[A-Za-z0-9*.-]+$/.test(n)) : [];
        if (!Array.isArray(entry.names) || names.length === 0 || names.length !== entry.names.length) {
          check.fail(`${path}.names`, 'a non-empty list of host names', entry.names);
        }
        const c = readableFile(check, `${path}.cert`, entry.cert);
        const k = readableFile(check, `${path}.key`, entry.key);
        if (c && k && names.length > 0) certs.push({ names: names.map((n) => n.toLowerCase()), cert: c, key: k });
      });
    }
  }
  const redirect = obj.redirect === undefined ? undefined : check.hostPort('tls.redirect', obj.redirect);
  return cert && key ? { cert, key, certs, redirect } : undefined;
}

/** Pools that HTTP requests may go to without routes: those no TCP listener uses. */
export function httpPools(pools: string[], tcp: TcpListenerConfig[]): string[] {
  return pools.filter((pool) => !tcp.some((listener) => listener.pool === pool));
}

/** Validates one backend entry (admin API); throws ConfigError naming `path`. */
export function validateBackend(pool: string, raw: unknown, path = 'backend'): BackendConfig {
  const check = new Checker();
  const backend = parseBackend(check, path, pool, raw);
  if (!backend || check.problems.length > 0) throw new ConfigError(check.problems);
  return backend;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Validates raw config input; throws ConfigError listing every problem found. */
export function validateConfig(raw: unknown): Config {
  const check = new Checker();
  const top = check.object('', raw, CONFIG_KEYS['']);
  if (!top) throw new ConfigError(check.problems.map((p) => p.replace(/^: /, 'top level: ')));

  const listen = check.hostPort('listen', top.listen ?? '127.0.0.1:8080');
  const tls = top.tls === undefined ? undefined : parseTls(check, top.tls);
  const workers =
    top.workers === undefined || top.workers === 'auto'
      ? availableParallelism()
      : check.integer('workers', top.workers, 1, 256);
  const engine = top.engine === undefined ? 'auto' : check.oneOf('engine', top.engine, ENGINES);

  const log = { level: 'info' as Config['log']['level'], access: true };
  if (top.log !== undefined) {
    const obj = check.object('log', top.log, CONFIG_KEYS.log);
    if (obj?.level !== undefined) log.level = check.oneOf('log.level', obj.level, LOG_LEVELS) ?? 'info';
    if (obj?.access !== undefined) log.access = check.boolean('log.access', obj.access) ?? true;
  }

  const timeouts = { connect: 5000, response: 60_000, idle: 60_000 };
  if (top.timeouts !== undefined) {
    const obj = check.object('timeouts', top.timeouts, CONFIG_KEYS.timeouts);
    for (const key of ['connect', 'response', 'idle'] as const) {
      if (obj?.[key] !== undefined) timeouts[key] = check.duration(`timeouts.${key}`, obj[key]) ?? timeouts[key];
    }
  }

  const websocket = { maxMessage: 16 * 1024 ** 2, pingInterval: 30_000, maxBuffered: 16 * 1024 ** 2 };
  if (top.websocket !== undefined) {
    const obj = check.object('websocket', top.websocket, CONFIG_KEYS.websocket);
    if (obj?.max_message !== undefined) websocket.maxMessage = check.size('websocket.max_message', obj.max_message) ?? 0;
    if (obj?.max_buffered !== undefined) websocket.maxBuffered = check.size('websocket.max_buffered', obj.max_buffered) ?? 0;
    if (obj?.ping_interval !== undefined) {
      const ms = check.duration('websocket.ping_interval', obj.ping_interval);
      // uWS counts idle time in seconds and refuses idle timeouts from 1 to 8.
      if (ms !== undefined && ms !== 0 && ms < 10_000) check.fail('websocket.ping_interval', 'at least "10s", or "0s" to turn pings off', obj.ping_interval);
      else if (ms !== undefined) websocket.pingInterval = ms;
    }
  }

  const shutdown = { grace: 10_000 };
  if (top.shutdown !== undefined) {
    const obj = check.object('shutdown', top.shutdown, CONFIG_KEYS.shutdown);
    if (obj?.grace !== undefined) shutdown.grace = check.duration('shutdown.grace', obj.grace) ?? shutdown.grace;
  }

  let admin: AdminConfig | undefined;
  if (top.admin !== undefined) {
    const obj = check.object('admin', top.admin, CONFIG_KEYS.admin);
    const adminListen = obj ? check.hostPort('admin.listen', obj.listen ?? '127.0.0.1:9900') : undefined;
    const token = obj?.token === undefined ? undefined : check.string('admin.token', obj.token);
    if (adminListen && !LOOPBACK.test(adminListen.host) && token === undefined) {
      check.fail('admin.token', `a token when admin.listen is not a loopback address (${adminListen.host})`, undefined);
    }
    if (adminListen) admin = { listen: adminListen, token };
  }

  const pools: Record<string, PoolConfig> = {};
  const rawPools = check.mapping('pools', top.pools);
  if (rawPools) {
    if (Object.keys(rawPools).length === 0) check.fail('pools', 'at least one pool', rawPools);
    for (const [name, value] of Object.entries(rawPools)) {
      if (!/^[A-Za-z0-9_-]+$/.test(name)) check.fail(`pools.${name}`, 'a pool name of letters, digits, - and _', name);
      const pool = parsePool(check, `pools.${name}`, name, value);
      if (pool) pools[name] = pool;
    }
  }

  let tcp: TcpListenerConfig[] = [];
  if (top.tcp !== undefined) {
    if (!Array.isArray(top.tcp)) check.fail('tcp', 'a list of TCP listeners', top.tcp);
    else tcp = top.tcp.map((l, i) => parseTcpListener(check, `tcp[${i}]`, l, rawPools ?? {})).filter((l) => l !== undefined);
  }

  let routes: RouteConfig[] = [];
  if (top.routes !== undefined) {
    if (!Array.isArray(top.routes)) check.fail('routes', 'a list of routes', top.routes);
    else routes = top.routes.map((r, i) => parseRoute(check, `routes[${i}]`, r, rawPools ?? {}, timeouts)).filter((r) => r !== undefined);
  } else if (rawPools && httpPools(Object.keys(rawPools), tcp).length > 1) {
    check.fail('routes', 'a list of routes when more than one pool serves HTTP', undefined);
  }

  let trustedProxies: string[] = [];
  if (top.trusted_proxies !== undefined) {
    const list = top.trusted_proxies;
    if (!Array.isArray(list) || list.some((v) => typeof v !== 'string' || !isRange(v))) {
      check.fail('trusted_proxies', 'a list of addresses or CIDR ranges such as "10.0.0.0/8"', list);
    } else trustedProxies = list as string[];
  }
  const proxyProtocol = top.proxy_protocol === undefined ? false : (check.boolean('proxy_protocol', top.proxy_protocol) ?? false);

  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { listen: listen!, tls, admin, workers: workers!, engine: engine!, log, timeouts, websocket, shutdown, pools, routes, trustedProxies, proxyProtocol, tcp };
}
