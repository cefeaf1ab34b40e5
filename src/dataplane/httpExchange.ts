// One proxied HTTP request, the same for every engine: admission, the upstream HTTP request, retries,
// counting and the access log. The engine gives it a ClientReply to write the response with.

import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { recordLatency } from '../core/balancers/latency.js';
import { FAULTS, faultFor, isConnectFailure, isIdempotent, isReset, type ProxyFault } from '../core/errors.js';
import type { RequestHead } from '../core/forwarding.js';
import type { MatchedRoute } from '../core/routing.js';
import type { HeaderEdit } from '../config/types.js';
import type { CacheResult } from '../engine/messages.js';
import type { Admittable, PoolRuntime } from './admission.js';
import { BackendLease } from './backendLease.js';
import { startAfterFleetLimit, type Admission } from './requestGate.js';
import type { UpstreamControl, UpstreamResponseHandler } from './upstreamHttp.js';
import type { WorkerContext } from './workerContext.js';

/** Response headers that describe one hop: never relayed. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);

/** How an engine answers the client. Calls come in order: start, write*, end or fail; or fault. */
export interface ClientReply {
  /** A short error response of fairway's own, optionally closing the connection. */
  fault(fault: ProxyFault, closeConnection: boolean, retryAfterSeconds?: number): void;
  /**
   * The response head: `headers` is a flat [name, value, name, value, …] list with hop-by-hop
   * headers already taken out; `total` is the announced length or -1 (streamed); `noBody` for HEAD, 204 and 304.
   */
  start(statusCode: number, statusMessage: string | undefined, headers: string[], total: number, noBody: boolean): void;
  /** Body bytes. False: the client is not taking more now, and `resume` is called once it does. */
  write(chunk: Buffer, resume: () => void): boolean;
  /** The response is complete. */
  end(): void;
  /**
   * The upstream exchange failed: the fault's response when nothing has reached the client yet,
   * else the connection is cut (the only honest signal once a status line is out).
   */
  fail(fault: ProxyFault): void;
}

/**
 * Sees a backend's response beside the client (the response cache), and may answer the client
 * itself instead: with a stored response a 304 refreshed, or one standing in for an error.
 */
export interface ResponseTap {
  /** What the cache did, for the access log. */
  readonly result: CacheResult;
  /** What the tap answered the client with itself (a status and its body bytes), else null. */
  readonly served: Served | null;
  /**
   * The backend's head (hop-by-hop headers out, before the route's edits): headers to add to the
   * relayed response, or null when the tap answers the client and the response is not relayed.
   */
  start(statusCode: number, statusMessage: string, headers: string[]): string[] | null;
  data(chunk: Buffer): void;
  /** The response arrived whole. */
  end(): void;
  /** No backend answered (`fault`, when fairway refused it itself): true when the tap answered the client instead. */
  failed(fault?: ProxyFault): boolean;
  /** The exchange is over, however it ended. */
  finished(): void;
}

export interface Served {
  status: number;
  bytes: number;
}

/** What a request without a tap adds to its relayed response: nothing (shared, never written). */
const NO_EXTRA: readonly string[] = [];

/** A backend's headers as the client gets them: hop-by-hop ones out, the route's edits, then `extra`. */
export function relayedHeaders(headers: string[], edit: HeaderEdit | undefined, extra: readonly string[]): string[] {
  const relayed: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (HOP_BY_HOP.has(name)) continue;
    if (edit && (edit.remove.includes(name) || edit.set.some(([setName]) => setName === name))) continue;
    relayed.push(name, headers[i + 1]);
  }
  if (edit) for (const [name, value] of edit.set) relayed.push(name, value);
  for (let i = 0; i < extra.length; i++) relayed.push(extra[i]);
  return relayed;
}

