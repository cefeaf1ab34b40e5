// The response cache's one store per caching route, in the primary: every worker asks it and fills
// it, so an instance holds each response once. LRU by bytes (lru-cache), variants per key (Vary),
// and one fetch at a time per key: identical requests wait for it (bounded by lock_timeout).

import { LRUCache } from 'lru-cache';
import type { CacheConfig, Config } from '../config/types.js';
import { requestDirectives, usability, varyValues, worthKeeping } from '../core/cache/httpCaching.js';
import { CACHE_RESULTS, type CacheAnswer, type CachedResponse, type CacheResult, type WorkerMessage } from '../engine/messages.js';

/** What an entry costs beyond its body and header bytes (its objects), for the size bound. */
const ENTRY_OVERHEAD = 256;

interface Waiter {
  worker: number;
  id: number;
  headers: string[];
}

/** The one fetch in flight for a key (by `lead`, a worker), and the identical requests waiting for it. */
interface InFlight {
  lead: number;
  waiters: Waiter[];
  timer: NodeJS.Timeout;
}

export interface RouteCacheStats {
  route: number;
  entries: number;
  bytes: number;
  size: number;
  evictions: number;
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
        const revalidate = !this.inFlight.has(key);
        if (revalidate) this.lock(key, worker);
        return this.answer(worker, id, { kind: 'stale', entry: found, revalidate });
      }
    }
    const flight = this.inFlight.get(key);
    if (flight) {
      flight.waiters.push({ worker, id, headers });
      return;
    }
    this.lock(key, worker);
    this.answer(worker, id, { kind: 'fetch', lead: true, entry: found });
  }

  /** The stored variant of `key` that `headers` select (RFC 9111 §4.1), if any. */
  private variant(key: string, headers: string[]): CachedResponse | undefined {
    const variants = this.lru.get(key);
    if (!variants) return undefined;
    return variants.find((entry) => varyValues(entry.varyNames, headers).every((value, i) => value === entry.varyValues[i]));
  }

  private lock(key: string, lead: number): void {
    // A lead that never reports (its client's fetch hangs) frees the key at the deadline.
    const timer = setTimeout(() => this.release(key, undefined), this.config.lockTimeout);
    timer.unref();
    this.inFlight.set(key, { lead, waiters: [], timer });
  }

  /**
   * The fetch for `key` ended, having stored `stored` (or nothing). A waiter whose variant it is
   * gets it: it was fetched after the waiter's request arrived, which satisfies even a request's
   * no-cache (RFC 9111 §4). The others go to the backend themselves, without filling the store,
   * with the stored response they select, if any, to stand in on an error.
   */
  private release(key: string, stored: CachedResponse | undefined): void {
    const flight = this.inFlight.get(key);
    if (!flight) return;
    clearTimeout(flight.timer);
    this.inFlight.delete(key);
    for (const waiter of flight.waiters) {
      const entry = this.variant(key, waiter.headers);
      if (stored && entry === stored) this.answer(waiter.worker, waiter.id, { kind: 'fresh', entry });
      else this.answer(waiter.worker, waiter.id, { kind: 'fetch', lead: false, entry });
    }
  }

  /** A worker died: its waiting requests are gone, and the keys it was fetching are free. */
  workerDied(worker: number): void {
    for (const [key, flight] of [...this.inFlight]) {
      flight.waiters = flight.waiters.filter((waiter) => waiter.worker !== worker);
      if (flight.lead === worker) this.release(key, undefined);
    }
  }

  store(key: string, entry: CachedResponse, now = Date.now()): void {
    if (entry.body.byteLength <= this.config.maxObject) {
      const kept = (this.lru.peek(key) ?? []).filter(
        (other) => !other.varyValues.every((value, i) => value === entry.varyValues[i]) && worthKeeping(other.headers, other, other.lifetime, now),
      );
      this.lru.set(key, [entry, ...kept]);
    }
    this.release(key, this.lru.peek(key)?.[0] === entry ? entry : undefined);
  }

  abandon(key: string): void {
    this.release(key, undefined);
  }

  invalidate(key: string): void {
    this.lru.delete(key);
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
    return purged;
  }

  stats(): RouteCacheStats {
    return { route: this.route, entries: this.entries, bytes: this.bytes, size: this.config.size, evictions: this.evictions, results: { ...this.results } };
  }
}

/**
 * Every caching route's store. A reload keeps a route's store (its index in `routes[]`) when its
 * cache settings did not change, and starts it empty otherwise.
 */
export class ResponseCaches {
  private caches = new Map<number, RouteCache>();

  constructor(
    config: Config,
    private readonly send: (worker: number, message: { type: 'cache-answer'; id: number; answer: CacheAnswer }) => void,
  ) {
    this.configure(config);
  }

  configure(config: Config): void {
    const next = new Map<number, RouteCache>();
    config.routes.forEach((route, index) => {
      if (!route.cache) return;
      const current = this.caches.get(index);
      const same = current && JSON.stringify(current.config) === JSON.stringify(route.cache);
      next.set(index, same ? current : new RouteCache(index, route.cache, (worker, id, answer) => this.send(worker, { type: 'cache-answer', id, answer })));
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
        const cache = this.caches.get(message.route);
        // A route that stopped caching in a reload: the request goes to the backend.
        if (!cache) this.send(worker, { type: 'cache-answer', id: message.id, answer: { kind: 'fetch', lead: false } });
        else cache.lookup(worker, message.id, message.key, message.headers);
        return true;
      }
      case 'cache-store':
        this.caches.get(message.route)?.store(message.key, message.entry);
        return true;
      case 'cache-abandon':
        this.caches.get(message.route)?.abandon(message.key);
        return true;
      case 'cache-invalidate':
        this.caches.get(message.route)?.invalidate(message.key);
        return true;
      case 'cache-counts':
        for (let i = 0; i < message.counts.length; i += 3) {
          const cache = this.caches.get(message.counts[i] as number);
          if (cache) cache.results[message.counts[i + 1] as CacheResult] += message.counts[i + 2] as number;
        }
        return true;
      default:
        return false;
    }
  }

  workerDied(worker: number): void {
    for (const cache of this.caches.values()) cache.workerDied(worker);
  }

  /** Removes every stored key that starts with `prefix`, in every route; returns how many went. */
  purge(prefix: string): number {
    let purged = 0;
    for (const cache of this.caches.values()) purged += cache.purge(prefix);
    return purged;
  }

  stats(): RouteCacheStats[] {
    return [...this.caches.values()].map((cache) => cache.stats());
  }
}
