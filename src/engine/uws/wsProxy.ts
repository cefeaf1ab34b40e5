// WebSocket proxying on uWS: the client's upgrade and socket; the engine-neutral WebSocketSession
// relays them to fairway's own RFC 6455 client toward the backend (upstreamWebSocket.ts).

// Imported: the global `Buffer` is an accessor, read through a getter at each use.
import { Buffer } from 'node:buffer';
import type { HttpRequest, HttpResponse, us_socket_context_t, WebSocket as UwsSocket, WebSocketBehavior } from 'uWebSockets.js';
import { FAULTS, type ProxyFault } from '../../core/errors.js';
import { serveUpgrade, type IncomingUpgrade } from '../../dataplane/serve.js';
import type { WebSocketSession, ClientHandshake } from '../../dataplane/webSocketSession.js';
import type { WorkerContext } from '../../dataplane/workerContext.js';
import type { UwsModule } from './binding.js';
import { asReceived, UwsIncoming, writeFault } from './httpProxy.js';

/** uWS copies user data shallowly, so the session lives one level down. */
interface SessionData {
  session: WebSocketSession;
}

const CLOSE_INTERNAL_ERROR = 1011;

export function webSocketBehavior(context: WorkerContext, uws: UwsModule): WebSocketBehavior<SessionData> {
  const { websocket } = context.config;
  return {
    // uWS agrees permessage-deflate with clients that offer it: shared keeps no window per
    // session (no context takeover), dedicated gives each session its own.
    compression:
      websocket.compression === 'shared'
        ? uws.SHARED_COMPRESSOR | uws.SHARED_DECOMPRESSOR
        : websocket.compression === 'dedicated'
          ? uws.DEDICATED_COMPRESSOR_256KB | uws.DEDICATED_DECOMPRESSOR
          : uws.DISABLED,
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
        // uWS reuses `message` once this handler returns: the session copies it into a frame first.
        ws.getUserData().session.onClientMessage(Buffer.from(message), isBinary);
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
        ws.getUserData().session.onClientClose(code, Buffer.from(message));
      } catch (err) {
        context.logger.error({ err }, 'error in WebSocket close handler');
      }
    },
  };
}

/** An exception in a uWS handler would abort the process: it ends only the one session. */
function endAfterError(context: WorkerContext, ws: UwsSocket<SessionData>, err: unknown): void {
  context.logger.error({ err }, 'error in WebSocket handler');
  try {
    ws.end(CLOSE_INTERNAL_ERROR, 'internal error');
  } catch {
    // Already closed.
  }
}

function handleUpgrade(context: WorkerContext, res: HttpResponse, req: HttpRequest, socketContext: us_socket_context_t): void {
  serveUpgrade(context, new UwsUpgrade(context, res, req, socketContext));
}

/** A uWS upgrade request for the shared layer. */
class UwsUpgrade extends UwsIncoming implements IncomingUpgrade {
  private made: UwsHandshake | null = null;

  constructor(
    context: WorkerContext,
    res: HttpResponse,
    req: HttpRequest,
    private readonly socketContext: us_socket_context_t,
  ) {
    super(context, res, req, true);
  }

  handshake(): ClientHandshake {
    const { req } = this;
    this.made = new UwsHandshake(this.res, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), this.socketContext);
    return this.made;
  }

  watch(session: WebSocketSession): void {
    const handshake = this.made!;
    handshake.session = session;
    handshake.watchAbort();
  }
}

/** The uWS upgrade request as the session's ClientHandshake; answered inside a cork. */
class UwsHandshake implements ClientHandshake {
  private answered = false;
  /** Set right after construction: the session the upgraded socket belongs to. */
  session!: WebSocketSession;

  constructor(
    private readonly res: HttpResponse,
    private readonly key: string,
    readonly protocols: string,
    private readonly extensions: string,
    private readonly socketContext: us_socket_context_t,
  ) {}

  /**
   * uWS keeps this callback for the socket's whole life: it is made here, not in the upgrade
   * handler, so that it holds only the handshake and not the request's head.
   */
  watchAbort(): void {
    this.res.onAborted(() => {
      // The client left: nothing may be written to `res` any more.
      this.answered = true;
      this.session.onHandshakeAborted();
    });
  }

  refuse(fault: ProxyFault, closeConnection: boolean, retryAfterSeconds = 0): void {
    if (this.answered) return;
    this.answered = true;
    this.res.cork(() => writeFault(this.res, fault, closeConnection, retryAfterSeconds));
  }

  relay(status: number, statusMessage: string, contentType: string | undefined, body: Buffer): void {
    if (this.answered) return;
    this.answered = true;
    const { res } = this;
    res.cork(() => {
      res.writeStatus(asReceived(`${status} ${statusMessage}`));
      if (contentType) res.writeHeader('content-type', asReceived(contentType));
      res.writeHeader('x-fairway-error', FAULTS.badHandshake.code);
      res.end(body);
    });
  }

  /**
   * Corked, as every answer made outside a uWS handler must be (uWS 20.30 prints a warning for
   * each one that is not). Known cost: 20.30's cork() re-reads the response's state after its
   * callback, and when the upgrade reallocated the socket in place it can read the new WebSocket's
   * bytes as "close the connection" and cut the session a millisecond after its open
   * (uNetworking/uWebSockets#1928, fixed upstream by #1929; docs/engines.md).
   */
  accept(protocol: string, setCookie: string | undefined): void {
    if (this.answered) return;
    this.answered = true;
    const { res } = this;
    res.cork(() => {
      // uWS would send 200 for a header written before upgrade() unless the status is set first.
      if (setCookie) res.writeStatus('101 Switching Protocols').writeHeader('set-cookie', setCookie);
      res.upgrade({ session: this.session }, this.key, protocol, this.extensions, this.socketContext);
    });
  }
}
