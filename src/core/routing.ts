// Matching a request to a pool by host, path prefix and headers, first matching route wins.

import type { Config, RouteConfig } from '../config/schema.js';

export class Router {
  private readonly routes: RouteConfig[];
  private readonly fallback: string | undefined;
  private readonly needsHeaders: boolean;

  constructor(config: Config) {
    this.routes = config.routes;
    const pools = Object.keys(config.pools);
    this.fallback = this.routes.length === 0 && pools.length === 1 ? pools[0] : undefined;
    this.needsHeaders = this.routes.some((r) => r.match.headers !== undefined);
  }

  /**
   * The pool for a request, or undefined when no route matches. `host` is the Host header without
   * its port, lower-cased; `header` reads a lower-cased request header ('' when absent).
   */
  route(path: string, host: string, header: (name: string) => string): string | undefined {
    if (this.fallback !== undefined) return this.fallback;
    for (const { match, pool } of this.routes) {
      if (match.host !== undefined && match.host !== host) continue;
      if (match.path !== undefined && !pathHasPrefix(path, match.path)) continue;
      if (this.needsHeaders && match.headers !== undefined) {
        let all = true;
        for (const name in match.headers) {
          if (header(name) !== match.headers[name]) {
            all = false;
            break;
          }
        }
        if (!all) continue;
      }
      return pool;
    }
    return undefined;
  }
}

/** "/ws" matches "/ws", "/ws/x" and "/ws?room=1" but not "/wsx"; "/" and "/api/" match as written. */
function pathHasPrefix(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith('/')) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}
