// Reads a node:http (or HTTP/2 compatibility) request into what goes upstream, and what routing
// and hashing may read of it.

import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import { upstreamHead, type RequestHead } from '../src/core/forwarding.js';
import type { RequestFacts } from '../src/core/routing.js';
import type { WorkerContext } from '../src/dataplane/workerContext.js';

export type ClientRequest = IncomingMessage | Http2ServerRequest;

/** Client addresses given by PROXY headers, by connection (set by the listener that read them). */
export const proxiedAddresses = new WeakMap<object, string>();

export function peerAddress(socket: Socket | { remoteAddress?: string } | undefined | null): string {
  const address = socket?.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export function readRequestHead(context: WorkerContext, req: ClientRequest, websocket: boolean): RequestHead {
  const h2 = req.httpVersionMajor === 2;
  const socket = h2 ? (req as Http2ServerRequest).stream.session?.socket : (req as IncomingMessage).socket;
  const proxied = context.addressing.proxyProtocol && socket ? proxiedAddresses.get(socket) : undefined;
  const host = (h2 ? req.headers[':authority'] : req.headers.host) ?? '';
  const line = {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    host: String(host),
    peer: proxied ?? peerAddress(socket),
    connection: String(req.headers.connection ?? '').toLowerCase(),
    hostOptional: h2 || req.httpVersion === '1.0',
  };
  const raw = req.rawHeaders;
  const forEachHeader = (visit: (name: string, value: string) => void) => {
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toLowerCase();
      // HTTP/2 pseudo-headers (:method, :path…) are the request line, not headers; an HTTP/2
      // request's host is its :authority (RFC 9113 8.3.1), whatever a host header says.
      if (name.charCodeAt(0) !== 58 /* : */ && !(h2 && name === 'host')) visit(name, raw[i + 1]);
    }
  };
  const head = upstreamHead(line, forEachHeader, websocket, context);
  // An HTTP/2 request has no Host header; the backend (HTTP/1.1) needs one.
  if (h2 && line.host && !head.headers.includes('host')) head.headers.push('host', line.host);
  return head;
}

/** What routing and hashing may read of a request. */
export function requestFacts(req: ClientRequest, head: RequestHead): RequestFacts {
  let query: URLSearchParams | undefined;
  return {
    path: head.path,
    host: head.hostName,
    method: head.method,
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : (value ?? '');
    },
    query: (name) => {
      const at = head.path.indexOf('?');
      query ??= new URLSearchParams(at < 0 ? '' : head.path.slice(at + 1));
      return query.get(name) ?? undefined;
    },
  };
}
