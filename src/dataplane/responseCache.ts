// The response cache as a worker sees it: asks the primary's store about each GET or HEAD of a
// caching route, answers from a stored response, or fetches through an HttpExchange whose tap
// fills the store, revalidates a stale response (304), or lets a stale one stand in for an error.

import {
  ageSeconds,
  cacheKey,
  isConditional,
  notModified,
  notModifiedHeaders,
  refreshedHeaders,
  requestDirectives,
  storability,
  usableOnError,
  validatorsFor,
  varyNames,
  varyValues,
} from '../core/cache/httpCaching.js';
import type { ProxyFault } from '../core/errors.js';
import type { RequestHead } from '../core/forwarding.js';
import { headerValue } from '../core/httpSyntax.js';
import type { MatchedRoute } from '../core/routing.js';
import type { CacheAnswer, CachedResponse, CacheResult, WorkerMessage } from '../engine/messages.js';
import { HttpExchange, relayedHeaders, type ClientReply, type ResponseTap, type Served } from './httpExchange.js';
import { startAfterFleetLimit, type Admission, type Starting } from './requestGate.js';
import type { IncomingHttp } from './serve.js';
import type { WorkerContext } from './workerContext.js';

/** How often a worker reports its cache results to the primary (for the metrics). */
const COUNTS_INTERVAL = 1000;
/** How much longer than its lock timeout a lookup waits for the store's answer before giving up on it. */
const LOOKUP_MARGIN = 1000;

/** A worker's line to the primary's cache stores. */
export class CacheChannel {
  // Ids start at random so that an answer meant for this worker's predecessor (a worker that
  // crashed with lookups out) cannot be taken for one of this worker's.
  private nextId = Math.floor(Math.random() * 2 ** 30);
  private readonly pending = new Map<number, { answered: (answer: CacheAnswer) => void; timer: NodeJS.Timeout }>();
  private counts = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly post: (message: WorkerMessage) => void) {
    this.timer = setInterval(() => this.report(), COUNTS_INTERVAL);
    this.timer.unref();
  }

  /**
   * Asks the store; `answered` is called once. The store answers within `wait` (its lock
   * timeout); should an answer come later than that, the request goes to the backend on its own.
   */
  lookup(route: number, key: string, headers: string[], wait: number, answered: (answer: CacheAnswer) => void): void {
    const id = this.nextId++;
    const timer = setTimeout(() => {
      // Should the answer still come, a lock it hands out goes back to the store (to a waiting request).
      this.pending.set(id, { answered: (late) => this.giveBack(route, key, late), timer });
      answered({ kind: 'fetch', lock: 0 });
    }, wait + LOOKUP_MARGIN);
    this.pending.set(id, { answered, timer });
    this.post({ type: 'cache-lookup', id, route, key, headers });
  }

  answer(id: number, answer: CacheAnswer): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    pending.answered(answer);
  }

  private giveBack(route: number, key: string, late: CacheAnswer): void {
    if (late.kind !== 'fresh' && late.lock) this.abandon(route, key, late.lock, true);
  }

  store(route: number, key: string, lock: number, entry: CachedResponse): void {
    this.post({ type: 'cache-store', route, key, lock, entry });
  }

  abandon(route: number, key: string, lock: number, retry: boolean): void {
    this.post({ type: 'cache-abandon', route, key, lock, retry });
  }

  invalidate(route: number, key: string): void {
    this.post({ type: 'cache-invalidate', route, key });
  }

  count(route: number, result: CacheResult): void {
    const name = `${route} ${result}`;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  private report(): void {
    if (this.counts.size === 0) return;
    const counts: (number | CacheResult)[] = [];
    for (const [name, count] of this.counts) {
      const [route, result] = name.split(' ');
      counts.push(Number(route), result as CacheResult, count);
    }
    this.counts = new Map();
    this.post({ type: 'cache-counts', counts });
  }

  close(): void {
    this.report();
    clearInterval(this.timer);
  }
}

type RouteCache = NonNullable<MatchedRoute['cache']>;

/**
 * A request on a caching route, after the gate: GET and HEAD without a body, a Range or a
 * request no-store are looked up; anything else goes to the backend (bypass), and an unsafe
 * method that succeeds invalidates what is stored for its target. `target` is the path as the
 * client sent it (the key), before the route rewrote it.
 */