/** One proxied request: holds a backend lease until the upstream exchange ends. */
export class HttpExchange implements UpstreamResponseHandler, Admittable {
  /** Set while the request waits in its pool's queue: takes it out when the client leaves. */
  cancelWait: (() => void) | undefined;
  /** The request body streamed upstream, or null when there is none. */
  body: Readable | null = null;
  private readonly lease: BackendLease;
  private readonly pool: PoolRuntime;
  private readonly route: MatchedRoute;
  private readonly stickyMatched: boolean;
  private setCookie: string | undefined;
  private controller: UpstreamControl | null = null;
  private clientGone = false;
  /** Set once the response is complete or failed: the reply must not be touched again. */
  private responseDone = false;
  /** Set once the exchange is over and counted (access log written). */
  private finished = false;
  /** Set once the backend's status line arrived: from then on, errors can only cut. */
  private answered = false;
  private status = 0;
  /** The x-fairway-error code when fairway answered for the backend, for the access log. */
  private errorCode = '';
  private bytesOut = 0;
  private readonly startedAt = performance.now();
  private sentAt = 0;
  /** Set when the tap took the response over: nothing of it is relayed. */
  private tapAnswers = false;
  private readonly resume = () => this.controller?.resume();

  constructor(
    private readonly context: WorkerContext,
    private readonly reply: ClientReply,
    private readonly head: RequestHead,
    gate: Admission,
    private readonly tap?: ResponseTap,
  ) {
    this.pool = gate.pool;
    this.route = gate.route;
    this.stickyMatched = gate.stickySlot >= 0;
    this.lease = new BackendLease(context.table, context.worker, gate.pool, gate.key);
    context.inFlightHttp++;
  }

  /** Asks the pool for a backend (now, or after waiting in its queue), after the fleet's rate limit if the route has one. */
  start(gate: Admission): void {
    if (gate.fleetLimit) this.cancelWait = startAfterFleetLimit(this.context, gate, this, () => !this.finished);
    else this.cancelWait = gate.pool.admit(this, gate.key, gate.stickySlot);
  }

  private get slot(): number {
    return this.lease.slot;
  }

  refuse(fault: ProxyFault, retryAfterSeconds = 0): void {
    this.cancelWait = undefined;
    if (this.clientGone || this.finished) return;
    this.responseDone = true;
    this.status = fault.status;
    this.errorCode = fault.code;
    if (!this.tap?.failed(fault)) this.reply.fault(fault, false, retryAfterSeconds);
    this.finish();
  }

  admit(slot: number): void {
    this.cancelWait = undefined;
    if (!this.lease.admit(slot, this.clientGone)) return;
    if (!this.stickyMatched) this.setCookie = this.pool.stickyCookie(slot);
    this.send();
  }

  private send(): void {
    const { context, head } = this;
    this.sentAt = performance.now();
    try {
      const timeouts = this.route.timeouts;
      context.upstreams[this.slot].dispatch(
        timeouts
          ? { path: head.path, method: head.method, headers: head.headers, length: head.contentLength, body: this.body, responseTimeout: timeouts.response, idleTimeout: timeouts.idle }
          : { path: head.path, method: head.method, headers: head.headers, length: head.contentLength, body: this.body },
        this,
      );
    } catch (err) {
      // A socket that cannot even be made (an invalid address, for one) fails the request here.
      this.onResponseError(null, err as Error);
    }
  }

