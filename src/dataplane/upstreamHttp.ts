// The HTTP/1.1 client leg toward one backend: keep-alive connections on net or TLS sockets, one
// request at a time on each, the response head parsed once into the flat list the engines relay.
// It does only what a proxy needs (no redirects, no cookies, no decompression, no pipelining),
// which is what makes it cheaper per request than a general client (docs/BENCHMARKS.md).

import { connect as netConnect, type Socket } from 'node:net';
// Imported: the global `performance` is an accessor, read through a getter at each use.
import { performance } from 'node:perf_hooks';
import type { ConnectionOptions } from 'node:tls';
import type { Readable } from 'node:stream';
import { isIdempotent, isReset, upstreamFailure } from '../core/errors.js';
import { connectTls, type TlsConnectOptions } from '../core/upstreamTls.js';
import { READ_BUFFER, detached } from './readBuffer.js';
import { chunkSizeOf, parseResponseHead, type ResponseHead } from './responseHead.js';

export interface UpstreamHttpOptions {
  host: string;
  port: number;
  tls: TlsConnectOptions | undefined;
  connectTimeout: number;
  /** Silence allowed while waiting for the response head, ms. */
  responseTimeout: number;
  /** Silence allowed between two reads of the response body, ms. */
  idleTimeout: number;
  /** An unused connection is closed after this long, ms (below common servers' 5 s). */
  keepAliveTimeout: number;
  /** Silence allowed from the client between two pieces of a request body, ms (default: none). */
  requestBodyTimeout?: number;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query string. */
  path: string;
  /** Flat [name, value, …] list with lower-case names, without Content-Length or Transfer-Encoding. */
  headers: string[];
  /**
   * The body's length as the client declared it, or -1: the client writes the only framing
   * header the backend sees (Content-Length: length, else chunked when there is a body).
   */
  length: number;
  /** Streamed after the head. */
  body: Readable | null;
  /** Per-request overrides of the pool's response and idle timeouts, ms. */
  responseTimeout?: number;
  idleTimeout?: number;
}

/** Steers one request in flight: reading of the response pauses and resumes; abort ends it. */
export interface UpstreamControl {
  pause(): void;
  resume(): void;
  abort(reason: Error): void;
}

/**
 * What the client tells about one request, in order: onRequestStart, then onResponseStart,
 * onResponseData*, onResponseEnd; or onResponseError at any point (once, and nothing after).
 */
export interface UpstreamResponseHandler {
  onRequestStart(control: UpstreamControl): void;
  /**
   * The final response head (1xx answers are skipped): `headers` is a flat list with lower-case
   * names; `announcedLength` is the Content-Length when there is one and no Transfer-Encoding, else -1.
   */
  onResponseStart(control: UpstreamControl, statusCode: number, headers: string[], statusMessage: string, announcedLength: number): void;
  /** `chunk` belongs to the receiver. */
  onResponseData(control: UpstreamControl, chunk: Buffer): void;
  onResponseEnd(): void;
  onResponseError(control: UpstreamControl | null, err: Error): void;
}

const HEAD_LIMIT = 64 * 1024;
/** How often connections are checked against their deadlines. */
const SWEEP_MS = 50;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const EMPTY = Buffer.alloc(0);

const enum Phase {
  Connecting,
  Idle,
  /** Request sent (or being sent); waiting for the response head. */
  Head,
  Body,
  Closed,
}

const enum Framing {
  None,
  Length,
  Chunked,
  /** Until the backend closes the connection. */
  Close,
}

const enum ChunkStage {
  Size,
  Data,
  DataEnd,
  Trailer,
}

/** One connection to the backend; it carries one request at a time. */
class UpstreamConnection implements UpstreamControl {
  phase = Phase.Connecting;
  readonly socket: Socket;
  /** performance.now() past which the current phase has taken too long. */
  deadline: number;
  /** When the response's last bytes were read, or its reading resumed: the deadlines after that count from it. */
  private readAt = 0;
  private handler: UpstreamResponseHandler | null = null;
  private request: UpstreamRequest | null = null;
  /** The current request's timeouts, ms. */
  private responseTimeout = 0;
  private idleTimeout = 0;
  private reusable = true;
  private requestSent = false;
  /** The request body goes out with chunked framing (it has no Content-Length). */
  private chunkedBody = false;
  /** Body bytes still due under the Content-Length this client wrote. */
  private bodyLeft = 0;
  /** When the client last gave body bytes, and whether reading them waits on the backend. */
  private bodyAt = 0;
  private bodyHeld = false;
  /** Response bytes not parsed yet (head or chunk framing split across reads). */
  private pending: Buffer | null = null;
  private framing = Framing.None;
  private remaining = 0;
  private chunkStage = ChunkStage.Size;
  /** Bytes of response seen for the current request: none at all means the connection was stale. */
  private received = 0;
  /** The handler is not taking more of the response now. */
  private paused = false;
  /** Requests this connection was given, the current one included. */
  private served = 0;
  private readonly onBodyData = (chunk: Buffer) => this.writeBodyChunk(chunk);
  private readonly onBodyEnd = () => this.endBody();
  private readonly onBodyError = (err: Error) => this.fail(err);
  private readonly onDrain = () => {
    this.bodyHeld = false;
    this.bodyAt = performance.now();
    this.request?.body?.resume();
  };

