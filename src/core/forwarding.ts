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

/**
 * Names a client may not send with `_` for `-` (X_Forwarded_For): backends that read CGI-style
 * variables take both spellings for one, so these would stand in for the headers fairway drops,
 * sets or frames itself. Dropped, as NGINX drops every name with `_` by default.
 */
const CGI_TWINS = new Set([...NOT_FORWARDED, 'host', 'content-length']);

/** A Host value (RFC 9110 7.2): an IP literal or a registered name, then an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{1,5})?$/;

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
  /**
   * Set when the head is refused: its framing, its Host, or its size. The request goes nowhere and
   * its connection is closed.
   */
  headFault: ProxyFault | undefined;
}

/** What a listener makes of every request head. */
export interface HeadRules {
  proto: 'http' | 'https';
  addressing: Addressing;
  /** Longest request line (method, target and version) and longest header section, bytes. */
  maxRequestLine: number;
  maxRequestHead: number;
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
  /** A request without Host is allowed (HTTP/1.0, or HTTP/2 with its :authority); else 400. */
  hostOptional: boolean;
}

/**
 * Makes the upstream head from the request line and its headers; `forEachHeader` visits every
 * header with a lower-case name, in order.
 */
export function upstreamHead(
  line: RequestLine,
  forEachHeader: (visit: (name: string, value: string) => void) => void,
  websocket: boolean,
  rules: HeadRules,
): RequestHead {
  const { method, path, host, peer } = line;
  const connectionTokens = line.connection;
  const headers: string[] = [];
  let forwardedFor = '';
  let hosts = 0;
  // Name, ": ", value and CRLF of every header line, as sent.
  let headSize = 0;
  // Framing headers as sent: most requests have none, so nothing is allocated for them.
  let lengths: string[] | null = null;
  let codings: string[] | null = null;
  forEachHeader((name, value) => {
    headSize += name.length + value.length + 4;
    if (name === 'host') {
      // Never dropped, even when the client lists it in Connection.
      if (++hosts === 1) headers.push(name, value);
    } else if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
    } else if (name === 'content-length') {
      (lengths ??= []).push(value);
    } else if (name === 'transfer-encoding') {
      (codings ??= []).push(value);
    } else if (
      !NOT_FORWARDED.has(name) &&
      !(name.includes('_') && CGI_TWINS.has(name.replaceAll('_', '-'))) &&
      !(websocket && WEBSOCKET_HANDSHAKE.has(name)) &&
      !(connectionTokens !== '' && connectionTokens !== 'keep-alive' && connectionTokens !== 'close' && listsToken(connectionTokens, name))
    ) {
      headers.push(name, value);
    }
  });
  const client = clientBehind(peer, forwardedFor, rules.addressing.trusted);
  headers.push(
    'x-forwarded-for',
    forwardedFor ? `${forwardedFor}, ${peer}` : peer,
    'x-forwarded-proto',
    rules.proto,
  );
  if (host) headers.push('x-forwarded-host', host);
  const colon = host.lastIndexOf(':');
  const hostName = (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
  const head: RequestHead = { method, path, host, hostName, client, headers, contentLength: -1, chunked: false, headFault: undefined };
  // "GET /path HTTP/1.1": the method, the target, and the version with its spaces.
  if (method.length + path.length + 10 > rules.maxRequestLine) head.headFault = FAULTS.uriTooLong;
  else if (headSize > rules.maxRequestHead) head.headFault = FAULTS.headTooLarge;
  else if (hosts > 1 || (hosts === 0 && host === '' && !line.hostOptional) || ((hosts === 1 || host !== '') && !validHost(host, colon))) head.headFault = FAULTS.badHost;
  else if (path.charCodeAt(0) !== 47 /* / */ && !(path === '*' && method === 'OPTIONS')) originForm(head);
  if (!head.headFault && (lengths !== null || codings !== null)) requestFraming(head, lengths ?? NONE, codings ?? NONE);
  return head;
}

/**
 * A target in absolute form (`GET http://a.example/x`), as proxies send: taken in origin form when
 * its authority is the Host (routing and access lists read the path), else refused, since the
 * backend may take the target's authority over the Host that routing used (RFC 9112 3.2.2).
 */
function originForm(head: RequestHead): void {
  const match = /^https?:\/\/([^/?#]*)([^#]*)$/i.exec(head.path);
  if (!match || match[1].toLowerCase() !== head.host.toLowerCase()) {
    head.headFault = FAULTS.badTarget;
    return;
  }
  head.path = match[2] === '' || match[2].startsWith('?') ? `/${match[2]}` : match[2];
}

/**
 * RFC 9110 7.2 and 3986 3.2.2: a host of the URI grammar and a port of at most 65535. `colon` is
 * where the port's colon is, or -1 (as upstreamHead found it).
 */
function validHost(host: string, colon: number): boolean {
  if (!HOST.test(host)) return false;
  return colon < 0 || colon < host.lastIndexOf(']') || host.length - colon - 1 < 5 || Number(host.slice(colon + 1)) <= 65535;
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
export function requestFraming(head: Pick<RequestHead, 'contentLength' | 'chunked' | 'headFault'>, lengths: string[], codings: string[]): void {
  head.headFault = framingFault(lengths, codings);
  if (head.headFault) return;
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

