// WebSocket proxying: a uWS client socket relayed message by message to an upstream `ws` client.

import type { IncomingMessage } from 'node:http';
import type { HttpRequest, HttpResponse, us_socket_context_t, WebSocket as ClientSocket, WebSocketBehavior } from 'uWebSockets.js';
import { WebSocket as UpstreamSocket } from 'ws';
import { recordLatency } from '../../core/balancers/latency.js';
import { tlsConnectOptions } from '../../core/upstreamTls.js';
import { FAULTS, faultFor, isConnectFailure, type ProxyFault } from '../../core/errors.js';
import type { Admittable, PoolRuntime } from '../worker/admission.js';
import { requestFacts, writeFault } from './httpProxy.js';
import { gateRequest, runTestFault } from '../worker/requestGate.js';
import { readRequestHead, type RequestHead } from './requestHead.js';
import type { OpenSession, WorkerContext } from '../worker/workerContext.js';

/** uWS copies user data shallowly, so the session lives one level down. */
interface SessionData {
  session: WebSocketSession;
}

/** Backend → client: pause reading the backend above this much unsent to the client. */
const CLIENT_HIGH_WATER = 1024 * 1024;
const CLIENT_LOW_WATER = 256 * 1024;
/** Longest handshake response body relayed to the client when the backend refuses an upgrade. */
const REFUSAL_BODY_LIMIT = 64 * 1024;

const CLOSE_GOING_AWAY = 1001;
const CLOSE_INTERNAL_ERROR = 1011;
const CLOSE_TRY_AGAIN_LATER = 1013;
const CLOSE_BAD_GATEWAY = 1014;

/** Codes that may be sent in a close frame (RFC 6455 7.4), as opposed to reported locally. */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

export function webSocketBehavior(context: WorkerContext): WebSocketBehavior<SessionData> {
  const { websocket } = context.config;
  return {
    maxPayloadLength: websocket.maxMessage,
    // Sends must never be dropped silently: the relay pauses the backend long before this.
    maxBackpressure: websocket.maxBuffered + websocket.maxMessage,
    idleTimeout: Math.round(websocket.pingInterval / 1000),
    sendPingsAutomatically: websocket.pingInterval > 0,
    upgrade: (res, req, socketContext) => {
      try {
        handleUpgrade(context, res, req, socketContext);
      } catch (err) {
        context.logger.error({ err }, 'error in WebSocket upgrade handler');
        writeFault(res, FAULTS.internal);
      }
    },
    open: (ws) => {
      try {
        ws.getUserData().session.onClientOpen(ws);
      } catch (err) {
        endAfterError(context, ws, err);
      }
    },
    // Per message and per drain: try/catch in place, no closure allocated for each call.
    message: (ws, message, isBinary) => {
      try {
        ws.getUserData().session.onClientMessage(message, isBinary);
      } catch (err) {
        endAfterError(context, ws, err);
      }
    },
    drain: (ws) => {
      try {
        ws.getUserData().session.onClientDrain();
      } catch (err) {
        endAfterError(context, ws, err);
      }
    },
    close: (ws, code, message) => {
      try {
        ws.getUserData().session.onClientClose(code, message);
      } catch (err) {
        context.logger.error({ err }, 'error in WebSocket close handler');
      }
    },
  };
}

/** An exception in a uWS handler would abort the process: it ends only the one session. */
function endAfterError(context: WorkerContext, ws: ClientSocket<SessionData>, err: unknown): void {
  context.logger.error({ err }, 'error in WebSocket handler');
  try {
    ws.end(CLOSE_INTERNAL_ERROR, 'internal error');
  } catch {
    // Already closed.
  }
}

