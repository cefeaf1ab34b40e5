// What the primary gives each worker's serve task, and the messages between them: the same for
// every engine.

import type { MessagePort } from 'node:worker_threads';
import type { Config } from '../config/types.js';
import type { SlotPlan } from '../core/state/slotRegistry.js';
import type { ErrorCode } from '../core/errors.js';
import type { SessionPlan } from '../core/balancers/picker.js';
import type { Bucket } from '../core/limits/clientLimits.js';

export interface ServeTask {
  worker: number;
  buffer: SharedArrayBuffer;
  /** ClientLimits' memory. */
  limitsBuffer: SharedArrayBuffer;
  config: Config;
  plan: SlotPlan;
  /** Control channel to the primary; see WorkerMessage and PrimaryMessage. */
  port: MessagePort;
  testHooks: boolean;
  /** Human-readable logs (the primary's stdout is a terminal). */
  prettyLogs: boolean;
}

/** Worker → primary. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'listening' }
  | { type: 'failed'; code: ErrorCode; message: string }
  /** Pick a backend for a new session over the fleet's counts (answered by 'fleet-picked'). */
  | { type: 'fleet-pick'; id: number; plan: SessionPlan }
  /** This worker took a session on `slot` without asking the fleet (sticky, retry, Redis lost). */
  | { type: 'fleet-held'; slot: number }
  /** A session on `slot` that the fleet counts has ended. */
  | { type: 'fleet-release'; slot: number }
  /** Take a token from each of the fleet's buckets for `key` (answered by 'fleet-limited'). */
  | { type: 'fleet-limit'; id: number; key: string; requests?: Bucket; sessions?: Bucket }
  /** What the route's cache holds for this GET or HEAD (answered by 'cache-answer'). */
  | { type: 'cache-lookup'; id: number; route: number; key: string; headers: string[] }
  /** Store (or replace, after a 304 refreshed it) the response of `key` for its variant, fetched under `lock`. */
  | { type: 'cache-store'; route: number; key: string; lock: number; entry: CachedResponse }
  /**
   * The fetch under `lock` will not fill the store; `retry` when it ended before the backend said
   * whether the response is storable (its client left): a waiting request fetches instead.
   */
  | { type: 'cache-abandon'; route: number; key: string; lock: number; retry: boolean }
  /** An unsafe request to `key` succeeded: what is stored for it goes (RFC 9111 §4.4). */
  | { type: 'cache-invalidate'; route: number; key: string }
  /** Results since the last report, per route: [route, result, count, …]. */
  | { type: 'cache-counts'; counts: (number | CacheResult)[] };
/** Primary → worker. */
export type PrimaryMessage =
  /** Every worker is ready and the primary has let go of the ports: listen now. */
  | { type: 'listen' }
  | { type: 'shutdown'; grace: number }
  | { type: 'config'; config: Config; plan: SlotPlan }
  /** Close this worker's WebSockets on `slot`, spread over `window` ms, at most `rate` per second. */
  | { type: 'close-sessions'; slot: number; window: number; rate: number; code: number; reason: string }
  /** Close `count` of this worker's WebSockets on `slot` (rebalancing), newest or oldest first. */
  | { type: 'shed'; slot: number; count: number; order: 'newest' | 'oldest' }
  /** The fleet's answer to 'fleet-pick' `id`: a slot taken fleet-wide, ALL_FULL, or PICK_LOCALLY. */
  | { type: 'fleet-picked'; id: number; slot: number }
  /** The fleet's answer to 'fleet-limit' `id`; `verdict` null when Redis could not answer in time. */
  | { type: 'fleet-limited'; id: number; verdict: FleetVerdict | null }
  | { type: 'cache-answer'; id: number; answer: CacheAnswer };

/** A response as a route's cache holds it; its body is shared memory every worker reads, never written again. */
export interface CachedResponse {
  status: number;
  statusMessage: string;
  /** The backend's headers, hop-by-hop ones taken out. */
  headers: string[];
  body: SharedArrayBuffer;
  /** Freshness lifetime from generation, ms. */
  lifetime: number;
  requestTime: number;
  responseTime: number;
  /** The request headers it varies on and the values they had. */
  varyNames: string[];
  varyValues: string[];
}

/**
 * fresh: answer with it. stale: answer with it (stale-while-revalidate), and revalidate it in the
 * background under `lock` unless 0. fetch: go to the backend; under a `lock` (not 0) the fetch
 * fills the store for the waiting identical requests and reports with it (store or abandon);
 * `entry` is a stale response to revalidate (under a lock) or stand in on an error.
 */
export type CacheAnswer =
  | { kind: 'fresh'; entry: CachedResponse }
  | { kind: 'stale'; entry: CachedResponse; lock: number }
  | { kind: 'fetch'; lock: number; entry?: CachedResponse };

/** What the cache did for one request, as x-fairway-cache and the metrics say it. */
export const CACHE_RESULTS = ['hit', 'miss', 'stale', 'revalidated', 'bypass'] as const;
export type CacheResult = (typeof CACHE_RESULTS)[number];

/** A fleet bucket check: allowed, or refused with the reason and how long until a token. */
export type FleetVerdict = { allowed: true } | { allowed: false; reason: 'requests' | 'new-sessions'; retryAfterMs: number };

export interface ServeResult {
  worker: number;
}
