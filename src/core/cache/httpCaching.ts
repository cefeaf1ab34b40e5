// The rules of a shared HTTP cache (RFC 9111) as pure functions over flat header lists: what may
// be stored, for how long it is fresh, its age, which variant a request selects, when a
// conditional request is answered 304, and how a 304 refreshes what is stored.

import { headerValue } from '../httpSyntax.js';

/** Cache-Control directives fairway acts on (response and request); seconds where numeric. */
export interface CacheControl {
  noStore: boolean;
  noCache: boolean;
  private: boolean;
  public: boolean;
  /** must-revalidate or proxy-revalidate: never served stale. */
  mustRevalidate: boolean;
  maxAge?: number;
  sMaxAge?: number;
  staleWhileRevalidate?: number;
  staleIfError?: number;
}

/** The cache key's parts, in the order a route lists them. */
export type KeyPart = 'method' | 'host' | 'path' | 'query';
export const KEY_PARTS: readonly KeyPart[] = ['method', 'host', 'path', 'query'];

/**
 * Statuses stored when the response gives no explicit lifetime (RFC 9110 §15.1, heuristically
 * cacheable), 206 aside: ranges are not cached. `default_ttl` applies to these.
 */
const CACHEABLE_BY_DEFAULT = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]);
/** Statuses stored only with an explicit lifetime (max-age, s-maxage, Expires). */
const CACHEABLE_IF_EXPLICIT = new Set([302, 307]);

/**
 * Headers a 304 does not replace in the stored response (RFC 9111 §3.2), and Set-Cookie, which
 * is its own client's and never stored.
 */
const KEPT_ON_REFRESH = new Set(['content-length', 'content-encoding', 'content-range', 'transfer-encoding', 'set-cookie']);


/** Splits a list header on commas outside quoted strings. */
function splitList(value: string): string[] {
  const items: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '"' && value[i - 1] !== '\\') quoted = !quoted;
    if (c === ',' && !quoted) {
      items.push(current.trim());
      current = '';
    } else current += c;
  }
  items.push(current.trim());
  return items.filter((item) => item !== '');
}

/** delta-seconds: digits only; anything else counts as 0 (RFC 9111 §1.2.2: treat as stale). */
function seconds(value: string | undefined): number {
  if (value === undefined) return 0;
  const unquoted = value.replace(/^"(.*)"$/, '$1');
  return /^\d+$/.test(unquoted) ? Math.min(Number(unquoted), 2 ** 31) : 0;
}

export function parseCacheControl(value: string | undefined): CacheControl {
  const cc: CacheControl = { noStore: false, noCache: false, private: false, public: false, mustRevalidate: false };
  if (!value) return cc;
  for (const item of splitList(value)) {
    const eq = item.indexOf('=');
    const name = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
    const arg = eq < 0 ? undefined : item.slice(eq + 1).trim();
    switch (name) {
      case 'no-store':
        cc.noStore = true;
        break;
      // no-cache="field" and private="field" are taken whole: stricter, never wrong.
      case 'no-cache':
        cc.noCache = true;
        break;
      case 'private':
        cc.private = true;
        break;
      case 'public':
        cc.public = true;
        break;
      case 'must-revalidate':
      case 'proxy-revalidate':
        cc.mustRevalidate = true;
        break;
      case 'max-age':
        cc.maxAge = seconds(arg);
        break;
      case 's-maxage':
        cc.sMaxAge = seconds(arg);
        break;
      case 'stale-while-revalidate':
        cc.staleWhileRevalidate = seconds(arg);
        break;
      case 'stale-if-error':
        cc.staleIfError = seconds(arg);
        break;
    }
  }
  // s-maxage also means proxy-revalidate (RFC 9111 §5.2.2.10): a shared cache never serves it stale.
  if (cc.sMaxAge !== undefined) cc.mustRevalidate = true;
  return cc;
}

/** An HTTP date in ms, or NaN when it is not one. */
export function httpDate(value: string | undefined): number {
  return value === undefined ? NaN : Date.parse(value);
}

/**
 * The part of the cache key a route's `key` list names: method (HEAD is looked up as GET, whose
 * stored response answers it), host (lower case, with its port), path, query (with its `?`),
 * joined by spaces.
 */
export function cacheKey(parts: readonly KeyPart[], method: string, host: string, target: string): string {
  const q = target.indexOf('?');
  const values: Record<KeyPart, string> = {
    method: method === 'HEAD' ? 'GET' : method,
    host: host.toLowerCase(),
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? '' : target.slice(q),
  };
  return parts.map((part) => values[part]).join(' ');
}

/** Why a response is not stored, or how long it is fresh (ms from its generation). */
export type StoreVerdict = { store: true; lifetime: number } | { store: false; reason: string };

