// The response cache's one store per caching route, in the primary: every worker asks it and fills
// it, so an instance holds each response once. LRU by bytes (lru-cache), variants per key (Vary),
// and one fetch at a time per key: identical requests wait for it (bounded by lock_timeout).

import { LRUCache } from 'lru-cache';
import type { CacheConfig, Config, RouteConfig } from '../config/types.js';
import { requestDirectives, usability, varyValues, worthKeeping } from '../core/cache/httpCaching.js';
import { CACHE_RESULTS, type CacheAnswer, type CachedResponse, type CacheResult, type WorkerMessage } from '../engine/messages.js';

/** What an entry costs beyond its body and header bytes (its objects), for the size bound. */
const ENTRY_OVERHEAD = 256;

/** Most variants (Vary) kept per key: past it, the least recently stored one goes. */
export const MAX_VARIANTS = 16;

interface Waiter {
  worker: number;
  id: number;
  headers: string[];
}

/** The fetch in flight for a key (under `lock`), and the identical requests waiting for it. */
interface InFlight {
  lock: number;
  waiters: Waiter[];
  timer: NodeJS.Timeout;
}

/**
 * A lock handed to a fetch, kept until the fetch reports (store or abandon) or its worker dies,
 * even past lock_timeout: a purge or an invalidation meanwhile means its response is not stored.
 */
interface Lock {
  key: string;
  lead: number;
  invalidated: boolean;
}

export interface RouteCacheStats {
  route: number;
  entries: number;
  bytes: number;
  size: number;
  evictions: number;
  /** Keys being fetched for waiting requests, and the requests waiting for them. */
  fetching: number;
  waiting: number;
  results: Record<CacheResult, number>;
}

function entryBytes(entry: CachedResponse): number {
  let bytes = entry.body.byteLength + ENTRY_OVERHEAD + entry.statusMessage.length;
  for (const text of entry.headers) bytes += text.length;
  for (const text of entry.varyValues) bytes += text.length;
  return bytes;
}

class RouteCache {
  /** Key → its variants, most recent first. */
  private readonly lru: LRUCache<string, CachedResponse[]>;
  private readonly inFlight = new Map<string, InFlight>();
  private readonly locks = new Map<number, Lock>();
  private nextLock = 1;
  evictions = 0;
  readonly results = Object.fromEntries(CACHE_RESULTS.map((r) => [r, 0])) as Record<CacheResult, number>;