function handleUpgrade(context: WorkerContext, res: HttpResponse, req: HttpRequest, socketContext: us_socket_context_t): void {
  const head = readRequestHead(res, req, true, context.proto, context.addressing);
  const key = req.getHeader('sec-websocket-key');
  const protocols = req.getHeader('sec-websocket-protocol');
  const extensions = req.getHeader('sec-websocket-extensions');
  if (context.testHooks) runTestFault(req.getHeader('x-fairway-test-fault'));
  const gate = gateRequest(context, head, () => requestFacts(req, head), true);
  if ('fault' in gate) return writeFault(res, gate.fault, gate.closeConnection, gate.retryAfter);
  const handshakeTimeout = context.config.timeouts.connect + (gate.route.timeouts?.response ?? context.config.timeouts.response);
  const session = new WebSocketSession(context, head, gate.pool, gate.stickySlot >= 0, { res, key, protocols, extensions, socketContext, handshakeTimeout }, gate.limitSlot);
  res.onAborted(() => session.onHandshakeAborted());
  session.cancelWait = gate.pool.admit(session, gate.key, gate.stickySlot);
}

/** What answering the client's upgrade needs, kept until the backend's handshake is done. */
interface ClientHandshake {
  res: HttpResponse;
  key: string;
  protocols: string;
  extensions: string;
  socketContext: us_socket_context_t;
  /** Connect plus the route's response timeout, ms. */
  handshakeTimeout: number;
}

/** One proxied WebSocket session; counts as one active session on its backend until it ends. */
export class WebSocketSession implements OpenSession, Admittable {
  /** Set while the upgrade waits in its pool's queue: takes it out when the client leaves. */
  cancelWait: (() => void) | undefined;
  /** -1 until a backend is admitted. */
  private slot = -1;
  /** Messages and a close from the backend that arrive after its handshake, before the client's open. */
  private early: [Buffer, boolean][] | null = null;
  private earlyClose: [number, Buffer] | null = null;
  /** Backends the upgrade was tried on, the current one last. */
  private readonly tried: number[] = [];
  private upstream: UpstreamSocket | null = null;
  private client: ClientSocket<SessionData> | null = null;
  private handshakeRes: HttpResponse | null = null;
  private released = false;
  private upstreamPaused = false;
  /** Cleared when a ping goes out, set by any sign of life; still clear at the next ping = dead. */
  upstreamAlive = true;
  private closeCode = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  readonly startedAt = performance.now();

  get backendSlot(): number {
    return this.slot;
  }

  get isOpen(): boolean {
    return this.client !== null;
  }

  get clientAddress(): string {
    return this.head.client;
  }

  constructor(
    private readonly context: WorkerContext,
    private readonly head: RequestHead,
    private readonly pool: PoolRuntime,
    private readonly stickyMatched: boolean,
    private readonly handshake: ClientHandshake,
    /** The client's slot in the shared limits when its session is counted there, else -1. */
    private readonly limitSlot: number,
  ) {
    this.handshakeRes = handshake.res;
    context.webSockets.add(this);
  }

  refuse(fault: ProxyFault): void {
    this.cancelWait = undefined;
    const res = this.handshakeRes;
    if (!res) return;
    this.handshakeRes = null;
    this.closeCode = fault.status;
    res.cork(() => writeFault(res, fault));
    this.finish();
  }

  admit(slot: number): void {
    this.cancelWait = undefined;
    if (!this.handshakeRes) {
      this.context.table.release(slot, this.context.worker);
      return;
    }
    this.slot = slot;
    this.tried.push(slot);
    this.context.table.countRequest(slot);
    this.pool.earnRetry();
    this.connect();
  }