/**
 * Whether a shared cache may store a GET's response (RFC 9111 §3, §3.5), and its freshness
 * lifetime (§4.2.1): s-maxage, else max-age, else Expires − Date, else `defaultTtl` for the
 * statuses cacheable by default. A response that is never fresh is stored only when it has a
 * validator, so that it can be revalidated. Responses with Set-Cookie are never stored.
 */
export function storability(requestHeaders: readonly string[], status: number, headers: readonly string[], defaultTtl: number): StoreVerdict {
  const request = parseCacheControl(headerValue(requestHeaders, 'cache-control'));
  if (request.noStore) return { store: false, reason: 'request no-store' };
  const cc = parseCacheControl(headerValue(headers, 'cache-control'));
  if (cc.noStore) return { store: false, reason: 'no-store' };
  if (cc.private) return { store: false, reason: 'private' };
  if (headerValue(headers, 'set-cookie') !== undefined) return { store: false, reason: 'set-cookie' };
  if (varyNames(headers) === '*') return { store: false, reason: 'vary *' };
  if (headerValue(requestHeaders, 'authorization') !== undefined && !cc.public && cc.sMaxAge === undefined && !cc.mustRevalidate) {
    return { store: false, reason: 'authorization' };
  }
  const explicit = explicitLifetime(cc, headers);
  if (!CACHEABLE_BY_DEFAULT.has(status) && !(explicit !== undefined && CACHEABLE_IF_EXPLICIT.has(status))) return { store: false, reason: `status ${status}` };
  const lifetime = cc.noCache ? 0 : (explicit ?? defaultTtl);
  // Never fresh, it is still of use when it can be revalidated or served stale.
  if (lifetime <= 0 && !hasValidator(headers) && !cc.staleWhileRevalidate && !cc.staleIfError) return { store: false, reason: 'never fresh, no validator' };
  return { store: true, lifetime };
}

function explicitLifetime(cc: CacheControl, headers: readonly string[]): number | undefined {
  if (cc.sMaxAge !== undefined) return cc.sMaxAge * 1000;
  if (cc.maxAge !== undefined) return cc.maxAge * 1000;
  const expires = headerValue(headers, 'expires');
  if (expires === undefined) return undefined;
  const at = httpDate(expires);
  const date = httpDate(headerValue(headers, 'date'));
  // An invalid Expires (0, say) means already expired.
  return Number.isNaN(at) ? 0 : Math.max(0, at - (Number.isNaN(date) ? Date.now() : date));
}

export function hasValidator(headers: readonly string[]): boolean {
  return headerValue(headers, 'etag') !== undefined || headerValue(headers, 'last-modified') !== undefined;
}

/** When the stored response was asked for and received (ms), for its age (RFC 9111 §4.2.3). */
export interface StoredTimes {
  requestTime: number;
  responseTime: number;
}

/** The stored response's current age in ms at `now` (RFC 9111 §4.2.3). */
export function currentAge(headers: readonly string[], times: StoredTimes, now: number): number {
  const date = httpDate(headerValue(headers, 'date'));
  const apparent = Number.isNaN(date) ? 0 : Math.max(0, times.responseTime - date);
  const ageValue = seconds(headerValue(headers, 'age')) * 1000;
  const corrected = ageValue + (times.responseTime - times.requestTime);
  return Math.max(apparent, corrected) + (now - times.responseTime);
}

/** The Age header's value for a response served at `now`: whole seconds. */
export function ageSeconds(headers: readonly string[], times: StoredTimes, now: number): string {
  return String(Math.floor(currentAge(headers, times, now) / 1000));
}

/** The request headers a response varies on, lower case; '*' for Vary: *. */
export function varyNames(headers: readonly string[]): string[] | '*' {
  const vary = headerValue(headers, 'vary');
  if (vary === undefined) return [];
  const names = splitList(vary).map((name) => name.toLowerCase());
  return names.includes('*') ? '*' : [...new Set(names)].sort();
}

/** The request's values of `names`, normalised (RFC 9111 §4.1: whitespace, duplicates joined). */
export function varyValues(names: readonly string[], requestHeaders: readonly string[]): string[] {
  return names.map((name) => {
    const value = headerValue(requestHeaders, name);
    return value === undefined ? '\0' : splitList(value).join(',');
  });
}

/** What a request's own Cache-Control asks of the cache. */
export interface RequestDirectives {
  /** Must not be answered from the cache without revalidation (no-cache, max-age=0, Pragma: no-cache). */
  revalidate: boolean;
  /** Largest age it accepts, ms (max-age=N), or Infinity. */
  maxAge: number;
  /** Neither stored nor answered from the cache. */
  noStore: boolean;
}

export function requestDirectives(requestHeaders: readonly string[]): RequestDirectives {
  const raw = headerValue(requestHeaders, 'cache-control');
  const cc = parseCacheControl(raw);
  const pragmaNoCache = raw === undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(headerValue(requestHeaders, 'pragma') ?? '');
  return { revalidate: cc.noCache || pragmaNoCache || cc.maxAge === 0, maxAge: cc.maxAge === undefined ? Infinity : cc.maxAge * 1000, noStore: cc.noStore };
}