  constructor(private readonly pool: UpstreamHttpPool) {
    const { options } = pool;
    const onread = { buffer: READ_BUFFER, callback: (length: number, buffer: Buffer) => this.onRead(length, buffer) };
    const socket = options.tls
      ? // tls.connect takes `onread` as net.connect does (the typings lack it).
        connectTls({ host: options.host, port: options.port, ALPNProtocols: ['http/1.1'], ...options.tls, onread } as ConnectionOptions)
      : netConnect({ host: options.host, port: options.port, onread });
    this.socket = socket;
    socket.setNoDelay(true);
    this.deadline = performance.now() + options.connectTimeout;
    socket.once(options.tls ? 'secureConnect' : 'connect', () => this.onConnect());
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.onClose());
  }

  /** Sends `request`; its head is queued by the socket while the connection is still being made. */
  start(request: UpstreamRequest, handler: UpstreamResponseHandler): void {
    const { options } = this.pool;
    this.request = request;
    this.handler = handler;
    this.responseTimeout = request.responseTimeout ?? options.responseTimeout;
    this.idleTimeout = request.idleTimeout ?? options.idleTimeout;
    this.received = 0;
    this.requestSent = false;
    this.reusable = true;
    this.served++;
    this.bodyAt = performance.now();
    this.bodyHeld = false;
    if (this.phase !== Phase.Connecting) {
      this.phase = Phase.Head;
      this.deadline = this.headDeadline(this.bodyAt);
    }
    handler.onRequestStart(this);
    if (this.handler !== handler) return; // aborted at once
    this.socket.write(this.head(request), 'latin1');
    const body = request.body;
    if (!body) {
      this.requestSent = true;
      return;
    }
    body.on('data', this.onBodyData);
    body.once('end', this.onBodyEnd);
    body.once('error', this.onBodyError);
    this.socket.on('drain', this.onDrain);
  }

  private head(request: UpstreamRequest): string {
    const { headers } = request;
    let head = `${request.method} ${request.path} HTTP/1.1\r\n`;
    let hasHost = false;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === 'host') hasHost = true;
      head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    }
    if (!hasHost) head += `host: ${this.pool.hostHeader}\r\n`;
    this.chunkedBody = request.body !== null && request.length < 0;
    this.bodyLeft = request.length;
    if (request.length >= 0) head += `content-length: ${request.length}\r\n`;
    else if (this.chunkedBody) head += 'transfer-encoding: chunked\r\n';
    return `${head}\r\n`;
  }

  /** While a request body streams up, a client's pause in it may end the wait sooner. */
  private headDeadline(now: number): number {
    return now + (this.requestSent || !this.request?.body ? this.responseTimeout : Math.min(this.responseTimeout, this.pool.options.requestBodyTimeout ?? Infinity));
  }

  private writeBodyChunk(chunk: Buffer): void {
    if (this.phase === Phase.Closed || chunk.length === 0) return;
    this.bodyAt = performance.now();
    const { socket } = this;
    let ok: boolean;
    if (this.chunkedBody) {
      // One writev for the chunk's size line, data and end.
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write(CRLF);
      socket.uncork();
    } else {
      // Never a byte past the length written in the head: the backend would read it as the
      // start of another request.
      this.bodyLeft -= chunk.length;
      if (this.bodyLeft < 0) return this.fail(upstreamFailure('FAIRWAY_BODY_LENGTH', 'the request body is longer than its Content-Length'));
      ok = socket.write(chunk);
    }
    if (!ok) {
      this.bodyHeld = true;
      this.request?.body?.pause();
    }
  }

  private endBody(): void {
    if (this.phase === Phase.Closed) return;
    if (!this.chunkedBody && this.bodyLeft > 0) return this.fail(upstreamFailure('FAIRWAY_BODY_LENGTH', 'the request body ended before its Content-Length'));
    if (this.chunkedBody) this.socket.write(LAST_CHUNK);
    this.requestSent = true;
    this.detachBody();
    // The wait for the answer starts once the request is all sent.
    if (this.phase === Phase.Head) this.deadline = performance.now() + this.responseTimeout;
  }

  /**
   * Stops streaming the request body. One not sent in full has nowhere to go: it is read on and
   * dropped, so that the client connection is neither stalled nor cut before its answer.
   */
  private detachBody(): void {
    const body = this.request?.body;
    if (!body) return;
    body.off('data', this.onBodyData);
    body.off('end', this.onBodyEnd);
    body.off('error', this.onBodyError);
    this.socket.off('drain', this.onDrain);
    if (!this.requestSent) body.resume();
  }

  /** A connection is only made for a request; one that failed meanwhile is Closed already. */
  private onConnect(): void {
    if (this.phase !== Phase.Connecting) return;
    this.phase = Phase.Head;
    this.deadline = this.headDeadline(performance.now());
  }

  // ---- the response ----------------------------------------------------------------------------

  private onRead(length: number, buffer: Buffer): boolean {
    try {
      this.onData(buffer.subarray(0, length));
    } catch (err) {
      // A response that cannot be relayed fails its request, not the worker.
      this.fail(err as Error);
    }
    // false would stop reading; pause() and resume() still govern it.
    return true;
  }

  private onData(chunk: Buffer): void {
    if (this.phase === Phase.Head || this.phase === Phase.Body) {
      this.received += chunk.length;
      this.readAt = performance.now();
      this.deadline = this.readAt + (this.phase === Phase.Head ? this.responseTimeout : this.idleTimeout);
      this.parse(chunk);
      return;
    }
    // Bytes on a connection with no request in flight: nothing to match them with.
    this.discard();
  }

  /**
   * Reads what has come of the response. Stops while the handler has paused it (a client that is
   * not taking more), keeping the rest for resume(): nothing is delivered past a pause.
   */
  private parse(chunk: Buffer | null): void {
    let data = this.pending ? (chunk ? Buffer.concat([this.pending, chunk]) : this.pending) : (chunk ?? EMPTY);
    this.pending = null;
    while (this.handler && !this.paused) {
      if (this.phase === Phase.Head) {
        const end = data.indexOf(HEAD_END);
        if (end < 0) {
          if (data.length > HEAD_LIMIT) return this.fail(upstreamFailure('FAIRWAY_BAD_RESPONSE', 'the backend sent an oversized response head'));
          break;
        }
        const head = parseResponseHead(data, end);
        data = data.subarray(end + 4);
        if (!this.readHead(head)) return;
      } else if (this.phase === Phase.Body) {
        const before = data.length;
        data = this.readBody(data);
        // Nothing consumed and nothing finished: the rest of the body has not come yet.
        if (data.length === before && this.phase === Phase.Body && !this.paused) break;
      } else break;
    }
    if (this.handler) {
      if (data.length > 0) this.pending = detached(data);
    } else if (data.length > 0 && this.phase === Phase.Idle) {
      // A connection carries one request at a time: bytes after a complete response are a protocol error.
      this.discard();
    }
  }

  /** Takes a parsed response head; false when it was refused (the request has failed). */
  private readHead(parsed: ResponseHead | string): boolean {
    if (typeof parsed === 'string') return this.refuseResponse(parsed);
    const { statusCode, statusMessage, headers, length, chunked, transferEncoding } = parsed;
    // 100 Continue and 103 Early Hints come before the answer: nothing to relay, read on.
    if (statusCode === 101) return this.refuseResponse('the backend switched protocols on a plain request');
    if (statusCode < 200) return true;
    if (!parsed.keepAlive) this.reusable = false;
    const bodiless = this.request!.method === 'HEAD' || statusCode === 204 || statusCode === 304;
    // RFC 9112 6.3: Transfer-Encoding wins over Content-Length; chunked if it is the last coding,
    // else the body runs to the end of the connection.
    if (bodiless) this.framing = Framing.None;
    else if (chunked) {
      this.framing = Framing.Chunked;
      this.chunkStage = ChunkStage.Size;
    } else if (transferEncoding || length < 0) this.framing = Framing.Close;
    else this.framing = Framing.Length;
    this.remaining = length;
    if (this.framing === Framing.Close) this.reusable = false;
    this.phase = Phase.Body;
    this.deadline = this.readAt + this.idleTimeout;
    this.handler!.onResponseStart(this, statusCode, headers, statusMessage, transferEncoding ? -1 : length);
    if (this.framing === Framing.None && this.handler) this.complete();
    return true;
  }

  private refuseResponse(why: string): false {
    this.fail(upstreamFailure('FAIRWAY_BAD_RESPONSE', why));
    return false;
  }

  /** Consumes body bytes from `data` (stopping at a pause); returns what is left. */
  private readBody(data: Buffer): Buffer {
    if (this.framing === Framing.Close) {
      this.deliver(data);
      return EMPTY;
    }
    if (this.framing === Framing.Length) {
      if (this.remaining === 0) {
        this.complete();
        return data;
      }
      const take = Math.min(this.remaining, data.length);
      if (take === 0) return data;
      this.remaining -= take;
      this.deliver(data.subarray(0, take));
      return data.subarray(take);
    }
    return this.readChunked(data);
  }

  private readChunked(data: Buffer): Buffer {
    let at = 0;
    while (at < data.length && this.handler && !this.paused) {
      if (this.chunkStage === ChunkStage.Data) {
        const take = Math.min(this.remaining, data.length - at);
        this.remaining -= take;
        if (this.remaining === 0) this.chunkStage = ChunkStage.DataEnd;
        at += take;
        this.deliver(data.subarray(at - take, at));
        continue;
      }
      const lineEnd = data.indexOf('\r\n', at);
      if (lineEnd < 0) {
        if (data.length - at > 4096) this.fail(upstreamFailure('FAIRWAY_BAD_RESPONSE', 'the backend sent an oversized chunk line'));
        break;
      }
      const line = data.toString('latin1', at, lineEnd);
      at = lineEnd + 2;
      if (this.chunkStage === ChunkStage.DataEnd) {
        if (line !== '') {
          this.fail(upstreamFailure('FAIRWAY_BAD_RESPONSE', 'the backend sent a malformed chunk'));
          break;
        }
        this.chunkStage = ChunkStage.Size;
      } else if (this.chunkStage === ChunkStage.Size) {
        const size = chunkSizeOf(line);
        if (size < 0) {
          this.fail(upstreamFailure('FAIRWAY_BAD_RESPONSE', 'the backend sent a malformed chunk size'));
          break;
        }
        this.remaining = size;
        this.chunkStage = this.remaining === 0 ? ChunkStage.Trailer : ChunkStage.Data;
      } else if (line === '') {
        // Trailers are read and dropped: the client's response is streaming without a trailer section.
        this.complete();
      }
    }
    return data.subarray(at);
  }

  private deliver(chunk: Buffer): void {
    if (chunk.length > 0) this.handler!.onResponseData(this, detached(chunk));
  }

  /** The response is complete: hand the connection back, then tell the handler. */
  private complete(): void {
    const handler = this.handler!;
    this.handler = null;
    this.phase = Phase.Idle;
    // The next response on this connection must be read whatever the last handler did.
    this.paused = false;
    if (this.socket.isPaused()) this.socket.resume();
    if (!this.requestSent) {
      // The backend answered before the request body was all sent: that body has nowhere to go.
      this.reusable = false;
    }
    this.detachBody();
    this.request = null;
    if (this.reusable) this.pool.release(this);
    else this.discard();
    handler.onResponseEnd();
  }

  // ---- the connection's end ----------------------------------------------------------------------

  private onEnd(): void {
    if (this.phase === Phase.Body && this.framing === Framing.Close && this.handler) {
      this.reusable = false;
      this.complete();
      return;
    }
    this.fail(upstreamFailure(this.received === 0 ? 'ECONNRESET' : 'FAIRWAY_UPSTREAM_CLOSED', 'the backend closed the connection before the response was complete'));
  }

  private onClose(): void {
    if (this.phase !== Phase.Closed) this.fail(upstreamFailure('ECONNRESET', 'the connection to the backend was lost'));
  }

  /** The current request (if any) has failed with `err`; the connection is not used again. */
  fail(err: Error): void {
    const handler = this.handler;
    const request = this.request;
    // A kept-alive connection that the backend closed just as it was reused: the request never
    // reached it, and goes once more on a fresh connection (what browsers and Go's client do).
    const stale =
      handler !== null && request !== null && this.phase === Phase.Head && this.served > 1 && this.received === 0 && request.body === null && isReset(err) && isIdempotent(request.method);
    this.handler = null;
    this.detachBody();
    this.request = null;
    this.discard();
    if (stale) this.pool.sendFresh(request, handler);
    else handler?.onResponseError(this, err);
  }

  /** Closes the connection for good. */
  discard(): void {
    this.phase = Phase.Closed;
    this.pending = null;
    this.pool.forget(this);
    this.socket.destroy();
  }

  /** Called by the pool's sweep: fails the request (or closes an idle connection) past its deadline. */
  expire(now: number): void {
    if (now < this.deadline) return;
    switch (this.phase) {
      case Phase.Connecting:
        return this.fail(upstreamFailure('FAIRWAY_CONNECT_TIMEOUT', 'the backend did not accept the connection in time'));
      case Phase.Head:
        // A request body still streaming up keeps the wait alive, unless the client stopped
        // sending it (a pause the backend's reading causes does not count).
        if (!this.requestSent) {
          const requestBodyTimeout = this.pool.options.requestBodyTimeout ?? Infinity;
          if (!this.bodyHeld && now - this.bodyAt >= requestBodyTimeout) {
            return this.fail(upstreamFailure('FAIRWAY_CLIENT_BODY_TIMEOUT', 'the client stopped sending the request body'));
          }
          this.deadline = Math.min(now + this.responseTimeout, (this.bodyHeld ? now : this.bodyAt) + requestBodyTimeout);
          return;
        }
        return this.fail(upstreamFailure('FAIRWAY_RESPONSE_TIMEOUT', 'the backend did not answer in time'));
      case Phase.Body:
        if (this.paused) return; // the client is slow, not the backend
        return this.fail(upstreamFailure('FAIRWAY_BODY_TIMEOUT', 'the backend stopped sending the response body'));
      case Phase.Idle:
        return this.fail(upstreamFailure('FAIRWAY_IDLE', 'idle connection closed'));
    }
  }

  // ---- UpstreamControl -------------------------------------------------------------------------

  pause(): void {
    if (!this.handler) return;
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
    if (this.phase === Phase.Body && this.handler) {
      this.readAt = performance.now();
      this.deadline = this.readAt + this.idleTimeout;
      this.parse(null);
    }
  }

  abort(reason: Error): void {
    if (this.handler) this.fail(reason);
  }

  /** A kept-alive connection starts its idle time. */
  markIdle(): void {
    this.deadline = this.readAt + this.pool.options.keepAliveTimeout;
  }
}

