// HTTP proxying between a node:http (or HTTP/2) response and the upstream HTTP client, through the
// engine-neutral HttpExchange.

import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { Transform, type Readable } from 'node:stream';
import { FAULTS, type ProxyFault } from '../src/core/errors.js';
import type { RequestHead } from '../src/core/forwarding.js';
import type { MatchedRoute, RequestFacts } from '../src/core/routing.js';
import type { ClientReply } from '../src/dataplane/httpExchange.js';
import type { Refusal } from '../src/dataplane/requestGate.js';
import { serveHttp, type ClientWatcher, type IncomingHttp } from '../src/dataplane/serve.js';
import type { WorkerContext } from '../src/dataplane/workerContext.js';
import { readRequestHead, requestFacts, type ClientRequest } from './requestHead.js';

export type ClientResponse = ServerResponse | Http2ServerResponse;

/** A short error response of fairway's own. */
export function writeFault(res: ClientResponse, fault: ProxyFault, closeConnection: boolean, retryAfterSeconds = 0): void {
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8', 'x-fairway-error': fault.code };
  if (retryAfterSeconds > 0) headers['retry-after'] = String(retryAfterSeconds);
  // HTTP/2 has no Connection header: a stream ends on its own.
  if (closeConnection && !isHttp2(res)) headers.connection = 'close';
  res.writeHead(fault.status, headers);
  res.end(`${fault.message}\n`);
}

function isHttp2(res: ClientResponse): res is Http2ServerResponse {
  return 'stream' in res;
}

/** Entry point for every request that is not a WebSocket upgrade. */
export function handleHttp(context: WorkerContext, req: ClientRequest, res: ClientResponse): void {
  serveHttp(context, new NodeRequest(context, req, res));
}

/** A node:http (or HTTP/2) request for the shared layer. */
class NodeRequest implements IncomingHttp {
  readonly head: RequestHead;
  /** Made only for a request the gate lets through. */
  private nodeReply: NodeReply | null = null;

  constructor(
    context: WorkerContext,
    private readonly req: ClientRequest,
    private readonly res: ClientResponse,
  ) {
    this.head = readRequestHead(context, req, false);
  }

  facts(): RequestFacts {
    return requestFacts(this.req, this.head);
  }

  testFault(): string {
    return String(this.req.headers['x-fairway-test-fault'] ?? '');
  }

  refuse(refusal: Refusal): void {
    writeFault(this.res, refusal.fault, refusal.closeConnection, refusal.retryAfter);
    // A request body nobody will read must not hold the connection.
    this.req.resume();
  }

  reply(): ClientReply {
    return (this.nodeReply = new NodeReply(this.res));
  }

  watch(watcher: ClientWatcher): void {
    const reply = this.nodeReply!;
    this.res.once('close', () => {
      if (reply.completed) return;
      reply.finished = true;
      watcher.onClientGone();
    });
  }

  body(route: MatchedRoute, onTooLarge: () => void): Readable {
    return route.maxBody > 0 ? limitedBody(this.req, route.maxBody, onTooLarge) : (this.req as Readable);
  }
}

/** The request body, cut off (and `onTooLarge` called) once it passes `limit` bytes. */
function limitedBody(req: ClientRequest, limit: number, onTooLarge: () => void): Readable {
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > limit) {
        callback();
        onTooLarge();
        return;
      }
      callback(null, chunk);
    },
  });
  return (req as Readable).pipe(counter);
}

/**
 * A node:http or HTTP/2 response as a ClientReply. The head waits for the first body bytes, so
 * that a backend failing before any byte still gets its client an error response.
 */
class NodeReply implements ClientReply {
  /** The response must not be touched again (complete, failed, or the client left). */
  finished = false;
  /** The whole response went out. */
  completed = false;
  private head: [number, string | undefined, string[]] | null = null;
  private noBody = false;

  constructor(private readonly res: ClientResponse) {
    res.once('finish', () => {
      this.completed = true;
    });
  }

  fault(fault: ProxyFault, closeConnection: boolean, retryAfterSeconds = 0): void {
    if (this.finished) return;
    this.finished = true;
    writeFault(this.res, fault, closeConnection, retryAfterSeconds);
  }

  start(statusCode: number, statusMessage: string | undefined, headers: string[], _total: number, noBody: boolean): void {
    this.head = [statusCode, statusMessage, headers];
    this.noBody = noBody;
  }

  /** Writes the response head; false when node refused it, and the client got a 502 instead. */
  private writeHead(): boolean {
    const [status, message, pairs] = this.head!;
    this.head = null;
    const { res } = this;
    const headers: Record<string, string | string[]> = {};
    for (let i = 0; i < pairs.length; i += 2) {
      const name = pairs[i];
      const value = pairs[i + 1];
      const previous = headers[name];
      headers[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
    }
    // The backend's Date is passed on, not replaced.
    if (headers.date !== undefined && !isHttp2(res)) res.sendDate = false;
    try {
      if (isHttp2(res) || !message) res.writeHead(status, headers);
      else res.writeHead(status, message, headers);
      return true;
    } catch {
      // node:http2 refuses some heads HTTP/1.1 carries (two values of a single-value header, for
      // one): the client is told the backend's answer could not be relayed.
      this.fail(FAULTS.upstreamError);
      return false;
    }
  }

  write(chunk: Buffer, resume: () => void): boolean {
    if (this.finished || this.noBody) return true;
    if (this.head && !this.writeHead()) return true;
    const accepted = (this.res as ServerResponse).write(chunk);
    if (!accepted) this.res.once('drain', resume);
    return accepted;
  }

  end(): void {
    if (this.finished) return;
    if (this.head && !this.writeHead()) return;
    this.finished = true;
    this.res.end();
  }

  fail(fault: ProxyFault): void {
    if (this.finished) return;
    this.finished = true;
    if (this.head !== null || !this.res.headersSent) {
      this.head = null;
      try {
        // What a refused writeHead left set (HTTP/2 keeps it) must not go out with the error.
        for (const name of this.res.getHeaderNames()) this.res.removeHeader(name);
        writeFault(this.res, fault, true);
        return;
      } catch {
        // Nothing can be written on this response any more: cut it.
      }
    }
    // The status line is out: cutting the connection is the only honest signal left.
    const stream = isHttp2(this.res) ? this.res.stream : this.res.socket;
    stream?.destroy();
  }
}
