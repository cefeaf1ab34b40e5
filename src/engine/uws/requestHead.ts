// Reads a uWS request's method, path and headers synchronously, into what goes upstream.

import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { upstreamHead, type HeadRules, type RequestHead } from '../../core/forwarding.js';

export type { RequestHead };

/** Must run inside the uWS handler: `req` is valid only until it returns. */
export function readRequestHead(res: HttpResponse, req: HttpRequest, websocket: boolean, rules: HeadRules): RequestHead {
  const query = req.getQuery();
  const line = {
    method: req.getCaseSensitiveMethod(),
    path: query ? `${req.getUrl()}?${query}` : req.getUrl(),
    host: req.getHeader('host'),
    peer: connectionClient(res, rules.addressing.proxyProtocol),
    connection: req.getHeader('connection').toLowerCase(),
    // uWS 20.30 serves HTTP/1.1 only, which requires Host.
    hostOptional: false,
  };
  return upstreamHead(line, (visit) => req.forEach(visit), websocket, rules);
}

/** The connection's client: the PROXY protocol's source address when there is one and it is expected. */
function connectionClient(res: HttpResponse, proxyProtocol: boolean): string {
  if (proxyProtocol) {
    const proxied = Buffer.from(res.getProxiedRemoteAddressAsText()).toString();
    if (proxied !== '') return proxied.startsWith('::ffff:') ? proxied.slice(7) : proxied;
  }
  return clientAddress(res);
}

/** uWS gives IPv4 peers as IPv4-mapped IPv6 addresses; turn those back into dotted form. */
export function clientAddress(res: HttpResponse): string {
  const bytes = new Uint8Array(res.getRemoteAddress());
  // ::ffff:a.b.c.d — read the four bytes instead of formatting and parsing text.
  if (bytes.length === 16 && bytes[10] === 0xff && bytes[11] === 0xff && isZero(bytes, 10)) {
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}

function isZero(bytes: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) if (bytes[i] !== 0) return false;
  return true;
}
