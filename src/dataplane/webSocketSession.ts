// One proxied WebSocket session, the same for every engine: the upstream leg, the deferred answer
// to the client's upgrade, retries, message relay with backpressure, keepalive, counting and the
// access log. The engine gives it the client's handshake and, once open, socket.

import { recordLatency } from '../core/balancers/latency.js';
import { FAULTS, faultFor, isConnectFailure, type ProxyFault } from '../core/errors.js';
import type { RequestHead } from '../core/forwarding.js';
import { tlsConnectOptions } from '../core/upstreamTls.js';
import type { Admittable, PoolRuntime } from './admission.js';
import { BackendLease } from './backendLease.js';
import { startAfterFleetLimit, type Admission } from './requestGate.js';
import { COMPRESS_THRESHOLD, UpstreamWebSocket, type UpstreamHandler } from './upstreamWebSocket.js';
import type { OpenSession, WorkerContext } from './workerContext.js';

/** Backend → client: pause reading the backend above this much unsent to the client. */
const CLIENT_HIGH_WATER = 1024 * 1024;
const CLIENT_LOW_WATER = 256 * 1024;

const CLOSE_GOING_AWAY = 1001;
const CLOSE_TRY_AGAIN_LATER = 1013;
const CLOSE_BAD_GATEWAY = 1014;

/** Codes that may be sent in a close frame (RFC 6455 7.4), as opposed to reported locally. */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** The client's upgrade request, answered once the backend's handshake is done. */
export interface ClientHandshake {
  /** Subprotocols the client offered, as sent. */
  readonly protocols: string;
  /** An error response of fairway's own. */
  refuse(fault: ProxyFault, closeConnection: boolean, retryAfterSeconds?: number): void;
  /** The backend's own refusal (status, content type, body), passed on. */
  relay(status: number, statusMessage: string, contentType: string | undefined, body: Buffer): void;
  /** Completes the upgrade; the engine calls the session's onClientOpen with the socket. */
  accept(protocol: string, setCookie: string | undefined): void;
}

/** The client's open WebSocket, in the shape of a uWS socket (which is passed as it is). */
export interface ClientSocket {
  /**
   * SEND_DROPPED when the client is past its buffer limit and the message was not queued.
   * `compress`: with permessage-deflate agreed with this client (else ignored).
   */
  send(data: Buffer, isBinary: boolean, compress: boolean): number;
  getBufferedAmount(): number;
  end(code: number, reason?: string | Buffer): void;
}

/** What `send` returns for a message that was not queued (uWS's value). */
export const SEND_DROPPED = 2;

/** One proxied WebSocket session; counts as one active session on its backend until it ends. */
export class WebSocketSession implements OpenSession, Admittable, UpstreamHandler {
  /** Set while the upgrade waits in its pool's queue: takes it out when the client leaves. */
  cancelWait: (() => void) | undefined;
  private readonly lease: BackendLease;
  private readonly pool: PoolRuntime;
  private readonly stickyMatched: boolean;
  /** The client's slot in the shared limits when its session is counted there, else -1. */
  private readonly limitSlot: number;
  /** Messages and a close from the backend that arrive after its handshake, before the client's open. */
  private early: [Buffer, boolean][] | null = null;
  private earlyClose: [number, Buffer] | null = null;
  private upstream: UpstreamWebSocket | null = null;
  private client: ClientSocket | null = null;
  /** The client's session opened (the upgrade was answered): it counts as a session when it ends. */
  private opened = false;
  /** The client's upgrade until it is answered. */
  private pending: ClientHandshake | null;
  private finished = false;
  private upstreamPaused = false;
  /** Cleared when a ping goes out, set by any sign of life; still clear at the next ping = dead. */
  upstreamAlive = true;
  private closeCode = 0;
  /** The x-fairway-error code when fairway refused the upgrade, for the access log. */
  private errorCode = '';
  /** Path and client for the access log; the upstream request's headers until the backend answers. */
  private readonly path: string;
  private readonly fromAddress: string;
  private upstreamHeaders: string[] | null;
  /** When the current handshake toward a backend began. */
  private sentAt = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  readonly startedAt = performance.now();
  /** The route's response timeout for the backend's handshake, ms. */
  private readonly responseTimeout: number;

  get backendSlot(): number {
    return this.lease.slot;
  }

  private get slot(): number {
    return this.lease.slot;
  }

  get isOpen(): boolean {
    return this.client !== null;
  }

  get clientAddress(): string {
    return this.fromAddress;
  }