/** The connections of one worker to one backend. */
export class UpstreamHttpPool {
  readonly hostHeader: string;
  private readonly idle: UpstreamConnection[] = [];
  private readonly all = new Set<UpstreamConnection>();
  private sweeper: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(readonly options: UpstreamHttpOptions) {
    this.hostHeader = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  }

  dispatch(request: UpstreamRequest, handler: UpstreamResponseHandler): void {
    if (this.closing) {
      handler.onResponseError(null, upstreamFailure('FAIRWAY_CLIENT_CLOSED', 'the upstream client is closed'));
      return;
    }
    const connection = this.idle.pop() ?? this.open();
    connection.start(request, handler);
  }

  /** Sends `request` on a new connection (its first went to a connection that had gone stale). */
  sendFresh(request: UpstreamRequest, handler: UpstreamResponseHandler): void {
    if (this.closing) handler.onResponseError(null, upstreamFailure('FAIRWAY_CLIENT_CLOSED', 'the upstream client is closed'));
    else this.open().start(request, handler);
  }

  private open(): UpstreamConnection {
    const connection = new UpstreamConnection(this);
    this.all.add(connection);
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    return connection;
  }

  /** A connection finished its request and may carry another. */
  release(connection: UpstreamConnection): void {
    if (this.closing) {
      connection.fail(upstreamFailure('FAIRWAY_CLIENT_CLOSED', 'the upstream client is closed'));
      return;
    }
    connection.markIdle();
    this.idle.push(connection);
  }

  /** A connection that ended, for whatever reason. */
  forget(connection: UpstreamConnection): void {
    this.all.delete(connection);
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
    if (this.all.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  private sweep(): void {
    const now = performance.now();
    for (const connection of this.all) connection.expire(now);
  }

  /** No new requests; idle connections close now, busy ones once their response is complete. */
  close(): void {
    this.closing = true;
    for (const connection of [...this.idle]) connection.fail(upstreamFailure('FAIRWAY_CLIENT_CLOSED', 'the upstream client is closed'));
  }

  /** Cuts every connection, with requests in flight failing. */
  destroy(): void {
    this.closing = true;
    for (const connection of [...this.all]) connection.fail(upstreamFailure('FAIRWAY_CLIENT_CLOSED', 'the upstream client is closed'));
  }
}