  private connect(): void {
    const { context, head } = this;
    const { key, protocols, extensions, socketContext } = this.handshake;
    const sentAt = performance.now();
    const backend = context.backends[this.slot];
    const headers: Record<string, string> = {};
    for (let i = 0; i < head.headers.length; i += 2) {
      const name = head.headers[i];
      const previous = headers[name];
      headers[name] = previous === undefined ? head.headers[i + 1] : `${previous}${name === 'cookie' ? '; ' : ', '}${head.headers[i + 1]}`;
    }
    const offered = protocols ? protocols.split(',').map((p) => p.trim()).filter(Boolean) : [];
    const scheme = backend.tls ? 'wss' : 'ws';
    const upstream = new UpstreamSocket(`${scheme}://${backend.host.includes(':') ? `[${backend.host}]` : backend.host}:${backend.port}${head.path}`, offered, {
      ...tlsConnectOptions(this.pool.config, backend),
      headers,
      perMessageDeflate: false,
      followRedirects: false,
      maxPayload: context.config.websocket.maxMessage,
      handshakeTimeout: this.handshake.handshakeTimeout,
    });
    this.upstream = upstream;
    upstream.on('open', () => {
      const pending = this.handshakeRes;
      this.handshakeRes = null;
      if (!pending) return;
      const { pool } = this;
      context.table.recordOutcome(this.slot, false, 101);
      const handshakeMs = performance.now() - sentAt;
      if (pool.config.algorithm === 'least-time') recordLatency(context.table, this.slot, handshakeMs * 1000, context.table.now(), pool.config.decay);
      context.table.observeLatency(this.slot, handshakeMs / 1000);
      context.table.countWebSocket(this.slot);
      const cookie = this.stickyMatched ? undefined : pool.stickyCookie(this.slot);
      this.early = [];
      pending.cork(() => {
        // uWS would send 200 for a header written before upgrade() unless the status is set first.
        if (cookie) pending.writeStatus('101 Switching Protocols').writeHeader('set-cookie', cookie);
        pending.upgrade({ session: this }, key, upstream.protocol, extensions, socketContext);
      });
    });
    upstream.on('unexpected-response', (_req, response) => {
      // A backend failing (5xx) the handshake is passed over like an unreachable one; its other
      // answers (401, 403, 404…) are the backend's to give and go to the client as they are.
      if ((response.statusCode ?? 0) >= 500 && this.handshakeRes) {
        this.context.table.recordOutcome(this.slot, false, response.statusCode!);
        if (this.retryUpgrade(null)) {
          response.resume();
          upstream.terminate();
          return;
        }
      }
      this.relayRefusal(response);
    });
    // After a retry, the abandoned attempt may still report: only the current upstream counts.
    upstream.on('error', (err) => {
      if (upstream === this.upstream) this.onUpstreamError(err);
    });
    upstream.on('message', (data, isBinary) => this.onUpstreamMessage(data as Buffer, isBinary));
    upstream.on('pong', () => {
      this.upstreamAlive = true;
    });
    upstream.on('close', (code, reason) => {
      if (upstream === this.upstream) this.onUpstreamClose(code, reason);
    });
  }