  constructor(
    private readonly context: WorkerContext,
    head: RequestHead,
    gate: Admission,
    handshake: ClientHandshake,
  ) {
    this.pool = gate.pool;
    this.stickyMatched = gate.stickySlot >= 0;
    this.limitSlot = gate.limitSlot;
    this.responseTimeout = gate.route.timeouts?.response ?? context.config.timeouts.response;
    this.lease = new BackendLease(context.table, context.worker, gate.pool, gate.key, context.sessionFleet);
    this.pending = handshake;
    this.path = head.path;
    this.fromAddress = head.client;
    this.upstreamHeaders = head.headers;
    context.webSockets.add(this);
  }

  refuse(fault: ProxyFault, retryAfterSeconds = 0): void {
    this.cancelWait = undefined;
    const handshake = this.pending;
    if (!handshake) return;
    this.pending = null;
    this.closeCode = fault.status;
    this.errorCode = fault.code;
    handshake.refuse(fault, false, retryAfterSeconds);
    this.finish();
  }

  /** Asks for a backend (now, or after the fleet's answer or a wait in the pool's queue), after the fleet's rate limit if the route has one. */
  start(gate: Admission): void {
    if (gate.fleetLimit) this.cancelWait = startAfterFleetLimit(this.context, gate, this, () => Boolean(this.pending));
    else this.cancelWait = this.lease.find(this, gate.stickySlot);
  }

  admit(slot: number): void {
    this.cancelWait = undefined;
    if (this.lease.admit(slot, !this.pending)) this.connect();
  }

  private connect(): void {
    const { context } = this;
    const backend = context.backends[this.slot];
    this.sentAt = performance.now();
    this.upstream = new UpstreamWebSocket(this, {
      host: backend.host,
      port: backend.port,
      tls: tlsConnectOptions(this.pool.config, backend),
      path: this.path,
      headers: this.upstreamHeaders!,
      protocols: this.pending!.protocols,
      compress: context.config.websocket.compression !== 'off',
      maxMessage: context.config.websocket.maxMessage,
      connectTimeout: context.config.timeouts.connect,
      responseTimeout: this.responseTimeout,
    });
  }

  onUpstreamOpen(protocol: string): void {
    const handshake = this.pending;
    this.pending = null;
    if (!handshake) return;
    const { pool, context } = this;
    context.table.recordOutcome(this.slot, false, 101);
    const handshakeMs = performance.now() - this.sentAt;
    if (pool.config.algorithm === 'least-time') recordLatency(context.table, this.slot, handshakeMs * 1000, context.table.now(), pool.config.decay);
    context.table.observeLatency(this.slot, handshakeMs / 1000);
    context.table.countWebSocket(this.slot);
    // No more attempts: an idle session keeps only what its access-log line needs.
    this.upstreamHeaders = null;
    this.early = [];
    handshake.accept(protocol, this.stickyMatched ? undefined : pool.stickyCookie(this.slot));
  }

  /** The backend answered the upgrade with something other than 101. */
  onUpstreamRefusal(status: number, statusMessage: string, contentType: string | undefined, body: Buffer): void {
    // A backend failing (5xx) the handshake is passed over like an unreachable one; its other
    // answers (401, 403, 404…) are the backend's to give and go to the client as they are.
    if (status >= 500 && this.pending) {
      this.context.table.recordOutcome(this.slot, false, status);
      if (this.retryUpgrade(null)) return;
    }
    if (status >= 500) this.context.table.countFailure(this.slot);
    const handshake = this.pending;
    this.pending = null;
    this.closeCode = status;
    this.errorCode = FAULTS.badHandshake.code;
    handshake?.relay(status, statusMessage, contentType, body);
    this.finish();
  }

  onUpstreamPong(): void {
    this.upstreamAlive = true;
  }

  onUpstreamError(err: Error): void {
    const handshake = this.pending;
    if (handshake) this.context.table.recordOutcome(this.slot, true, 0);
    if (handshake && this.retryUpgrade(err)) return;
    if (handshake) {
      this.pending = null;
      this.context.table.countFailure(this.slot);
      const fault = faultFor(err);
      this.closeCode = fault.status;
      this.errorCode = fault.code;
      handshake.refuse(fault, false);
      this.finish();
    } else if (this.client) {
      this.context.table.countFailure(this.slot);
    }
    this.context.logger.debug({ err: { code: (err as { code?: string }).code, message: err.message }, backend: this.context.backends[this.slot].origin }, 'upstream WebSocket error');
  }

  /**
   * An upgrade whose backend could not be reached (or answered with a 5xx: `err` is null) is tried
   * on another backend before the client hears of it.
   */
  private retryUpgrade(err: Error | null): boolean {
    const { lease, context } = this;
    if (err && !isConnectFailure(err)) return false;
    const from = lease.slot;
    if (!lease.switch()) return false;
    context.table.countFailure(from);
    context.logger.debug({ from: context.backends[from].origin, to: context.backends[lease.slot].origin }, 'retrying the upgrade on another backend');
    this.connect();
    return true;
  }

