// The request head that goes upstream, the same for every engine: hop-by-hop headers dropped,
// X-Forwarded-* set, and the client's address found through trusted proxies.

import { clientBehind, type Addressing } from './clientAddress.js';
import { FAULTS, type ProxyFault } from './errors.js';
import { contentLengthOf, isToken } from './httpSyntax.js';

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
  /**
   * The body's framing as the client declared it, checked by requestFraming: its Content-Length
   * (-1 when none), or chunked. The client's own framing headers are not in `headers`: the
   * upstream client writes one of its own from these.
   */
  contentLength: number;
  chunked: boolean;
  /** Set when the framing is invalid: the request is refused and its connection closed. */
  framingFault: ProxyFault | undefined;
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
  // Framing headers as sent: most requests have none, so nothing is allocated for them.
  let lengths: string[] | null = null;
  let codings: string[] | null = null;
  forEachHeader((name, value) => {
    if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
    } else if (name === 'content-length') {
      (lengths ??= []).push(value);
    } else if (name === 'transfer-encoding') {
      (codings ??= []).push(value);
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
  const head: RequestHead = { method, path, host, hostName, client, headers, contentLength: -1, chunked: false, framingFault: undefined };
  if (lengths !== null || codings !== null) requestFraming(head, lengths ?? NONE, codings ?? NONE);
  return head;
}

const NONE: string[] = [];

/**
 * Sets the body framing of `head` from its Content-Length and Transfer-Encoding values (each
 * header line's value, in order), as RFC 9112 6.3 and HAProxy read them, refusing whatever two
 * parsers could read two ways: more than one Content-Length (even identical, even as a list),
 * one that is not plain digits (`-1`, `+5`, `1.0`, `0 80`), Transfer-Encoding together with
 * Content-Length, chunked that is not the final coding or appears twice, and codings that are
 * not tokens. A coding other than chunked is 501: fairway would have to undo it.
 */
export function requestFraming(head: Pick<RequestHead, 'contentLength' | 'chunked' | 'framingFault'>, lengths: string[], codings: string[]): void {
  head.framingFault = framingFault(lengths, codings);
  if (head.framingFault) return;
  if (codings.length > 0) head.chunked = true;
  else if (lengths.length === 1) head.contentLength = contentLengthOf(lengths[0].trim());
}

function framingFault(lengths: string[], codings: string[]): ProxyFault | undefined {
  if (codings.length > 0) {
    if (lengths.length > 0) return FAULTS.badFraming;
    const list = codings.join(',').split(',').map((coding) => coding.trim().toLowerCase());
    if (list.some((coding) => !isToken(coding))) return FAULTS.badFraming;
    if (list.at(-1) !== 'chunked' || list.indexOf('chunked') !== list.length - 1) return FAULTS.badFraming;
    if (list.length > 1) return FAULTS.unsupportedCoding;
    return undefined;
  }
  if (lengths.length > 1 || (lengths.length === 1 && contentLengthOf(lengths[0].trim()) < 0)) return FAULTS.badFraming;
  return undefined;
}

function listsToken(list: string, token: string): boolean {
  for (const item of list.split(',')) if (item.trim() === token) return true;
  return false;
}

