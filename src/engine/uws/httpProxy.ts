// HTTP/1.1 proxying between a uWS response and the upstream HTTP client, streaming both ways.

import { Readable } from 'node:stream';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { ProxyFault } from '../../core/errors.js';
import type { MatchedRoute, RequestFacts } from '../../core/routing.js';
import type { ClientReply } from '../../dataplane/httpExchange.js';
import type { Refusal } from '../../dataplane/requestGate.js';
import { serveHttp, type ClientWatcher, type IncomingHttp, type IncomingRequest } from '../../dataplane/serve.js';
import type { WorkerContext } from '../../dataplane/workerContext.js';
import { readRequestHead, type RequestHead } from './requestHead.js';

/** Headers uWS writes itself. */
const WRITTEN_BY_UWS = new Set(['content-length', 'date']);

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

const NON_ASCII = /[^\x00-\x7f]/;
const BEYOND_LATIN1 = /[^\x00-\xff]/;

/**
 * What to hand uWS for text read from a backend byte for byte (latin1): uWS writes a string as
 * UTF-8, which would turn each byte above 0x7f into two, so such text goes as its bytes.
 */
export function asReceived(text: string): string | Buffer {
  return NON_ASCII.test(text) && !BEYOND_LATIN1.test(text) ? Buffer.from(text, 'latin1') : text;
}

/** Writes a short error response; call inside a uWS handler or inside `res.cork`. */
export function writeFault(res: HttpResponse, fault: ProxyFault, closeConnection = false, retryAfterSeconds = 0): void {
  res.writeStatus(`${fault.status} ${STATUS_TEXT[fault.status] ?? ''}`);
  res.writeHeader('content-type', 'text/plain; charset=utf-8');
  if (retryAfterSeconds > 0) res.writeHeader('retry-after', String(retryAfterSeconds));
  res.writeHeader('x-fairway-error', fault.code);
  res.end(`${fault.message}\n`, closeConnection);
}

/**
 * Answers a gate's refusal inside the uWS handler. One that must close the connection (its body
 * framing is unknown, or its body will not be read) waits until the handler has returned: while a
 * handler runs, uWS 20.30 goes on parsing what follows the head as the next request, even past a
 * response ended there with closeConnection (so `Content-Length: 5` then `Content-Length: 90`
 * made the rest of the body a request of its own), and it closes the connection only for a
 * response ended outside the handler. With this one still pending, a request pipelined behind it
 * makes uWS close the connection at once, before any handler sees it.
 */
export function writeRefusal(res: HttpResponse, refusal: Refusal): void {
  if (!refusal.closeConnection) return writeFault(res, refusal.fault, false, refusal.retryAfter);
  let aborted = false;
  res.onAborted(() => (aborted = true));
  setImmediate(() => {
    if (!aborted) res.cork(() => writeFault(res, refusal.fault, true, refusal.retryAfter));
  });
}

/** Entry point for every non-upgrade request. */
export function handleHttp(context: WorkerContext, res: HttpResponse, req: HttpRequest): void {
  serveHttp(context, new UwsRequest(context, res, req));
}

/**
 * What a uWS request and a uWS upgrade give the shared layer alike; `req` is valid only while the
 * handler runs.
 */
export class UwsIncoming implements IncomingRequest {
  readonly head: RequestHead;

  constructor(
    protected readonly context: WorkerContext,
    protected readonly res: HttpResponse,
    protected readonly req: HttpRequest,
    upgrade: boolean,
  ) {
    this.head = readRequestHead(res, req, upgrade, context);
  }

  facts(): RequestFacts {
    return requestFacts(this.req, this.head);
  }

  testFault(): string {
    return this.req.getHeader('x-fairway-test-fault');
  }

  refuse(refusal: Refusal): void {
    writeRefusal(this.res, refusal);
  }
}

class UwsRequest extends UwsIncoming implements IncomingHttp {
  /** Made only for a request the gate lets through. */
  private uwsReply: UwsReply | null = null;

  constructor(context: WorkerContext, res: HttpResponse, req: HttpRequest) {
    super(context, res, req, false);
  }

  reply(): ClientReply {
    return (this.uwsReply = new UwsReply(this.res));
  }