  /** The client left before its upgrade was answered. */
  onHandshakeAborted(): void {
    this.pending = null;
    this.closeCode = 499;
    this.cancelWait?.();
    this.cancelWait = undefined;
    this.upstream?.terminate();
    this.finish();
  }

  onClientOpen(socket: ClientSocket): void {
    this.client = socket;
    this.opened = true;
    // What the backend sent or did between its handshake and the client's: replay it in order.
    const early = this.early;
    this.early = null;
    if (early) for (const [data, isBinary] of early) this.onUpstreamMessage(data, isBinary);
    if (this.earlyClose && this.client) this.onUpstreamClose(this.earlyClose[0], this.earlyClose[1]);
  }

  /** A message from the client; `data` need only stay valid during the call. */
  onClientMessage(data: Buffer, isBinary: boolean): void {
    const upstream = this.upstream!;
    // Neither engine can stop reading one client here, so a client that outruns its backend is
    // cut off: past max_buffered already queued, whatever this message's size (up to max_message).
    if (upstream.bufferedAmount > this.context.config.websocket.maxBuffered) {
      this.client!.end(CLOSE_TRY_AGAIN_LATER, 'backend is not keeping up');
      return;
    }
    this.bytesIn += data.length;
    upstream.send(data, isBinary);
  }

  onUpstreamMessage(data: Buffer, isBinary: boolean): void {
    this.upstreamAlive = true;
    const client = this.client;
    if (!client) {
      // The client's upgrade is under way: the engine opens it later, keep the message until then.
      this.early?.push([Buffer.from(data), isBinary]);
      return;
    }
    this.bytesOut += data.length;
    const compress = data.length >= COMPRESS_THRESHOLD && this.context.config.websocket.compression !== 'off';
    if (client.send(data, isBinary, compress) === SEND_DROPPED) {
      client.end(CLOSE_TRY_AGAIN_LATER, 'client is not keeping up');
    } else if (!this.upstreamPaused && client.getBufferedAmount() > CLIENT_HIGH_WATER) {
      this.upstreamPaused = true;
      this.upstream!.pause();
    }
  }

  /** The client's socket drained some of what was queued to it. */
  onClientDrain(): void {
    if (this.upstreamPaused && this.client && this.client.getBufferedAmount() < CLIENT_LOW_WATER) {
      this.upstreamPaused = false;
      this.upstream!.resume();
    }
  }

  onUpstreamClose(code: number, reason: Buffer): void {
    const client = this.client;
    if (!client) {
      if (this.early) this.earlyClose = [code, reason];
      return;
    }
    this.client = null;
    if (sendableCode(code)) client.end(code, reason);
    else if (code === 1005) client.end(1000);
    else client.end(CLOSE_BAD_GATEWAY, 'backend connection lost');
  }

  onClientClose(code: number, reason: Buffer): void {
    this.client = null;
    this.early = null;
    this.closeCode = code;
    const upstream = this.upstream;
    if (upstream?.isOpen) {
      if (sendableCode(code)) upstream.close(code, reason);
      else if (code === 1005) upstream.close(1000);
      else upstream.close(CLOSE_GOING_AWAY, 'client connection lost');
    }
    this.finish();
  }

  /** Pinged by the worker's keepalive round; a backend silent since the last round is dead. */
  keepalive(): void {
    const upstream = this.upstream;
    if (!upstream?.isOpen) return;
    if (!this.upstreamAlive) {
      upstream.terminate();
      return;
    }
    this.upstreamAlive = false;
    upstream.ping();
  }

  shutdown(code: number, reason: string): void {
    if (this.client) this.client.end(code, reason);
    else if (this.pending) {
      const handshake = this.pending;
      this.pending = null;
      this.errorCode = FAULTS.noBackend.code;
      handshake.refuse(FAULTS.noBackend, true);
      this.upstream?.terminate();
      this.finish();
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const { context } = this;
    context.webSockets.delete(this);
    this.lease.release();
    if (this.limitSlot >= 0) context.limits.release(this.limitSlot, context.worker);
    if (this.opened) context.table.recordSession(this.slot, performance.now() - this.startedAt);
    if (this.errorCode) context.table.countFault(this.errorCode);
    if (context.accessLog) {
      context.logger.info({
        type: 'websocket',
        path: this.path,
        code: this.closeCode,
        backend: this.slot >= 0 ? context.backends[this.slot].origin : '',
        duration_ms: Math.round(performance.now() - this.startedAt),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        client: this.fromAddress,
        ...(this.errorCode ? { error: this.errorCode } : {}),
      });
    }
  }
}
