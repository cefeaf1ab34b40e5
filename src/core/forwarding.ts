// The request head that goes upstream, the same for every engine: hop-by-hop headers dropped,
// X-Forwarded-* set, and the client's address found through trusted proxies.

import { clientBehind, type Addressing } from './clientAddress.js';

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

/** What an engine read of a request, before the head for upstream is made of it. */
export interface RequestLine {
  method: string;
  /** Path with query string, as sent. */
  path: string;
  host: string;
  /** The connection's client: its TCP peer, or the PROXY protocol's source. */
  peer: string;
  /** The Connection header, lower-cased ('' when absent). */
  connection: string;
}

/**
 * Makes the upstream head from the request line and its headers; `forEachHeader` visits every
 * header with a lower-case name, in order.
 */
export function upstreamHead(
  line: RequestLine,
  forEachHeader: (visit: (name: string, value: string) => void) => void,
  websocket: boolean,
  proto: 'http' | 'https',
  addressing: Addressing,
): RequestHead {
  const { method, path, host, peer } = line;
  const connectionTokens = line.connection;
  const headers: string[] = [];
  let forwardedFor = '';
  let contentLength = -1;
  let chunked = false;
  forEachHeader((name, value) => {
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

