// Reads a uWS request's method, path and headers synchronously, into what goes upstream.

import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { clientBehind, type Addressing } from '../../core/clientAddress.js';

/** Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy sets itself. */
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-for',
]);

/** Headers that belong to one WebSocket leg's handshake and are made anew for the other. */
const WEBSOCKET_HANDSHAKE = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
]);

export interface RequestHead {
  method: string;
  /** Path with query string, as sent. */
  path: string;
  /** Host header as sent, and its host name lower-cased without port (for routing). */
  host: string;
  hostName: string;
  /** The client's address: the TCP peer, or what trusted proxies report (PROXY protocol, X-Forwarded-For). */
  client: string;
  /** Flat [name, value, name, value, …] list for the upstream request. */
  headers: string[];
  /** -1 when the request has no content-length header. */
  contentLength: number;
  chunked: boolean;
}

/** Must run inside the uWS handler: `req` is valid only until it returns. */
export function readRequestHead(res: HttpResponse, req: HttpRequest, websocket: boolean, proto: 'http' | 'https', addressing: Addressing): RequestHead {
  const method = req.getCaseSensitiveMethod();
  const query = req.getQuery();
  const path = query ? `${req.getUrl()}?${query}` : req.getUrl();
  const host = req.getHeader('host');
  const peer = connectionClient(res, addressing.proxyProtocol);
  const connectionTokens = req.getHeader('connection').toLowerCase();
  const headers: string[] = [];
  let forwardedFor = '';
  let contentLength = -1;
  let chunked = false;
  req.forEach((name, value) => {
    if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
    } else if (name === 'content-length') {
      contentLength = Number(value);
      headers.push(name, value);
    } else if (name === 'transfer-encoding') {
      chunked = value.toLowerCase().includes('chunked');
    } else if (
      !NOT_FORWARDED.has(name) &&
      !(websocket && WEBSOCKET_HANDSHAKE.has(name)) &&
      !(connectionTokens !== '' && connectionTokens !== 'keep-alive' && connectionTokens !== 'close' && listsToken(connectionTokens, name))
    ) {
      headers.push(name, value);
    }
  });
  const client = clientBehind(peer, forwardedFor, addressing.trusted);
  headers.push(
    'x-forwarded-for',
    forwardedFor ? `${forwardedFor}, ${peer}` : peer,
    'x-forwarded-proto',
    proto,
  );
  if (host) headers.push('x-forwarded-host', host);
  const colon = host.lastIndexOf(':');
  const hostName = (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
  return { method, path, host, hostName, client, headers, contentLength, chunked };
}

function listsToken(list: string, token: string): boolean {
  for (const item of list.split(',')) if (item.trim() === token) return true;
  return false;
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