  watch(watcher: ClientWatcher): void {
    const reply = this.uwsReply!;
    this.res.onAborted(() => {
      reply.finished = true;
      watcher.onClientGone();
    });
  }

  body(route: MatchedRoute, onTooLarge: () => void): Readable {
    const { res } = this;
    const idle = route.timeouts?.idle ?? this.context.config.timeouts.idle;
    return new RequestBody(res, idle, route.maxBody, () => res.close(), onTooLarge);
  }
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

/**
 * A uWS response as a ClientReply: the head goes out with the first body bytes (or the end) in
 * one cork, so one send; a known length is written with tryEnd and retried on writable.
 */
class UwsReply implements ClientReply {
  /** uWS has the whole response, or the client is gone: the response must not be touched again. */
  finished = false;
  private statusLine = '';
  private headers: string[] | null = null;
  /** Length announced by the backend, or -1 for a streamed (chunked) response. */
  private total = -1;
  private noBody = false;
  private pending: Buffer | null = null;
  private pendingOffset = 0;
  private chunk: Buffer | null = null;
  private resume: (() => void) | null = null;
  private accepted = true;
  private readonly corkedWrite = () => this.writeData();
  private readonly corkedEnd = () => this.writeEnd();

  constructor(private readonly res: HttpResponse) {}

  fault(fault: ProxyFault, closeConnection: boolean, retryAfterSeconds = 0): void {
    if (this.finished) return;
    this.finished = true;
    this.res.cork(() => writeFault(this.res, fault, closeConnection, retryAfterSeconds));
  }

  start(statusCode: number, statusMessage: string | undefined, headers: string[], total: number, noBody: boolean): void {
    this.statusLine = statusMessage ? `${statusCode} ${statusMessage}` : String(statusCode);
    this.headers = headers;
    this.total = total;
    this.noBody = noBody;
  }

  /** Status line and headers; inside `res.cork`, before the first body byte. */
  private writeHead(): void {
    const { res } = this;
    const headers = this.headers!;
    this.headers = null;
    res.writeStatus(asReceived(this.statusLine));
    for (let i = 0; i < headers.length; i += 2) if (!WRITTEN_BY_UWS.has(headers[i])) res.writeHeader(headers[i], asReceived(headers[i + 1]));
    // uWS cannot be told a length without a body, so a bodiless reply carries it by hand.
    if (this.noBody && this.total >= 0) res.writeHeader('content-length', String(this.total));
  }

  write(chunk: Buffer, resume: () => void): boolean {
    if (this.finished || this.noBody) return true;
    this.chunk = chunk;
    this.resume = resume;
    this.res.cork(this.corkedWrite);
    return this.accepted;
  }

  private writeData(): void {
    const chunk = this.chunk!;
    this.chunk = null;
    const res = this.res;
    if (this.headers) this.writeHead();
    if (this.total < 0) {
      this.accepted = res.write(chunk);
      if (!this.accepted) {
        res.onWritable(() => {
          this.resume!();
          return true;
        });
      }
      return;
    }
    const offset = res.getWriteOffset();
    const [ok, done] = res.tryEnd(chunk, this.total);
    this.accepted = ok || done;
    if (done) this.finished = true;
    else if (!ok) {
      this.pending = chunk;
      this.pendingOffset = offset;
      res.onWritable((at) => this.retryPending(at));
    }
  }

  private retryPending(at: number): boolean {
    if (this.finished || !this.pending) return true;
    const [ok, done] = this.res.tryEnd(this.pending.subarray(at - this.pendingOffset), this.total);
    if (done) this.finished = true;
    if (ok || done) {
      this.pending = null;
      this.resume!();
    }
    return ok;
  }

  end(): void {
    // A body of known length was already finished by tryEnd once its last byte went out.
    if (this.finished) return;
    this.finished = true;
    this.res.cork(this.corkedEnd);
  }

  private writeEnd(): void {
    if (this.headers) this.writeHead();
    if (this.noBody) this.res.endWithoutBody();
    else this.res.end();
  }

  fail(fault: ProxyFault): void {
    if (this.finished) return;
    this.finished = true;
    // The head is written with the first body bytes: until then, the client can still be told.
    const headSent = this.headers === null && this.statusLine !== '';
    this.res.cork(() => (headSent ? this.res.close() : writeFault(this.res, fault, true)));
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
