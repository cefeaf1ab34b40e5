// Matching a request to a pool by host, path prefix, method, headers and query parameters; the
// first matching route wins, and its access list decides who may use it.

import { httpPools } from '../config/listeners.js';
import type { CacheConfig, Config, HeaderEdit, RouteConfig } from '../config/types.js';
import { AccessList } from './accessList.js';
import { bucket, type Bucket } from './limits/clientLimits.js';

export interface MatchedRoute {
  pool: string;
  /** Present when the route has allow or deny lists. */
  access?: AccessList;
  websocket: boolean;
  /** Largest request body in bytes; 0 = no limit. */
  maxBody: number;
  /** Per-route upstream timeouts, ms; absent = the listener's defaults. */
  timeouts?: { response: number; idle: number };
  /** Present when the route rewrites the path or edits request headers on the way upstream. */
  upstreamEdit?: UpstreamEdit;
  responseHeaders?: HeaderEdit;
  limit?: RouteLimit;
  /** Present when the route caches responses: its store is the route's index in `routes[]`. */
  cache?: { route: number; config: CacheConfig };
}

/** A route's per-client limits, ready for ClientLimits.admit. */
export interface RouteLimit {
  /** Prefix of the keys of this route, so that routes count separately. */
  prefix: string;
  /** Header naming the client; '' = its address. */
  header: string;
  requests?: Bucket;
  sessions?: Bucket;
  maxSessions: number;
  /** The buckets are counted in Redis for the whole fleet (scope: fleet); maxSessions stays here. */
  fleet: boolean;
}

export interface UpstreamEdit {
  stripPrefix?: string;
  addPrefix?: string;
  headers?: HeaderEdit;
}

/** What routing may read of a request, all lower-cased names; '' (or undefined) when absent. */
export interface RequestFacts {
  path: string;
  /** Host header without its port, lower-cased. */
  host: string;
  method: string;
  header(name: string): string;
  query(name: string): string | undefined;
}

export class Router {
  private readonly routes: { config: RouteConfig; matched: MatchedRoute }[];
  /** The only route when there is one pool and no routes: every request takes it. */
  readonly single: MatchedRoute | undefined;

  constructor(config: Config) {
    this.routes = config.routes.map((route, index) => ({
      config: route,
      matched: {
        pool: route.pool,
        access: route.allow || route.deny ? new AccessList(route.allow, route.deny) : undefined,
        websocket: route.websocket,
        maxBody: route.maxBody,
        timeouts: route.timeouts.response !== config.timeouts.response || route.timeouts.idle !== config.timeouts.idle ? route.timeouts : undefined,
        upstreamEdit:
          route.stripPrefix || route.addPrefix || route.requestHeaders
            ? { stripPrefix: route.stripPrefix, addPrefix: route.addPrefix, headers: route.requestHeaders }
            : undefined,
        responseHeaders: route.responseHeaders,
        limit: route.rateLimit && {
          prefix: `${index}:`,
          header: route.rateLimit.key.from === 'header' ? route.rateLimit.key.name : '',
          requests: route.rateLimit.requests && bucket(route.rateLimit.requests.rate, route.rateLimit.requests.burst),
          sessions: route.rateLimit.newSessions && bucket(route.rateLimit.newSessions.rate, route.rateLimit.newSessions.burst),
          maxSessions: route.rateLimit.concurrentSessions,
          fleet: route.rateLimit.scope === 'fleet',
        },
        cache: route.cache && { route: index, config: route.cache },
      },
    }));
    const pools = httpPools(Object.keys(config.pools), config.tcp);
    this.single = this.routes.length === 0 && pools.length === 1 ? { pool: pools[0], websocket: true, maxBody: 0 } : undefined;
  }

  /** The route for a request, or undefined when none matches. */
  route(request: RequestFacts): MatchedRoute | undefined {
    if (this.single !== undefined) return this.single;
    for (const { config, matched } of this.routes) {
      const { match } = config;
      if (match.host !== undefined && !hostMatches(request.host, match.host)) continue;
      if (match.path !== undefined && !pathHasPrefix(request.path, match.path)) continue;
      if (match.methods !== undefined && !match.methods.includes(request.method.toUpperCase())) continue;
      if (match.headers !== undefined && !allEqual(match.headers, (name) => request.header(name))) continue;
      if (match.query !== undefined && !allEqual(match.query, (name) => request.query(name))) continue;
      return matched;
    }
    return undefined;
  }
}

/** Exact, or `*.example.com` for any name below example.com (not example.com itself). */
function hostMatches(host: string, pattern: string): boolean {
  if (pattern.startsWith('*.')) return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  return host === pattern;
}

function allEqual(wanted: Record<string, string>, read: (name: string) => string | undefined): boolean {
  for (const name in wanted) if (read(name) !== wanted[name]) return false;
  return true;
}

/** "/ws" matches "/ws", "/ws/x" and "/ws?room=1" but not "/wsx"; "/" and "/api/" match as written. */
function pathHasPrefix(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith('/')) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}

/**
 * The path sent upstream: `stripPrefix` taken off when the path starts with it ("/api/users" →
 * "/users", "/api" → "/"), then `addPrefix` put in front ("/users" → "/v1/users").
 */
export function rewritePath(path: string, stripPrefix: string | undefined, addPrefix: string | undefined): string {
  if (stripPrefix && pathHasPrefix(path, stripPrefix)) {
    path = path.slice(stripPrefix.endsWith('/') ? stripPrefix.length - 1 : stripPrefix.length);
    if (path === '' || path.startsWith('?')) path = `/${path}`;
  }
  if (addPrefix) path = addPrefix.endsWith('/') ? addPrefix + path.slice(1) : path === '/' ? addPrefix : addPrefix + path;
  return path;
}

/** Applies a header edit to a flat [name, value, …] list of lower-case names, in place. */
export function editHeaders(headers: string[], edit: HeaderEdit): void {
  if (edit.remove.length > 0 || edit.set.length > 0) {
    let kept = 0;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      if (edit.remove.includes(name) || edit.set.some(([setName]) => setName === name)) continue;
      headers[kept++] = name;
      headers[kept++] = headers[i + 1];
    }
    headers.length = kept;
  }
  for (const [name, value] of edit.set) headers.push(name, value);
}
