// WebSocket proxying on node:http and `ws`: the upgrade is held until the backend's handshake is
// done (as on uWS), then completed by a `ws` server in noServer mode.

import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type PerMessageDeflateOptions } from 'ws';
import { FAULTS, type ProxyFault } from '../src/core/errors.js';
import { serveUpgrade } from '../src/dataplane/serve.js';
import { SEND_DROPPED, type WebSocketSession, type ClientHandshake, type ClientSocket } from '../src/dataplane/webSocketSession.js';
import { COMPRESS_THRESHOLD } from '../src/dataplane/upstreamWebSocket.js';
import type { WorkerContext } from '../src/dataplane/workerContext.js';
import type { Compression } from '../src/config/types.js';
import { readRequestHead, requestFacts } from './requestHead.js';

/** The subprotocol and cookie chosen for an upgrade, for the `ws` server's hooks. */
const answers = new WeakMap<IncomingMessage, { protocol: string; setCookie: string | undefined }>();

/** Sockets of open client WebSockets, for the keepalive round. */
export type ClientSockets = Set<NodeClientSocket>;

export function createWebSocketServer(context: WorkerContext): WebSocketServer {
  const server = new WebSocketServer({
    noServer: true,
    maxPayload: context.config.websocket.maxMessage,
    // ws takes 16 384 fragments per message by default (1008 past it): allow a whole max_message
    // in fragments of 64 bytes, as uWS takes any number.
    maxFragments: Math.max(16 * 1024, Math.ceil(context.config.websocket.maxMessage / 64)),
    maxBufferedChunks: Math.max(256 * 1024, Math.ceil(context.config.websocket.maxMessage / 64)),
    // shared: no context takeover either way (each message compressed on its own); dedicated:
    // each session keeps its window. ws keeps a zlib stream per session in both (docs/BENCHMARKS.md).
    perMessageDeflate: compressionOptions(context.config.websocket.compression),
    clientTracking: false,
    handleProtocols: (_offered, req) => answers.get(req)?.protocol || false,
  });
  server.on('headers', (headers, req) => {
    const cookie = answers.get(req)?.setCookie;
    if (cookie) headers.push(`Set-Cookie: ${cookie}`);
  });
  return server;
}

const KEY = /^[+/0-9A-Za-z]{22}==$/;
const TOKEN_LIST = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(\s*,\s*[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*$/;

/** What `ws` would refuse at handleUpgrade: checked first, before any backend is involved. */
function validUpgrade(req: IncomingMessage): boolean {
  const protocols = req.headers['sec-websocket-protocol'];
  return (
    req.method === 'GET' &&
    String(req.headers.upgrade ?? '').toLowerCase() === 'websocket' &&
    KEY.test(String(req.headers['sec-websocket-key'] ?? '')) &&
    (req.headers['sec-websocket-version'] === '13' || req.headers['sec-websocket-version'] === '8') &&
    (protocols === undefined || TOKEN_LIST.test(protocols))
  );
}

/** Writes an HTTP response on a raw socket (an upgrade's, or one node:http could not read), then closes it. */
function answerRaw(socket: Duplex, status: number, statusMessage: string, headers: Record<string, string>, body: Buffer | string): void {
  if (!socket.writable) return;
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = [`HTTP/1.1 ${status} ${statusMessage || STATUS_CODES[status] || ''}`];
  for (const [name, value] of Object.entries({ ...headers, 'content-length': String(payload.length), connection: 'close' })) lines.push(`${name}: ${value}`);
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), payload]));
}

export function answerFault(socket: Duplex, fault: ProxyFault, retryAfter = 0): void {
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', 'x-fairway-error': fault.code };
  if (retryAfter > 0) headers['retry-after'] = String(retryAfter);
  answerRaw(socket, fault.status, '', headers, `${fault.message}\n`);
}

export function handleUpgrade(context: WorkerContext, server: WebSocketServer, clients: ClientSockets, req: IncomingMessage, socket: Duplex, early: Buffer): void {
  socket.on('error', () => socket.destroy());
  if (!validUpgrade(req)) return answerRaw(socket, 400, 'Bad Request', { 'content-type': 'text/plain' }, 'not a valid WebSocket upgrade\n');
  const handshake = new NodeHandshake(context, server, clients, req, socket, early);
  serveUpgrade(context, {
    head: readRequestHead(context, req, true),
    facts() {
      return requestFacts(req, this.head);
    },
    testFault: () => String(req.headers['x-fairway-test-fault'] ?? ''),
    refuse: (refusal) => answerFault(socket, refusal.fault, refusal.retryAfter),
    handshake: () => handshake,
    watch: (session) => {
      handshake.session = session;
      socket.once('close', () => {
        if (handshake.abort()) session.onHandshakeAborted();
      });
      handshake.watch();
    },
  });
}

