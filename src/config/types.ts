// The shapes of a validated config: what every layer imports. Validation lives in schema.ts and
// the per-section parsers; defaults in defaults.ts.

export const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'least-conn', 'random', 'p2c', 'least-time', 'hash'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
import type { KeyPart } from '../core/cache/httpCaching.js';

export const ENGINES = ['auto', 'uws', 'native-free'] as const;
export type EngineName = (typeof ENGINES)[number];
export const COMPRESSION = ['off', 'shared', 'dedicated'] as const;
export type Compression = (typeof COMPRESSION)[number];
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

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
  /** Where a discovered backend came from, e.g. "dns chat.internal"; absent for a listed one. */
  source?: string;
}

/**
 * A name that stands for many backends: its A and AAAA records with one port, or its SRV
 * records (targets, ports, weights). Re-resolved every `interval` ms, sooner when the records'
 * TTL is shorter (never more often than once a second).
 */
export interface DiscoverySource {
  kind: 'dns' | 'srv';
  name: string;
  /** The port of every address (dns); SRV records carry their own. */
  port: number;
  interval: number;
  /** Weight and max_conns of each backend found (dns); SRV weights come from the records. */
  weight: number;
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
  /** The listed backends and, while the pool runs, those its discovery sources found. */
  backends: BackendConfig[];
  /** DNS names whose addresses become backends of this pool. */
  discovery: DiscoverySource[];
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
  /** A regular expression (source) the response body must match (http checks). */
  expectBody?: string;
  /** Thresholds on fields of a JSON body: any `unhealthy` one fails the check, any `degraded` one keeps the backend up at `degradedWeight` of its weight. */
  json?: { unhealthy: BodyCondition[]; degraded: BodyCondition[] };
  /** Share of its weight a degraded backend keeps (0–1). */
  degradedWeight: number;
  /** HAProxy's agent check: a TCP agent on the backend that answers its weight and state. */
  agent?: AgentConfig;
}

/** One threshold on a JSON health body: `field` (dotted path) compared with `value`. */
export interface BodyCondition {
  field: string;
  op: '>' | '>=' | '<' | '<=' | '==' | '!=';
  value: number | string | boolean;
}

export interface AgentConfig {
  port: number;
  interval: number;
  timeout: number;
  /** Text sent to the agent once connected (HAProxy `agent-send`); empty = nothing. */
  send: string;
}

/** The DNS servers discovery asks (HAProxy `resolvers`, NGINX `resolver`); absent = the system's. */
export interface ResolverConfig {
  /** "host:port" or "host"; empty = the system's servers. */
  servers: string[];
  /** How long one query may take, ms. */
  timeout: number;
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
  /** The route's response cache, one store for every worker; absent = off. */
  cache?: CacheConfig;
}

/** `routes[].cache`: sizes in bytes, durations in ms. */
export interface CacheConfig {
  /** Most bytes the route's stored responses take (bodies and heads). */
  size: number;
  /** Largest response body stored; larger ones pass through. */
  maxObject: number;
  /** Freshness of a response that gives no lifetime of its own (as NGINX's proxy_cache_valid). */
  defaultTtl: number;
  /** Longest a request waits for an identical one in flight before going to the backend itself. */
  lockTimeout: number;
  key: KeyPart[];
  /** Response header naming hit, miss, stale, revalidated or bypass; '' = none. */
  statusHeader: string;
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
  /** Where the buckets are counted: this instance's shared memory, or Redis for the whole fleet. */
  scope: 'instance' | 'fleet';
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
  /** Lower-case host names the listener answers to besides IP literals and localhost. */
  hosts: string[];
}

/** Several fairway instances sharing exact counts through Redis (docs/fleet.md). */
export interface FleetConfig {
  /** redis:// or rediss:// URL; a password may be in the URL or in FAIRWAY_REDIS_PASSWORD. */
  redis: string;
  /** This instance's id in the fleet. */
  name: string;
  /** An instance silent for 3 heartbeats is dead, ms. */
  heartbeat: number;
  /** How often this instance publishes its counts and folds in the others', ms. */
  sync: number;
  /** How long a Redis answer may take before this instance picks locally, ms. */
  timeout: number;
  /** WebSocket and TCP session picks are made fleet-wide in Redis. */
  exactSessions: boolean;
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
  /** Shared counts with other instances; off when absent. */
  fleet?: FleetConfig;
  workers: number;
  engine: EngineName;
  /** format: JSON lines, or pretty lines for people; auto = pretty when stdout is a terminal. */
  log: { level: (typeof LOG_LEVELS)[number]; access: boolean; format: (typeof LOG_FORMATS)[number] };
  /**
   * Upstream HTTP timeouts (connect, response, idle) and the client's: a whole request head, and
   * a pause in a request body, in milliseconds.
   */
  timeouts: { connect: number; response: number; idle: number; requestHead: number; requestBody: number };
  /** Request line and header section sizes past which a request is refused (414, 431), bytes. */
  limits: { maxRequestLine: number; maxRequestHead: number };
  /** `compression`: permessage-deflate on each leg when the other end offers or accepts it (docs/configuration.md). */
  websocket: { maxMessage: number; pingInterval: number; maxBuffered: number; compression: Compression };
  shutdown: { grace: number };
  /** How discovery resolves names. */
  resolver: ResolverConfig;
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