/** How a stored response may answer a request at `now`. */
export type Usability = 'fresh' | 'stale-while-revalidate' | 'stale';

export function usability(headers: readonly string[], times: StoredTimes, lifetime: number, request: RequestDirectives, now: number): Usability {
  const age = currentAge(headers, times, now);
  if (!request.revalidate && age < lifetime && age <= request.maxAge) return 'fresh';
  const cc = parseCacheControl(headerValue(headers, 'cache-control'));
  if (!request.revalidate && age <= request.maxAge && !cc.mustRevalidate && !cc.noCache && cc.staleWhileRevalidate !== undefined && age < lifetime + cc.staleWhileRevalidate * 1000) {
    return 'stale-while-revalidate';
  }
  return 'stale';
}

/** Whether a stale response may stand in for a failed fetch at `now` (stale-if-error, RFC 5861). */
export function usableOnError(headers: readonly string[], times: StoredTimes, lifetime: number, now: number): boolean {
  const cc = parseCacheControl(headerValue(headers, 'cache-control'));
  if (cc.mustRevalidate || cc.noCache || cc.staleIfError === undefined) return false;
  return currentAge(headers, times, now) < lifetime + cc.staleIfError * 1000;
}

/** Whether a stored response is worth keeping at `now`: still fresh, usable stale, or revalidatable. */
export function worthKeeping(headers: readonly string[], times: StoredTimes, lifetime: number, now: number): boolean {
  if (hasValidator(headers)) return true;
  const cc = parseCacheControl(headerValue(headers, 'cache-control'));
  const grace = Math.max(cc.staleWhileRevalidate ?? 0, cc.staleIfError ?? 0) * 1000;
  return currentAge(headers, times, now) < lifetime + grace;
}

/** Conditional headers that revalidate a stored response with its backend. */
export function validatorsFor(headers: readonly string[]): string[] {
  const out: string[] = [];
  const etag = headerValue(headers, 'etag');
  const modified = headerValue(headers, 'last-modified');
  if (etag !== undefined) out.push('if-none-match', etag);
  if (modified !== undefined) out.push('if-modified-since', modified);
  return out;
}

/** Whether the request has conditions of its own (then they, not the cache's, go to the backend). */
export function isConditional(requestHeaders: readonly string[]): boolean {
  return headerValue(requestHeaders, 'if-none-match') !== undefined || headerValue(requestHeaders, 'if-modified-since') !== undefined;
}

const opaque = (tag: string) => tag.trim().replace(/^W\//, '');

/**
 * Whether a GET or HEAD with If-None-Match / If-Modified-Since is answered 304 by the stored
 * response (RFC 9110 §13.1.2, §13.1.3: weak comparison; If-None-Match wins when both are there).
 */
export function notModified(requestHeaders: readonly string[], status: number, headers: readonly string[]): boolean {
  // Conditions apply only to what would be a 2xx answer (RFC 9110 §13.2.2).
  if (status < 200 || status > 299) return false;
  const ifNoneMatch = headerValue(requestHeaders, 'if-none-match');
  if (ifNoneMatch !== undefined) {
    const etag = headerValue(headers, 'etag');
    if (ifNoneMatch.trim() === '*') return true;
    return etag !== undefined && splitList(ifNoneMatch).some((tag) => opaque(tag) === opaque(etag));
  }
  const since = httpDate(headerValue(requestHeaders, 'if-modified-since'));
  const modified = httpDate(headerValue(headers, 'last-modified') ?? headerValue(headers, 'date'));
  return !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since;
}

/** The headers a 304 answer carries from the full response (RFC 9110 §15.4.5). */
export function notModifiedHeaders(headers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified'].includes(headers[i])) out.push(headers[i], headers[i + 1]);
  }
  return out;
}

/**
 * The stored headers refreshed by a 304's (RFC 9111 §3.2): its fields replace the stored ones.
 * The stored Age goes whatever the 304 says: the refreshed response's age starts from the 304.
 */
export function refreshedHeaders(stored: readonly string[], fromNotModified: readonly string[]): string[] {
  const replaced = new Set<string>(['age']);
  for (let i = 0; i < fromNotModified.length; i += 2) if (!KEPT_ON_REFRESH.has(fromNotModified[i])) replaced.add(fromNotModified[i]);
  const out: string[] = [];
  for (let i = 0; i < stored.length; i += 2) if (!replaced.has(stored[i])) out.push(stored[i], stored[i + 1]);
  for (let i = 0; i < fromNotModified.length; i += 2) if (replaced.has(fromNotModified[i])) out.push(fromNotModified[i], fromNotModified[i + 1]);
  return out;
}