  /** The backend answered the upgrade with something other than 101: pass its answer on. */
  private relayRefusal(response: IncomingMessage): void {
    const status = response.statusCode ?? 502;
    if (status >= 500) this.context.table.countFailure(this.slot);
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      if (size < REFUSAL_BODY_LIMIT) chunks.push(chunk);
      size += chunk.length;
    });
    const reply = () => {
      const res = this.handshakeRes;
      this.handshakeRes = null;
      this.closeCode = status;
      if (res) {
        res.cork(() => {
          res.writeStatus(`${status} ${response.statusMessage ?? ''}`);
          const type = response.headers['content-type'];
          if (type) res.writeHeader('content-type', type);
          res.writeHeader('x-fairway-error', FAULTS.badHandshake.code);
          res.end(Buffer.concat(chunks).subarray(0, REFUSAL_BODY_LIMIT));
        });
      }
      this.upstream?.terminate();
      this.finish();
    };
    response.on('end', reply);
    response.on('error', reply);
  }

  private onUpstreamError(err: Error): void {
    const res = this.handshakeRes;
    if (res && this.upstream?.readyState !== UpstreamSocket.OPEN) this.context.table.recordOutcome(this.slot, true, 0);
    if (res && this.retryUpgrade(err)) return;
    if (res) {
      this.handshakeRes = null;
      this.context.table.countFailure(this.slot);
      const fault = faultFor(err);
      this.closeCode = fault.status;
      res.cork(() => writeFault(res, fault));
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
    const { pool, context } = this;
    if ((err && !isConnectFailure(err)) || this.tried.length > pool.config.retries.count) return false;
    const from = this.slot;
    const next = pool.switchBackend(from, this.tried);
    if (next < 0) return false;
    context.table.countFailure(from);
    context.logger.debug({ from: context.backends[from].origin, to: context.backends[next].origin }, 'retrying the upgrade on another backend');
    this.slot = next;
    this.connect();
    return true;
  }

  onHandshakeAborted(): void {
    this.handshakeRes = null;
    this.closeCode = 499;
    this.cancelWait?.();
    this.cancelWait = undefined;
    this.upstream?.terminate();
    this.finish();
  }

  onClientOpen(ws: ClientSocket<SessionData>): void {
    this.client = ws;
    // What the backend sent or did between its handshake and the client's: replay it in order.
    const early = this.early;
    this.early = null;
    if (early) for (const [data, isBinary] of early) this.onUpstreamMessage(data, isBinary);
    if (this.earlyClose && this.client) this.onUpstreamClose(this.earlyClose[0], this.earlyClose[1]);
  }

  onClientMessage(message: ArrayBuffer, isBinary: boolean): void {
    const upstream = this.upstream!;
    this.bytesIn += message.byteLength;
    // uWS reuses `message` once this handler returns, and ws may queue the data: copy it.
    upstream.send(Buffer.copyBytesFrom(new Uint8Array(message)), { binary: isBinary });
    if (upstream.bufferedAmount > this.context.config.websocket.maxBuffered) {
      // uWS cannot stop reading one client, so a client that outruns its backend is cut off.
      this.client!.end(CLOSE_TRY_AGAIN_LATER, 'backend is not keeping up');
    }
  }

  private onUpstreamMessage(data: Buffer, isBinary: boolean): void {
    this.upstreamAlive = true;
    const client = this.client;
    if (!client) {
      // The client's upgrade is under way: uWS calls open() later, keep the message until then.
      this.early?.push([data, isBinary]);
      return;
    }
    this.bytesOut += data.length;
    const sent = client.send(data, isBinary);
    if (sent === 2) {
      client.end(CLOSE_TRY_AGAIN_LATER, 'client is not keeping up');
    } else if (!this.upstreamPaused && client.getBufferedAmount() > CLIENT_HIGH_WATER) {
      this.upstreamPaused = true;
      this.upstream!.pause();
    }
  }

  onClientDrain(): void {
    if (this.upstreamPaused && this.client!.getBufferedAmount() < CLIENT_LOW_WATER) {
      this.upstreamPaused = false;
      this.upstream!.resume();
    }
  }

  private onUpstreamClose(code: number, reason: Buffer): void {
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

  onClientClose(code: number, message: ArrayBuffer): void {
    this.client = null;
    this.early = null;
    this.closeCode = code;
    const upstream = this.upstream;
    if (upstream && upstream.readyState === UpstreamSocket.OPEN) {
      if (sendableCode(code)) upstream.close(code, Buffer.from(message).toString());
      else if (code === 1005) upstream.close(1000);
      else upstream.close(CLOSE_GOING_AWAY, 'client connection lost');
      // A backend that never answers the close frame must not hold the socket forever.
      setTimeout(() => upstream.terminate(), 5000).unref();
    }
    this.finish();
  }

  /** Pinged by the worker's keepalive round; a backend silent since the last round is dead. */
  keepalive(): void {
    const upstream = this.upstream;
    if (!upstream || upstream.readyState !== UpstreamSocket.OPEN) return;
    if (!this.upstreamAlive) {
      upstream.terminate();
      return;
    }
    this.upstreamAlive = false;
    upstream.ping();
  }

  shutdown(code: number, reason: string): void {
    if (this.client) this.client.end(code, reason);
    else if (this.handshakeRes) {
      const res = this.handshakeRes;
      this.handshakeRes = null;
      res.cork(() => writeFault(res, FAULTS.noBackend, true));
      this.upstream?.terminate();
      this.finish();
    }
  }

  private finish(): void {
    if (this.released) return;
    this.released = true;
    const { context } = this;
    context.webSockets.delete(this);
    if (this.slot >= 0) context.table.release(this.slot, context.worker);
    if (this.limitSlot >= 0) context.limits.release(this.limitSlot, context.worker);
    if (context.accessLog) {
      context.logger.info({
        type: 'websocket',
        path: this.head.path,
        code: this.closeCode,
        backend: this.slot >= 0 ? context.backends[this.slot].origin : '',
        ms: Math.round(performance.now() - this.startedAt),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        client: this.head.client,
      });
    }
  }
}