export function serveCached(context: WorkerContext, request: IncomingHttp, gate: Admission, target: string): void {
  const { head } = request;
  const cache = gate.route.cache!;
  const key = cacheKey(cache.config.key, head.method, head.host, target);
  const lookup =
    (head.method === 'GET' || head.method === 'HEAD') &&
    head.contentLength <= 0 &&
    !head.chunked &&
    headerValue(head.headers, 'range') === undefined &&
    !requestDirectives(head.headers).noStore;
  if (!lookup) {
    const unsafe = !['GET', 'HEAD', 'OPTIONS', 'TRACE'].includes(head.method);
    const exchange = new HttpExchange(context, request.reply(), head, gate, new BypassTap(context, cache, unsafe ? cacheKey(cache.config.key, 'GET', head.host, target) : ''));
    request.watch(exchange);
    if (head.contentLength > 0 || head.chunked) exchange.body = request.body(gate.route, () => exchange.onBodyTooLarge());
    exchange.start(gate);
    return;
  }
  const pending = new CachedRequest(context, request.reply(), head, key);
  request.watch(pending);
  // The fleet's rate limit holds for answers from the store too: its tokens are taken first.
  if (gate.fleetLimit) pending.cancelWait = startAfterFleetLimit(context, gate, pending, () => !pending.gone);
  else pending.start(gate);
}

/** A looked-up request until its answer: from the store, or through an exchange. */
class CachedRequest implements Starting {
  cancelWait: (() => void) | undefined;
  gone = false;
  private gate: Admission | null = null;
  private exchange: HttpExchange | null = null;
  /** Set while it counts as in flight before an exchange (a graceful shutdown waits for it). */
  private waiting = true;
  private readonly startedAt = performance.now();

  constructor(
    private readonly context: WorkerContext,
    private readonly reply: ClientReply,
    private readonly head: RequestHead,
    private readonly key: string,
  ) {
    context.inFlightHttp++;
  }

  /** Admitted (past the fleet's rate limit, if any): the store is asked. */
  start(gate: Admission): void {
    this.gate = gate;
    const cache = gate.route.cache!;
    this.context.cache!.lookup(cache.route, this.key, this.head.headers, cache.config.lockTimeout, (answer) => this.answered(answer));
  }

  /** The fleet's rate limit refused it. */
  refuse(fault: ProxyFault, retryAfterSeconds = 0): void {
    this.cancelWait = undefined;
    if (!this.stopWaiting()) return;
    this.context.table.countFault(fault.code);
    this.reply.fault(fault, false, retryAfterSeconds);
  }

  private stopWaiting(): boolean {
    if (!this.waiting) return false;
    this.waiting = false;
    this.context.inFlightHttp--;
    return !this.gone;
  }

  answered(answer: CacheAnswer): void {
    const { context, key } = this;
    const gate = this.gate!;
    const cache = gate.route.cache!;
    // From here the exchange (a fetch) counts itself; an answer from the store is written now.
    const stillThere = this.stopWaiting();
    if (answer.kind === 'fetch') {
      const tap = new FetchTap(context, gate.route, this.reply, this.head, key, answer.lock, answer.entry);
      if (!stillThere) return tap.finished();
      this.exchange = new HttpExchange(context, this.reply, this.head, gate, tap);
      this.exchange.start(gate);
      return;
    }
    if (answer.kind === 'stale' && answer.lock) revalidateInBackground(context, this.head, gate, key, answer.lock, answer.entry);
    if (!stillThere) return;
    const result = answer.kind === 'fresh' ? 'hit' : 'stale';
    const served = serveStored(this.reply, this.head.method, this.head.headers, gate.route, answer.entry, result);
    context.cache!.count(cache.route, result);
    logServed(context, this.head, served, result, this.startedAt);
  }

  onClientGone(): void {
    this.gone = true;
    if (this.cancelWait) {
      this.cancelWait();
      this.cancelWait = undefined;
      this.stopWaiting();
    }
    this.exchange?.onClientGone();
  }
}

/**
 * Answers the client from a stored response: 304 when the request's own conditions match it,
 * else the whole response with its Age. Returns what was sent.
 */
