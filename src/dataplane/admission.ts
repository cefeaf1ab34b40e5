// Choosing a backend for a request: sticky cookie, then the pool's picker, then the bounded wait
// queue when every backend is at max_conns.

import type { PoolConfig } from '../config/types.js';
import { NO_BACKEND, type Picker } from '../core/balancers/picker.js';
import { cookieValue } from '../core/cookies.js';
import { FAULTS, type ProxyFault } from '../core/errors.js';
import { BACKEND_UP, type StateTable } from '../core/state/stateTable.js';
import type { RequestFacts } from '../core/routing.js';

/** A request or upgrade waiting to be given a backend. */
export interface Admittable {
  /** A session was taken on `slot` for it. */
  admit(slot: number): void;
  /** No backend can be had: answer with this fault. */
  refuse(fault: ProxyFault): void;
}

interface Waiter {
  target: Admittable;
  key: string | undefined;
  deadline: number;
  gone: boolean;
}

/** How often waiting requests retry: a release in another worker is seen by polling. */
const QUEUE_POLL_MS = 5;

export class PoolRuntime {
  /** Sticky-cookie value → slot, for the backends of this pool. */
  private readonly stickySlots = new Map<string, number>();
  /** Slot → sticky-cookie value. */
  readonly names = new Map<number, string>();
  private readonly waiting: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Retry budget of this worker for this pool: earns `retries.budget` per request, up to 10. */
  private retryTokens = 10;

  constructor(
    readonly config: PoolConfig,
    readonly poolSlot: number,
    readonly picker: Picker,
    private readonly table: StateTable,
    private readonly worker: number,
    slots: Record<string, number>,
  ) {
    for (const backend of config.backends) {
      this.stickySlots.set(backend.name, slots[backend.id]);
      this.names.set(slots[backend.id], backend.name);
    }
  }

  /**
   * The hash key of a request or connection for this pool, or undefined (no hashing, or the key
   * is absent). A TCP connection has no request: only a key from the client's address applies.
   */
  hashKey(request: RequestFacts | undefined, client: string): string | undefined {
    const source = this.config.hash?.key;
    if (!source) return undefined;
    if (source.from === 'ip') return client;
    if (!request) return undefined;
    switch (source.from) {
      case 'path': {
        const query = request.path.indexOf('?');
        return query < 0 ? request.path : request.path.slice(0, query);
      }
      case 'header':
        return request.header(source.name) || undefined;
      case 'query':
        return request.query(source.name) || undefined;
      case 'cookie':
        return cookieValue(request.header('cookie'), source.name);
    }
  }

  /** The backend named by the request's sticky cookie, if it is up and has room; else -1. */
  stickySlot(cookieHeader: string): number {
    const sticky = this.config.sticky;
    if (!sticky) return -1;
    const name = cookieValue(cookieHeader, sticky.cookie);
    const slot = name === undefined ? undefined : this.stickySlots.get(name);
    if (slot === undefined || this.table.state(slot) !== BACKEND_UP) return -1;
    return this.table.acquireIfRoom(slot, this.worker) ? slot : -1;
  }

  /** `Set-Cookie` value pinning a client to `slot`, when this pool is sticky. */
  stickyCookie(slot: number): string | undefined {
    const sticky = this.config.sticky;
    if (!sticky) return undefined;
    return `${sticky.cookie}=${this.names.get(slot)}; Path=/; HttpOnly; SameSite=Lax`;
  }

  /**
   * Finds a backend for `target`, now or after waiting in the queue. Returns a cancel function
   * for a target that waits (call it when its client goes away), else undefined.
   */
  admit(target: Admittable, key: string | undefined, stickySlot: number): (() => void) | undefined {
    const slot = stickySlot >= 0 ? stickySlot : this.picker.pick(key);
    if (slot >= 0) {
      target.admit(slot);
      return undefined;
    }
    const { size, timeout } = this.config.queue;
    if (slot === NO_BACKEND) target.refuse(FAULTS.noBackend);
    else if (size === 0) target.refuse(FAULTS.backendsFull);
    else if (!this.table.enqueue(this.poolSlot, size)) target.refuse(FAULTS.queueFull);
    else {
      const waiter: Waiter = { target, key, deadline: Date.now() + timeout, gone: false };
      this.waiting.push(waiter);
      this.timer ??= setInterval(() => this.serveWaiting(), QUEUE_POLL_MS);
      return () => this.leave(waiter);
    }
    return undefined;
  }

  private leave(waiter: Waiter): void {
    if (waiter.gone) return;
    waiter.gone = true;
    this.table.dequeue(this.poolSlot);
  }

  /** Gives freed backends to waiting requests in arrival order; times out the ones past due. */
  private serveWaiting(): void {
    const now = Date.now();
    let full = false;
    let kept = 0;
    for (const waiter of this.waiting) {
      if (waiter.gone) continue;
      if (!full) {
        const slot = this.picker.pick(waiter.key);
        if (slot >= 0 || slot === NO_BACKEND) {
          this.leave(waiter);
          if (slot >= 0) waiter.target.admit(slot);
          else waiter.target.refuse(FAULTS.noBackend);
          continue;
        }
        full = true;
      }
      if (now >= waiter.deadline) {
        this.leave(waiter);
        waiter.target.refuse(FAULTS.queueTimeout);
        continue;
      }
      this.waiting[kept++] = waiter;
    }
    this.waiting.length = kept;
    if (kept === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Counts a request toward the retry budget. */
  earnRetry(): void {
    this.retryTokens = Math.min(10, this.retryTokens + this.config.retries.budget);
  }

  /** Spends one retry if the budget allows it. */
  spendRetry(): boolean {
    if (this.retryTokens < 1) return false;
    this.retryTokens--;
    return true;
  }

  /** Refuses everything still waiting (shutdown). */
  close(): void {
    for (const waiter of this.waiting) {
      if (waiter.gone) continue;
      this.leave(waiter);
      waiter.target.refuse(FAULTS.noBackend);
    }
    this.waiting.length = 0;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
