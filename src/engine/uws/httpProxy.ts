// HTTP/1.1 proxying between a uWS response and an undici dispatch, streaming both ways.

import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { FAULTS, faultFor, isConnectFailure, isIdempotent, isReset, type ProxyFault } from '../../core/errors.js';
import { recordLatency } from '../../core/balancers/latency.js';
import { editHeaders, rewritePath, type MatchedRoute, type RequestFacts, type RouteLimit } from '../../core/routing.js';
import type { Admittable, PoolRuntime } from '../worker/admission.js';
import { readRequestHead, type RequestHead } from './requestHead.js';
import type { WorkerContext } from '../worker/workerContext.js';

type DispatchController = Dispatcher.DispatchController;

/** Response headers that describe one hop, or that uWS writes itself. */
const RESPONSE_NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'date',
]);

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  404: 'Not Found',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Writes a short error response; call inside a uWS handler or inside `res.cork`. */
export function writeFault(res: HttpResponse, fault: ProxyFault, closeConnection = false, retryAfterSeconds = 0): void {
  res.writeStatus(`${fault.status} ${STATUS_TEXT[fault.status] ?? ''}`);
  res.writeHeader('content-type', 'text/plain; charset=utf-8');
  if (retryAfterSeconds > 0) res.writeHeader('retry-after', String(retryAfterSeconds));
  res.writeHeader('x-fairway-error', fault.code);
  res.end(`${fault.message}\n`, closeConnection);
}

/** Entry point for every non-upgrade request. */
export function handleHttp(context: WorkerContext, res: HttpResponse, req: HttpRequest): void {
  const head = readRequestHead(res, req, false, context.proto, context.addressing);
  if (context.testHooks) runTestFault(req.getHeader('x-fairway-test-fault'));
  const route = routeFor(context, res, req, head);
  if (route === undefined) return;
  if (route.limit && checkLimit(context, res, req, head, route.limit, false) === LIMITED) return;
  // A declared length over the limit is refused before anything is read or sent upstream.
  if (route.maxBody > 0 && head.contentLength > route.maxBody) return writeFault(res, FAULTS.bodyTooLarge, true);
  const pool = context.pools.get(route.pool)!;
  const key = pool.config.hash ? pool.hashKey(requestFacts(req, head), head.client) : undefined;
  const stickySlot = pool.config.sticky ? pool.stickySlot(req.getHeader('cookie')) : -1;
  if (route.upstreamEdit) editUpstream(head, route);
  const exchange = new HttpExchange(context, res, head, pool, stickySlot >= 0, route);
  exchange.cancelWait = pool.admit(exchange, key, stickySlot);
}

/**
 * The route of a request (HTTP or upgrade), or undefined after answering 404 or 403. Inside the
 * uWS handler only, like `req`. A config with one pool and no routes needs no request facts.
 */
export function routeFor(context: WorkerContext, res: HttpResponse, req: HttpRequest, head: RequestHead): MatchedRoute | undefined {
  const { router } = context;
  const route = router.single ?? router.route(requestFacts(req, head));
  if (route === undefined) writeFault(res, FAULTS.noRoute);
  else if (route.access && !route.access.permits(head.client)) writeFault(res, FAULTS.forbidden);
  else return route;
  return undefined;
}

/** What routing and hashing may read of a uWS request; inside the handler only, like `req`. */
export function requestFacts(req: HttpRequest, head: RequestHead): RequestFacts {
  return {
    path: head.path,
    host: head.hostName,
    method: head.method,
    header: (name) => req.getHeader(name),
    query: (name) => req.getQuery(name),
  };
}

/** checkLimit's answer when it refused the request (and answered 429). */
export const LIMITED = -2;
/** checkLimit's answer when the request passed and no session was counted. */
export const NOT_COUNTED = -1;

/**
 * Applies a route's per-client limits, shared by all workers: a request token for every request
 * and upgrade; for an upgrade, a new-session token and room under the concurrent-session limit,
 * counted until the session ends. Returns LIMITED after answering 429 with Retry-After, else the
 * limit slot holding the session (release it with context.limits.release) or NOT_COUNTED.
 */