function serveStored(reply: ClientReply, method: string, requestHeaders: string[], route: MatchedRoute, entry: CachedResponse, result: CacheResult, own: string[] = []): Served {
  const age = ['age', ageSeconds(entry.headers, entry, Date.now())];
  const statusHeader = route.cache!.config.statusHeader;
  const extra = [...age, ...own, ...(statusHeader ? [statusHeader, result] : [])];
  if (isConditional(requestHeaders) && notModified(requestHeaders, entry.status, entry.headers)) {
    reply.start(304, 'Not Modified', relayedHeaders(notModifiedHeaders(entry.headers), route.responseHeaders, extra), -1, true);
    reply.end();
    return { status: 304, bytes: 0 };
  }
  const size = entry.body.byteLength;
  // The stored length is the body's, whatever framing the backend used (a HEAD gets it too).
  const length = entry.status === 204 ? [] : ['content-length', String(size)];
  const stored = entry.headers.filter((_, i, all) => all[i - (i % 2)] !== 'age' && all[i - (i % 2)] !== 'content-length');
  const headers = relayedHeaders(stored, route.responseHeaders, [...length, ...extra]);
  const noBody = method === 'HEAD' || entry.status === 204 || entry.status === 304;
  reply.start(entry.status, entry.statusMessage || undefined, headers, entry.status === 204 ? -1 : size, noBody);
  if (noBody || size === 0) reply.end();
  else if (reply.write(Buffer.from(entry.body), () => reply.end())) reply.end();
  return { status: entry.status, bytes: noBody ? 0 : size };
}

function logServed(context: WorkerContext, head: RequestHead, { status, bytes }: Served, result: CacheResult, startedAt: number): void {
  if (!context.accessLog) return;
  context.logger.info({
    type: 'http',
    method: head.method,
    path: head.path,
    status,
    backend: '',
    duration_ms: Math.round((performance.now() - startedAt) * 10) / 10,
    bytes,
    client: head.client,
    cache: result,
  });
}

/** A stale-while-revalidate answer: the backend is asked again without a client waiting. */
function revalidateInBackground(context: WorkerContext, head: RequestHead, gate: Admission, key: string, lock: number, stale: CachedResponse): void {
  const background: RequestHead = { ...head, method: 'GET', headers: head.headers.filter((_, i, all) => !/^if-/.test(all[i - (i % 2)])) };
  const tap = new FetchTap(context, gate.route, NO_CLIENT, background, key, lock, stale);
  // Counted once, as the stale answer its client got; the client's fleet rate limit was taken once.
  tap.counted = false;
  const quiet = { ...gate, fleetLimit: undefined };
  new HttpExchange(context, NO_CLIENT, background, quiet, tap).start(quiet);
}

/** The reply of a background revalidation: nobody reads it. */
const NO_CLIENT: ClientReply = {
  fault: () => {},
  start: () => {},
  write: () => true,
  end: () => {},
  fail: () => {},
};

/** A request that skipped the cache: marked bypass; an unsafe one that succeeded invalidates `invalidates`. */
class BypassTap implements ResponseTap {
  readonly result = 'bypass';
  readonly served = null;

  constructor(
    private readonly context: WorkerContext,
    private readonly cache: RouteCache,
    private readonly invalidates: string,
  ) {}

  start(status: number): string[] | null {
    // Posted before any of the answer reaches the client, so the primary has it before any lookup
    // the client makes after it (ResponseCaches applies what is posted before each lookup).
    if (this.invalidates && status < 400) this.context.cache!.invalidate(this.cache.route, this.invalidates);
    return this.cache.config.statusHeader ? [this.cache.config.statusHeader, 'bypass'] : [];
  }

  data(): void {}
  end(): void {}

  failed(): boolean {
    return false;
  }

  finished(): void {
    this.context.cache!.count(this.cache.route, 'bypass');
  }
}

/**
 * A fetch for a looked-up request. Under a lock it stores a storable response (bodies up to
 * max_object) or tells the store it will not; with a stale response it revalidates it with its
 * validators (a 304 refreshes and serves it) and lets it stand in for an error when
 * stale-if-error allows.
 */
class FetchTap implements ResponseTap {
  result: CacheResult = 'miss';
  served: Served | null = null;
  /** Whether the result goes into the metrics (not for a background revalidation). */
  counted = true;
  private readonly requestTime = Date.now();
  /** The store's lock while this fetch still owes it a report (store or abandon), else 0. */
  private owes: number;
  /** Set once the backend's head said whether the response is storable, or no backend answered. */
  private decided = false;
  private chunks: Buffer[] | null = null;
  private bytes = 0;
  private status = 0;
  private statusMessage = '';
  private headers: string[] = [];
  private lifetime = 0;
  private refreshed: CachedResponse | null = null;
  /** Whether the refreshed response may be stored again (the 304 may have made it private). */
  private keepRefreshed = false;
  /** Headers of the backend's answer for this client alone (a 304's Set-Cookie). */
  private readonly ownHeaders: string[] = [];
  /** The request's headers as the client sent them (the validators this tap adds go upstream only). */
  private readonly clientHeaders: string[];
  /** Whether the stale response's validators went upstream: a 304 then refreshes it. */
  private readonly validating: boolean;