/** The client's upgrade, held until the backend has answered its own. */
class NodeHandshake implements ClientHandshake {
  readonly protocols: string;
  private answered = false;
  /** Set right after construction: the session the upgraded socket belongs to. */
  session!: WebSocketSession;

  constructor(
    private readonly context: WorkerContext,
    private readonly server: WebSocketServer,
    private readonly clients: ClientSockets,
    private readonly req: IncomingMessage,
    private readonly socket: Duplex,
    private early: Buffer,
  ) {
    this.protocols = String(req.headers['sec-websocket-protocol'] ?? '');
  }

  /**
   * Reads the socket while the backend's answer is awaited: a client that leaves is seen at once
   * (not at the handshake timeout). A client sends nothing before its 101; anything is kept for ws.
   */
  watch(): void {
    const { socket } = this;
    const keep = (chunk: Buffer) => {
      this.early = Buffer.concat([this.early, chunk]);
      if (this.early.length > EARLY_LIMIT) socket.destroy();
    };
    this.stopWatching = () => {
      socket.off('data', keep);
      socket.off('end', onEnd);
    };
    const onEnd = () => socket.destroy();
    socket.on('data', keep);
    socket.once('end', onEnd);
  }

  private stopWatching: () => void = () => {};

  /** The client left before an answer: true if the session must hear of it. */
  abort(): boolean {
    if (this.answered) return false;
    this.answered = true;
    return true;
  }

  refuse(fault: ProxyFault, _closeConnection = false, retryAfterSeconds = 0): void {
    if (this.answered) return;
    this.answered = true;
    answerFault(this.socket, fault, retryAfterSeconds);
  }

  relay(status: number, statusMessage: string, contentType: string | undefined, body: Buffer): void {
    if (this.answered) return;
    this.answered = true;
    const headers: Record<string, string> = { 'x-fairway-error': FAULTS.badHandshake.code };
    if (contentType) headers['content-type'] = contentType;
    answerRaw(this.socket, status, statusMessage, headers, body);
  }

  accept(protocol: string, setCookie: string | undefined): void {
    if (this.answered) return;
    this.answered = true;
    const { socket } = this;
    this.stopWatching();
    answers.set(this.req, { protocol, setCookie });
    this.server.handleUpgrade(this.req, socket, this.early, (ws) => {
      const client = new NodeClientSocket(ws, this.context.config.websocket.maxBuffered + this.context.config.websocket.maxMessage);
      const { session } = this;
      this.clients.add(client);
      ws.on('message', (data: Buffer, isBinary) => session.onClientMessage(data, isBinary));
      ws.on('close', (code, reason) => {
        this.clients.delete(client);
        session.onClientClose(code, reason);
      });
      ws.on('error', (err) => this.context.logger.debug({ err: err.message }, 'client WebSocket error'));
      ws.on('pong', () => {
        client.alive = true;
      });
      socket.on('drain', () => session.onClientDrain());
      session.onClientOpen(client);
    });
  }
}

function compressionOptions(mode: Compression): PerMessageDeflateOptions | false {
  if (mode === 'off') return false;
  const shared = mode === 'shared';
  return { serverNoContextTakeover: shared, clientNoContextTakeover: shared, threshold: COMPRESS_THRESHOLD };
}

/** Bytes a client may send before its upgrade is answered (it should send none). */
const EARLY_LIMIT = 64 * 1024;

/** A `ws` socket in the shape the session expects (that of a uWS socket). */
class NodeClientSocket implements ClientSocket {
  /** Cleared when a ping goes out, set by the pong; still clear at the next ping = gone. */
  alive = true;

  constructor(
    private readonly ws: WebSocket,
    /** Past this much queued to the client, a message is dropped and the session ended (as uWS's maxBackpressure). */
    private readonly maxBackpressure: number,
  ) {}

  send(data: Buffer, isBinary: boolean, compress: boolean): number {
    if (this.ws.readyState !== WebSocket.OPEN) return 1;
    if (this.ws.bufferedAmount > this.maxBackpressure) return SEND_DROPPED;
    // ws may queue `data` itself, and it is valid only during this call: send a copy.
    this.ws.send(Buffer.from(data), { binary: isBinary, compress });
    return 1;
  }

  getBufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  end(code: number, reason?: string | Buffer): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
  }

  /** The keepalive round: a client silent since the last ping is cut. */
  keepalive(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }
}