export function checkLimit(context: WorkerContext, res: HttpResponse, req: HttpRequest, head: RequestHead, limit: RouteLimit, upgrade: boolean): number {
  const who = (limit.header && req.getHeader(limit.header)) || head.client;
  const countSession = upgrade && limit.maxSessions > 0;
  const verdict = context.limits.admit(limit.prefix + who, Date.now(), context.worker, {
    requests: limit.requests,
    sessions: upgrade ? limit.sessions : undefined,
    maxSessions: upgrade ? limit.maxSessions : 0,
    countSession,
  });
  if (verdict.allowed) return countSession ? verdict.slot : NOT_COUNTED;
  const fault = verdict.reason === 'concurrent-sessions' ? FAULTS.tooManySessions : FAULTS.rateLimited;
  writeFault(res, fault, false, Math.max(1, Math.ceil(verdict.retryAfterMs / 1000)));
  if (context.accessLog) context.logger.info({ type: upgrade ? 'websocket' : 'http', method: head.method, path: head.path, status: 429, reason: verdict.reason, client: head.client });
  return LIMITED;
}

/** The route's path rewrite and request header edits, on what goes upstream (HTTP and upgrades). */
export function editUpstream(head: RequestHead, route: MatchedRoute): void {
  const edit = route.upstreamEdit!;
  if (edit.stripPrefix || edit.addPrefix) head.path = rewritePath(head.path, edit.stripPrefix, edit.addPrefix);
  if (edit.headers) editHeaders(head.headers, edit.headers);
}

/**
 * Test-only faults (enabled by FAIRWAY_TEST_HOOKS=1) that exercise the real error paths: an
 * exception inside a handler, and an uncaught exception that takes the worker thread down.
 */
export function runTestFault(fault: string): void {
  if (fault === 'throw') throw new Error('test fault: thrown inside a handler');
  if (fault === 'crash') {
    setImmediate(() => {
      throw new Error('test fault: uncaught exception in a worker');
    });
  }
}

/** One proxied request: owns the slot it is given until the upstream exchange ends. */
class HttpExchange implements Dispatcher.DispatchHandler, Admittable {
  /** Set while the request waits in its pool's queue: takes it out when the client leaves. */
  cancelWait: (() => void) | undefined;
  /** -1 until a backend is admitted. */
  private slot = -1;
  /** Backends this request was sent to, the current one last. */
  private readonly tried: number[] = [];
  private setCookie: string | undefined;
  private controller: DispatchController | null = null;
  private body: RequestBody | null = null;
  private clientGone = false;
  /** Set once uWS has the whole response: the response object must not be touched again. */
  private responseDone = false;
  private released = false;
  /** Set once the status line is written to the client: from then on, errors can only cut. */
  private headersSent = false;
  private statusLine = '';
  private responseHeaders: Record<string, string | string[] | undefined> | null = null;
  private noBody = false;
  /** Length announced by the backend, or -1 for a streamed (chunked) response. */
  private total = -1;
  private pending: Buffer | null = null;
  private pendingOffset = 0;
  private status = 0;
  private bytesOut = 0;
  private readonly startedAt = performance.now();
  private sentAt = 0;
  private chunk: Buffer | null = null;
  private readonly corkedData = () => this.writeData();

  constructor(
    private readonly context: WorkerContext,
    private readonly res: HttpResponse,
    private readonly head: RequestHead,
    private readonly pool: PoolRuntime,
    private readonly stickyMatched: boolean,
    private readonly route: MatchedRoute,
  ) {
    context.inFlightHttp++;
    res.onAborted(() => this.onClientGone());
    // Reading the body starts now, so that a request waiting in the queue keeps its body (paused).
    if (head.contentLength > 0 || head.chunked) {
      this.body = new RequestBody(res, route.timeouts?.idle ?? context.config.timeouts.idle, route.maxBody, () => this.res.close(), () => this.onBodyTooLarge());
    }
    this.noBody = head.method === 'HEAD';
  }

  refuse(fault: ProxyFault): void {
    this.cancelWait = undefined;
    if (this.clientGone) return;
    this.responseDone = true;
    this.status = fault.status;
    this.res.cork(() => writeFault(this.res, fault));
    this.finish();
  }

  admit(slot: number): void {
    this.cancelWait = undefined;
    const { context } = this;
    if (this.clientGone) {
      context.table.release(slot, context.worker);
      return;
    }
    this.slot = slot;
    this.tried.push(slot);
    if (!this.stickyMatched) this.setCookie = this.pool.stickyCookie(slot);
    context.table.countRequest(slot);
    if (this.tried.length === 1) this.pool.earnRetry();
    this.send();
  }

  private send(): void {
    const { context, head } = this;
    this.sentAt = performance.now();
    try {
      const timeouts = this.route.timeouts;
      context.dispatchers[this.slot].dispatch(
        timeouts
          ? { path: head.path, method: head.method, headers: head.headers, body: this.body, headersTimeout: timeouts.response, bodyTimeout: timeouts.idle }
          : { path: head.path, method: head.method, headers: head.headers, body: this.body },
        this,
      );
    } catch (err) {
      // undici refuses some requests synchronously (a header it will not send, for one).
      this.onResponseError(null, err as Error);
    }
  }