  private readonly cache: RouteCache;

  constructor(
    private readonly context: WorkerContext,
    private readonly route: MatchedRoute,
    private readonly reply: ClientReply,
    private readonly head: RequestHead,
    private readonly key: string,
    lock: number,
    private readonly stale: CachedResponse | undefined,
  ) {
    this.cache = route.cache!;
    this.owes = lock;
    this.clientHeaders = head.headers;
    // The stored response's validators go upstream, unless the client sent conditions of its own.
    this.validating = lock !== 0 && stale !== undefined && !isConditional(head.headers) && validatorsFor(stale.headers).length > 0;
    if (this.validating) head.headers = [...head.headers, ...validatorsFor(stale!.headers)];
  }

  start(status: number, statusMessage: string, headers: string[]): string[] | null {
    const { stale, cache } = this;
    this.decided = true;
    if (status === 304 && this.validating && stale) {
      const merged = refreshedHeaders(stale.headers, headers);
      const verdict = storability(this.clientHeaders, stale.status, merged, cache.config.defaultTtl);
      this.refreshed = { ...stale, headers: merged, lifetime: verdict.store ? verdict.lifetime : 0, requestTime: this.requestTime, responseTime: Date.now() };
      this.keepRefreshed = verdict.store;
      for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'set-cookie') this.ownHeaders.push('set-cookie', headers[i + 1]);
      this.result = 'revalidated';
      return null;
    }
    if (status >= 500 && this.standIn()) return null;
    this.status = status;
    this.statusMessage = statusMessage;
    this.headers = headers;
    if (this.owes) {
      const verdict = this.head.method === 'GET' ? storability(this.clientHeaders, status, headers, cache.config.defaultTtl) : ({ store: false } as const);
      const length = Number(headerValue(headers, 'content-length') ?? -1);
      if (verdict.store && length <= cache.config.maxObject) {
        this.chunks = [];
        this.lifetime = verdict.lifetime;
      } else this.letGo();
    }
    return cache.config.statusHeader ? [cache.config.statusHeader, 'miss'] : [];
  }

  data(chunk: Buffer): void {
    if (!this.chunks) return;
    this.bytes += chunk.length;
    if (this.bytes > this.cache.config.maxObject) {
      this.chunks = null;
      this.letGo();
    } else this.chunks.push(chunk);
  }

  end(): void {
    if (this.refreshed) {
      if (this.keepRefreshed) this.storeIt(this.refreshed);
      else this.context.cache!.invalidate(this.cache.route, this.key);
      this.served = serveStored(this.reply, this.head.method, this.clientHeaders, this.route, this.refreshed, 'revalidated', this.ownHeaders);
      return;
    }
    if (!this.chunks) return;
    const body = new SharedArrayBuffer(this.bytes);
    const view = Buffer.from(body);
    let at = 0;
    for (const chunk of this.chunks) at += chunk.copy(view, at);
    this.chunks = null;
    const names = varyNames(this.headers) as string[];
    this.storeIt({
      status: this.status,
      statusMessage: this.statusMessage,
      headers: this.headers,
      body,
      lifetime: this.lifetime,
      requestTime: this.requestTime,
      responseTime: Date.now(),
      varyNames: names,
      varyValues: varyValues(names, this.clientHeaders),
    });
  }

  private storeIt(entry: CachedResponse): void {
    if (!this.owes) return;
    this.context.cache!.store(this.cache.route, this.key, this.owes, entry);
    this.owes = 0;
  }

  failed(fault?: ProxyFault): boolean {
    this.decided = true;
    // A client's own fault (a rate limit, a body too large) is answered as such, never stood in for.
    if (fault && fault.source !== 'upstream') return false;
    return this.standIn();
  }

  /** A stale response answers instead of the backend's error, when stale-if-error allows. */
  private standIn(): boolean {
    const { stale } = this;
    if (!stale || !usableOnError(stale.headers, stale, stale.lifetime, Date.now())) return false;
    this.result = 'stale';
    this.served = serveStored(this.reply, this.head.method, this.clientHeaders, this.route, stale, 'stale');
    return true;
  }

  finished(): void {
    // Ended before the backend said whether its response is storable, or in the middle of a
    // storable body (the client left): a waiting request fetches instead.
    this.letGo(!this.decided || this.chunks !== null);
    if (this.counted) this.context.cache!.count(this.cache.route, this.result);
  }

  private letGo(retry = false): void {
    if (!this.owes) return;
    this.context.cache!.abandon(this.cache.route, this.key, this.owes, retry);
    this.owes = 0;
  }
}