  constructor(
    readonly route: number,
    readonly config: CacheConfig,
    private readonly answer: (worker: number, id: number, answer: CacheAnswer) => void,
  ) {
    this.lru = new LRUCache<string, CachedResponse[]>({
      maxSize: config.size,
      maxEntrySize: config.size,
      sizeCalculation: (variants) => Math.max(1, variants.reduce((sum, entry) => sum + entryBytes(entry), 0)),
      dispose: (_variants, _key, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  get entries(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  lookup(worker: number, id: number, key: string, headers: string[], now = Date.now()): void {
    const found = this.variant(key, headers);
    if (found) {
      const use = usability(found.headers, found, found.lifetime, requestDirectives(headers), now);
      if (use === 'fresh') return this.answer(worker, id, { kind: 'fresh', entry: found });
      if (use === 'stale-while-revalidate') {
        const lock = this.inFlight.has(key) ? 0 : this.lock(key, worker);
        return this.answer(worker, id, { kind: 'stale', entry: found, lock });
      }
    }
    const flight = this.inFlight.get(key);
    if (flight) {
      flight.waiters.push({ worker, id, headers });
      return;
    }
    this.answer(worker, id, { kind: 'fetch', lock: this.lock(key, worker), entry: found });
  }

  /** The stored variant of `key` that `headers` select (RFC 9111 §4.1), if any. */
  private variant(key: string, headers: string[]): CachedResponse | undefined {
    const variants = this.lru.get(key);
    if (!variants) return undefined;
    return variants.find((entry) => varyValues(entry.varyNames, headers).every((value, i) => value === entry.varyValues[i]));
  }

  /** `key` is fetched by `lead` (a worker) for the requests that come to wait for it. */
  private lock(key: string, lead: number): number {
    const lock = this.newLock(key, lead);
    // A lead that does not report in time (its backend is slow) lets its waiters go at the deadline.
    const timer = setTimeout(() => this.release(key, lock, undefined), this.config.lockTimeout);
    timer.unref();
    this.inFlight.set(key, { lock, waiters: [], timer });
    return lock;
  }

  private newLock(key: string, lead: number): number {
    const lock = this.nextLock++;
    this.locks.set(lock, { key, lead, invalidated: false });
    return lock;
  }

  /**
   * The fetch under `lock` for `key` ended, having stored `stored` (or nothing); nothing happens
   * when the key's waiters were already let go (a later fetch may hold it now). A waiter whose
   * variant it is gets it: it was fetched after the waiter's request arrived, which satisfies even
   * a request's no-cache (RFC 9111 §4). The others go to the backend themselves, without filling
   * the store, with the stored response they select, if any, to stand in on an error.
   */
  private release(key: string, lock: number, stored: CachedResponse | undefined): void {
    const flight = this.inFlight.get(key);
    if (!flight || flight.lock !== lock) return;
    clearTimeout(flight.timer);
    this.inFlight.delete(key);
    for (const waiter of flight.waiters) {
      const entry = this.variant(key, waiter.headers);
      if (stored && entry === stored) this.answer(waiter.worker, waiter.id, { kind: 'fresh', entry });
      else this.answer(waiter.worker, waiter.id, { kind: 'fetch', lock: 0, entry });
    }
  }

  /**
   * The lead of `key` left before the backend said whether its response is storable: the first
   * waiter fetches in its place, under a new lock, within the wait the others already started.
   */
  private promote(key: string, lock: number): void {
    const flight = this.inFlight.get(key);
    if (!flight || flight.lock !== lock) return;
    const next = flight.waiters.shift();
    if (!next) return this.release(key, lock, undefined);
    flight.lock = this.newLock(key, next.worker);
    this.answer(next.worker, next.id, { kind: 'fetch', lock: flight.lock, entry: this.variant(key, next.headers) });
  }

  /** A worker died: its waiting requests are gone, and the keys it was fetching are free. */
  workerDied(worker: number): void {
    for (const flight of this.inFlight.values()) flight.waiters = flight.waiters.filter((waiter) => waiter.worker !== worker);
    for (const [lock, held] of [...this.locks]) {
      if (held.lead !== worker) continue;
      this.locks.delete(lock);
      this.promote(held.key, lock);
    }
  }

  store(key: string, lock: number, entry: CachedResponse, now = Date.now()): void {
    const held = this.locks.get(lock);
    // A lock this store never handed out (one from before a reload that replaced it) stores nothing.
    if (!held) return;
    this.locks.delete(lock);
    if (!held.invalidated && entry.body.byteLength <= this.config.maxObject) {
      const kept = (this.lru.peek(key) ?? []).filter(
        (other) => !other.varyValues.every((value, i) => value === entry.varyValues[i]) && worthKeeping(other.headers, other, other.lifetime, now),
      );
      this.lru.set(key, [entry, ...kept].slice(0, MAX_VARIANTS));
    }
    this.release(key, lock, this.lru.peek(key)?.[0] === entry ? entry : undefined);
  }

  abandon(key: string, lock: number, retry: boolean): void {
    if (!this.locks.delete(lock)) return;
    if (retry) this.promote(key, lock);
    else this.release(key, lock, undefined);
  }

  invalidate(key: string): void {
    this.lru.delete(key);
    this.invalidateLocks((locked) => locked === key);
  }

  /** Removes every key starting with `prefix`; returns how many went. */
  purge(prefix: string): number {
    let purged = 0;
    for (const key of [...this.lru.keys()]) {
      if (key.startsWith(prefix)) {
        this.lru.delete(key);
        purged++;
      }
    }
    this.invalidateLocks((locked) => locked.startsWith(prefix));
    return purged;
  }

  /** Fetches in flight for the keys that `matches` will not store what they fetched before now. */
  private invalidateLocks(matches: (key: string) => boolean): void {
    for (const held of this.locks.values()) if (matches(held.key)) held.invalidated = true;
  }

  stats(): RouteCacheStats {
    let waiting = 0;
    for (const flight of this.inFlight.values()) waiting += flight.waiters.length;
    return { route: this.route, entries: this.entries, bytes: this.bytes, size: this.config.size, evictions: this.evictions, fetching: this.inFlight.size, waiting, results: { ...this.results } };
  }
}

/**
 * What decides the responses a route's store holds: which requests reach it, the pool that answers
 * them and how they are sent there, and the cache settings. The backends of the pool may change
 * (as NGINX keeps its cache over a reload); the route's response header edits apply when serving.
 */
function storeIdentity(route: RouteConfig): string {
  const { match, pool, stripPrefix, addPrefix, requestHeaders, cache } = route;
  return JSON.stringify({ match, pool, stripPrefix, addPrefix, requestHeaders, cache });
}

/**
 * Every caching route's store. A reload keeps a route's store (its index in `routes[]`) when the
 * route's identity (storeIdentity) did not change, and starts it empty otherwise.
 */
export class ResponseCaches {
  private caches = new Map<number, { identity: string; cache: RouteCache }>();

  constructor(
    config: Config,
    private readonly send: (worker: number, message: { type: 'cache-answer'; id: number; answer: CacheAnswer }) => void,
    /** Handles what the other workers have posted and the primary has not read yet (Supervisor.catchUp). */
    private readonly catchUp: (worker: number) => void,
  ) {
    this.configure(config);
  }

  configure(config: Config): void {
    const next = new Map<number, { identity: string; cache: RouteCache }>();
    config.routes.forEach((route, index) => {
      if (!route.cache) return;
      const identity = storeIdentity(route);
      const current = this.caches.get(index);
      if (current?.identity === identity) next.set(index, current);
      else next.set(index, { identity, cache: new RouteCache(index, route.cache, (worker, id, answer) => this.send(worker, { type: 'cache-answer', id, answer })) });
    });
    this.caches = next;
  }

  get enabled(): boolean {
    return this.caches.size > 0;
  }

  /** A worker's cache message; true when it was one. */
  onWorkerMessage(worker: number, message: WorkerMessage): boolean {
    switch (message.type) {
      case 'cache-lookup': {
        // An invalidation another worker posted before this lookup was made is applied first:
        // a client that got the answer to its POST never gets the stored GET it invalidated.
        this.catchUp(worker);
        const cache = this.caches.get(message.route)?.cache;
        // A route that stopped caching in a reload: the request goes to the backend.
        if (!cache) this.send(worker, { type: 'cache-answer', id: message.id, answer: { kind: 'fetch', lock: 0 } });
        else cache.lookup(worker, message.id, message.key, message.headers);
        return true;
      }
      case 'cache-store':
        this.caches.get(message.route)?.cache.store(message.key, message.lock, message.entry);
        return true;
      case 'cache-abandon':
        this.caches.get(message.route)?.cache.abandon(message.key, message.lock, message.retry);
        return true;
      case 'cache-invalidate':
        this.caches.get(message.route)?.cache.invalidate(message.key);
        return true;
      case 'cache-counts':
        for (let i = 0; i < message.counts.length; i += 3) {
          const cache = this.caches.get(message.counts[i] as number)?.cache;
          if (cache) cache.results[message.counts[i + 1] as CacheResult] += message.counts[i + 2] as number;
        }
        return true;
      default:
        return false;
    }
  }

  workerDied(worker: number): void {
    for (const { cache } of this.caches.values()) cache.workerDied(worker);
  }

  /** Removes every stored key that starts with `prefix`, in every route; returns how many went. */
  purge(prefix: string): number {
    let purged = 0;
    for (const { cache } of this.caches.values()) purged += cache.purge(prefix);
    return purged;
  }

  stats(): RouteCacheStats[] {
    return [...this.caches.values()].map(({ cache }) => cache.stats());
  }
}