  onRequestStart(controller: UpstreamControl): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client went away'));
  }

  onResponseStart(_controller: UpstreamControl, statusCode: number, headers: string[], statusMessage: string, announcedLength: number): void {
    if (this.clientGone) return;
    if (this.pool.config.algorithm === 'least-time') {
      recordLatency(this.context.table, this.slot, (performance.now() - this.sentAt) * 1000, this.context.table.now(), this.pool.config.decay);
    }
    this.answered = true;
    this.status = statusCode;
    const extra = this.tap ? this.tap.start(statusCode, statusMessage, headers.filter((_, i) => !HOP_BY_HOP.has(headers[i - (i % 2)]))) : NO_EXTRA;
    if (extra === null) {
      this.tapAnswers = true;
      return;
    }
    const relayed = relayedHeaders(headers, this.route.responseHeaders, extra);
    if (this.setCookie) relayed.push('set-cookie', this.setCookie);
    const noBody = this.head.method === 'HEAD' || statusCode === 204 || statusCode === 304;
    this.reply.start(statusCode, statusMessage || undefined, relayed, announcedLength, noBody);
  }

  onResponseData(controller: UpstreamControl, chunk: Buffer): void {
    this.tap?.data(chunk);
    if (this.clientGone || this.responseDone || this.tapAnswers) return;
    this.bytesOut += chunk.length;
    if (!this.reply.write(chunk, this.resume)) controller.pause();
  }

  onResponseEnd(): void {
    // The connection may already carry another request: this one must not steer it any more.
    this.controller = null;
    this.context.table.recordOutcome(this.slot, false, this.status);
    this.tap?.end();
    if (!this.clientGone && !this.responseDone && !this.tapAnswers) {
      this.responseDone = true;
      this.reply.end();
    }
    this.finish();
  }

  onResponseError(_controller: UpstreamControl | null, err: Error): void {
    this.controller = null;
    // Our own abort of a body over the limit, or of one the client stopped sending, is no
    // failure of the backend's.
    const clientsFault = this.status === 413 || (err as { code?: string }).code === 'FAIRWAY_CLIENT_BODY_TIMEOUT';
    if (!this.clientGone && !clientsFault) {
      this.context.table.countFailure(this.slot);
      this.context.table.recordOutcome(this.slot, true, 0);
      if (this.retry(err)) return;
    }
    if (!this.clientGone && !this.responseDone && !this.tapAnswers) {
      this.responseDone = true;
      const fault = faultFor(err);
      this.status = fault.status;
      this.errorCode = fault.code;
      if (!this.answered && this.tap?.failed()) return this.finish();
      this.reply.fail(fault);
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
    const { pool, context, lease } = this;
    if (this.answered || this.responseDone || this.body !== null || !lease.canSwitch) return false;
    const refused = isConnectFailure(err);
    if (!refused && !(isReset(err) && isIdempotent(this.head.method))) return false;
    // A backend that was never reached did no work: only retries that resend work spend budget.
    if (!refused && !pool.spendRetry()) return false;
    const from = lease.slot;
    if (!lease.switch()) return false;
    context.logger.debug({ from: context.backends[from].origin, to: context.backends[lease.slot].origin, err: (err as { code?: string }).code }, 'retrying on another backend');
    this.controller = null;
    if (!this.stickyMatched) this.setCookie = pool.stickyCookie(lease.slot);
    this.send();
    return true;
  }

  /** The request body ran past the route's limit: 413 if nothing was answered yet, else cut. */
  onBodyTooLarge(): void {
    if (this.clientGone) return;
    this.body?.destroy();
    if (this.cancelWait) {
      this.refuse(FAULTS.bodyTooLarge);
      return;
    }
    // Answer first: the abort below reaches onResponseError at once, which must find it answered.
    this.status = 413;
    this.errorCode = FAULTS.bodyTooLarge.code;
    if (!this.responseDone) {
      this.responseDone = true;
      this.reply.fault(FAULTS.bodyTooLarge, true);
    }
    // onResponseError then releases the slot, without retrying or blaming the backend.
    this.controller?.abort(new Error('request body over the route limit'));
  }

  /** The client went away (connection closed or aborted) before the response was complete. */
  onClientGone(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    this.status ||= 499;
    this.body?.destroy();
    if (this.cancelWait) {
      // Still waiting for a backend: leave the queue; there is no upstream request to cancel.
      this.cancelWait();
      this.cancelWait = undefined;
      this.finish();
    } else if (this.controller && !this.finished) {
      // The upstream client reports the abort through onResponseError, which releases the slot.
      this.controller.abort(new Error('client went away'));
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const { context } = this;
    this.lease.release();
    if (this.slot >= 0) {
      const { table } = context;
      if (this.status >= 100 && this.status !== 499) table.countStatus(this.slot, this.status);
      if (this.status >= 100 && this.status < 500) table.observeLatency(this.slot, (performance.now() - this.sentAt) / 1000);
    }
    context.inFlightHttp--;
    this.tap?.finished();
    // A response the tap served (a stale one standing in for an error) is what the client got.
    const served = this.tap?.served;
    const errorCode = served ? '' : this.errorCode;
    if (errorCode) context.table.countFault(errorCode);
    if (context.accessLog) {
      context.logger.info({
        type: 'http',
        method: this.head.method,
        path: this.head.path,
        status: served ? served.status : this.status,
        backend: this.backendUrl(),
        duration_ms: Math.round((performance.now() - this.startedAt) * 10) / 10,
        bytes: served ? served.bytes : this.bytesOut,
        client: this.head.client,
        ...(errorCode ? { error: errorCode } : {}),
        ...(this.tap ? { cache: this.tap.result } : {}),
      });
    }
  }

  private backendUrl(): string {
    return this.slot >= 0 ? this.context.backends[this.slot].origin : '';
  }
}