  onRequestStart(controller: DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client went away'));
  }

  onResponseStart(controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode < 200 || this.clientGone) return;
    if (this.pool.config.algorithm === 'least-time') {
      recordLatency(this.context.table, this.slot, (performance.now() - this.sentAt) * 1000, this.context.table.now(), this.pool.config.decay);
    }
    this.status = statusCode;
    this.noBody ||= statusCode === 204 || statusCode === 304;
    const length = headers['content-length'];
    if (typeof length === 'string' && headers['transfer-encoding'] === undefined) this.total = Number(length);
    // Written with the first body bytes (or the end), in the same cork: one send, not two.
    this.statusLine = statusMessage ? `${statusCode} ${statusMessage}` : String(statusCode);
    this.responseHeaders = headers;
  }

  /** Status line and headers; call inside `res.cork`, before the first body byte. */
  private writeHead(): void {
    const { res } = this;
    const headers = this.responseHeaders!;
    this.responseHeaders = null;
    res.writeStatus(this.statusLine);
    const edit = this.route.responseHeaders;
    for (const name in headers) {
      if (RESPONSE_NOT_FORWARDED.has(name)) continue;
      if (edit && (edit.remove.includes(name) || edit.set.some(([setName]) => setName === name))) continue;
      const value = headers[name]!;
      if (typeof value === 'string') res.writeHeader(name, value);
      else for (const item of value) res.writeHeader(name, item);
    }
    if (edit) for (const [name, value] of edit.set) res.writeHeader(name, value);
    if (this.setCookie) res.writeHeader('set-cookie', this.setCookie);
    // uWS cannot be told a length without a body, so a bodiless reply carries it by hand.
    if (this.noBody && this.total >= 0) res.writeHeader('content-length', String(this.total));
    this.headersSent = true;
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    if (this.clientGone || this.noBody || this.responseDone) return;
    this.bytesOut += chunk.length;
    this.chunk = chunk;
    this.res.cork(this.corkedData);
  }

  private writeData(): void {
    const chunk = this.chunk!;
    this.chunk = null;
    const res = this.res;
    if (this.responseHeaders) this.writeHead();
    if (this.total < 0) {
      if (!res.write(chunk)) {
        this.controller!.pause();
        res.onWritable(() => {
          this.controller?.resume();
          return true;
        });
      }
      return;
    }
    const offset = res.getWriteOffset();
    const [ok, done] = res.tryEnd(chunk, this.total);
    if (done) this.responseDone = true;
    else if (!ok) {
      this.pending = chunk;
      this.pendingOffset = offset;
      this.controller!.pause();
      res.onWritable((at) => this.retryPending(at));
    }
  }

  private retryPending(at: number): boolean {
    if (this.clientGone || this.responseDone || !this.pending) return true;
    const [ok, done] = this.res.tryEnd(this.pending.subarray(at - this.pendingOffset), this.total);
    if (done) this.responseDone = true;
    if (ok || done) {
      this.pending = null;
      this.controller?.resume();
    }
    return ok;
  }

  onResponseEnd(): void {
    this.context.table.recordOutcome(this.slot, false, this.status);
    // A body of known length was already finished by tryEnd once its last byte went out.
    if (!this.clientGone && !this.responseDone) {
      this.responseDone = true;
      this.res.cork(() => {
        if (this.responseHeaders) this.writeHead();
        if (this.noBody) this.res.endWithoutBody();
        else this.res.end();
      });
    }
    this.finish();
  }

  onResponseError(controller: DispatchController | null, err: Error): void {
    // Our own abort of a body over the limit is no failure of the backend's.
    if (!this.clientGone && this.status !== 413) {
      this.context.table.countFailure(this.slot);
      this.context.table.recordOutcome(this.slot, true, 0);
      if (this.retry(err)) return;
    }
    if (!this.clientGone && !this.responseDone) {
      this.responseDone = true;
      const fault = faultFor(err);
      this.status = fault.status;
      this.res.cork(() => {
        // Once the status line is out, the only honest signal left is to cut the connection.
        if (this.headersSent) this.res.close();
        else writeFault(this.res, fault, true);
      });
      this.context.logger.debug({ err: { code: (err as { code?: string }).code, message: err.message }, backend: this.backendUrl() }, 'upstream request failed');
    }
    this.finish();
  }

  /**
   * Sends the request to another backend when that is safe: the backend was never reached, or (for
   * an idempotent method) the connection broke before any response byte. Only requests without a
   * body: a body already streamed upstream cannot be sent again. At most retries.count times;
   * retries after a reset also spend the pool's retry budget.
   */
  private retry(err: Error): boolean {
    const { pool, context } = this;
    // Not once the backend has started answering (statusLine is set), nor with a body to resend.
    if (this.statusLine !== '' || this.responseDone || this.body !== null) return false;
    if (this.tried.length > pool.config.retries.count) return false;
    const refused = isConnectFailure(err);
    if (!refused && !(isReset(err) && isIdempotent(this.head.method))) return false;
    const next = pool.pickAnother(this.tried);
    // A backend that was never reached did no work: only retries that resend work spend budget.
    if (next < 0 || (!refused && !pool.spendRetry())) {
      if (next >= 0) context.table.release(next, context.worker);
      return false;
    }
    context.table.countRetry(this.slot);
    context.table.release(this.slot, context.worker);
    context.logger.debug({ from: this.backendUrl(), to: context.backends[next].origin, err: (err as { code?: string }).code }, 'retrying on another backend');
    this.slot = next;
    this.tried.push(next);
    this.controller = null;
    if (!this.stickyMatched) this.setCookie = pool.stickyCookie(next);
    context.table.countRequest(next);
    this.send();
    return true;
  }

  /** A chunked body ran past the route's limit: 413 if nothing was answered yet, else cut. */
  private onBodyTooLarge(): void {
    if (this.clientGone) return;
    this.body?.destroy();
    if (this.cancelWait) {
      this.refuse(FAULTS.bodyTooLarge);
      return;
    }
    // Answer first: the abort below reaches onResponseError at once, which must find it answered.
    this.status = 413;
    if (!this.responseDone) {
      this.responseDone = true;
      this.res.cork(() => writeFault(this.res, FAULTS.bodyTooLarge, true));
    }
    // onResponseError then releases the slot, without retrying or blaming the backend.
    this.controller?.abort(new Error('request body over the route limit'));
  }

  private onClientGone(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    this.status ||= 499;
    this.body?.destroy();
    if (this.cancelWait) {
      // Still waiting for a backend: leave the queue; there is no upstream request to cancel.
      this.cancelWait();
      this.cancelWait = undefined;
      this.finish();
    } else if (this.controller && !this.released) {
      // undici reports the abort through onResponseError, which releases the slot.
      this.controller.abort(new Error('client went away'));
    }
  }

  private finish(): void {
    if (this.released) return;
    this.released = true;
    const { context } = this;
    if (this.slot >= 0) {
      const { table } = context;
      table.release(this.slot, context.worker);
      if (this.status >= 100 && this.status !== 499) table.countStatus(this.slot, this.status);
      if (this.status >= 100 && this.status < 500) table.observeLatency(this.slot, (performance.now() - this.sentAt) / 1000);
    }
    context.inFlightHttp--;
    if (context.accessLog) {
      context.logger.info({
        type: 'http',
        method: this.head.method,
        path: this.head.path,
        status: this.status,
        backend: this.backendUrl(),
        ms: Math.round((performance.now() - this.startedAt) * 10) / 10,
        bytes: this.bytesOut,
        client: this.head.client,
      });
    }
  }

  private backendUrl(): string {
    return this.slot >= 0 ? this.context.backends[this.slot].origin : '';
  }
}

/**
 * The client's request body as a Readable: uWS pushes chunks in, and reading from the socket
 * pauses while the upstream is not taking them. A client that vanishes while paused is seen only
 * when reading resumes, so a paused body that stays paused past the idle timeout is dropped.
 */
class RequestBody extends Readable {
  private paused = false;
  private timer: NodeJS.Timeout | null = null;
  private received = 0;

  constructor(
    private readonly res: HttpResponse,
    private readonly idleTimeout: number,
    maxBody: number,
    private readonly onStalled: () => void,
    onTooLarge: () => void,
  ) {
    super({ highWaterMark: 256 * 1024 });
    res.onData((data, isLast) => {
      this.received += data.byteLength;
      if (maxBody > 0 && this.received > maxBody) {
        onTooLarge();
        return;
      }
      // uWS reuses the memory behind `data` once this callback returns: copy it.
      if (!this.push(Buffer.copyBytesFrom(new Uint8Array(data))) && !isLast) {
        this.paused = true;
        res.pause();
        this.timer = setTimeout(this.onStalled, this.idleTimeout);
      }
      if (isLast) this.push(null);
    });
  }

  override _read(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.res.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    callback(err);
  }
}
