// Pieces of reading a backend's HTTP/1.x response head, shared by both upstream clients.

import { contentLengthOf, isToken } from '../core/httpSyntax.js';

/**
 * Where the line that starts at `at` ends: its CRLF, or the end of the head (`length`); -1 when a
 * stray byte comes first: a control character other than HTAB (NUL, DEL, …), or a CR or LF that is
 * not part of a CRLF. None may stand in a status line or a field (RFC 9110 5.5, RFC 9112 4): a
 * bare CR or LF would reach a client as a header line of its own (response splitting), so a head
 * holding one is refused.
 */
function lineEnd(bytes: Uint8Array, at: number, length: number): number {
  for (let i = at; i < length; i++) {
    const c = bytes[i];
    if (c < 32 ? c !== 9 : c === 127) return c === 13 && i + 1 < length && bytes[i + 1] === 10 ? i : -1;
  }
  return length;
}

/** What each byte is in a header name: 0 not a token's (isToken), 1 a token's, 2 an upper-case letter. */
const NAME_BYTE = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (isToken(String.fromCharCode(c))) NAME_BYTE[c] = c >= 65 && c <= 90 ? 2 : 1;

/**
 * The header names of the last head read, as sent and in lower case, by their place in it: a
 * backend sends the same names in the same order in every response, so a name found again where
 * it was is neither checked nor lower-cased again, and the name relayed is one string whose hash
 * V8 keeps (the engines look names up in sets). The first KEPT_NAMES places.
 */
const sentNames: string[] = [];
const lowerNames: string[] = [];
const KEPT_NAMES = 64;

/**
 * The status code of the status line `HTTP/1.x NNN[ reason]` that ends at `end`, or -1 when the
 * line is not one.
 */
function statusOf(head: string, end: number): number {
  if (!head.startsWith('HTTP/1.') || (end !== 12 && !(end > 12 && head.charCodeAt(12) === 32))) return -1;
  const minor = head.charCodeAt(7);
  if ((minor !== 48 && minor !== 49) || head.charCodeAt(8) !== 32) return -1;
  let code = 0;
  for (let i = 9; i < 12; i++) {
    const digit = head.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    code = code * 10 + digit;
  }
  return code;
}

/** A space or a tab (OWS, RFC 9110 5.6.3). */
const isSpace = (c: number) => c === 32 || c === 9;

/** A backend's response head as both upstream clients read it, with one strictness. */
export interface ResponseHead {
  statusCode: number;
  statusMessage: string;
  /** Flat [name, value, …] list: names in lower case, values without the spaces around them. */
  headers: string[];
  /** Content-Length, or -1 when there is none. */
  length: number;
  /** A Transfer-Encoding was sent; `chunked` when chunked is its final coding. */
  transferEncoding: boolean;
  chunked: boolean;
  /** The connection may carry another request (HTTP/1.1 without `close`, or `keep-alive`). */
  keepAlive: boolean;
}

/**
 * Parses a response head, the first `length` bytes of `bytes` (without its final CRLF CRLF),
 * walking its bytes once (this runs once per response), or says why it is refused: a control
 * character or bare CR/LF, no HTTP/1.x status line, a line without a name or a folded one
 * (obsolete, RFC 9112 5.2, refused as NGINX does), a name that is not a token, a Content-Length
 * that is not digits or two that differ.
 */
export function parseResponseHead(bytes: Buffer, length: number): ResponseHead | string {
  const text = bytes.toString('latin1', 0, length);
  let end = lineEnd(bytes, 0, length);
  if (end < 0) return STRAY_BYTE;
  const statusCode = statusOf(text, end);
  if (statusCode < 0) return 'the backend did not answer in HTTP/1.x';
  const head: ResponseHead = {
    statusCode,
    statusMessage: end > 13 ? text.slice(13, end) : '',
    headers: [],
    length: -1,
    transferEncoding: false,
    chunked: false,
    keepAlive: bytes[7] === 49, // HTTP/1.1
  };
  for (let at = end + 2; at < length; at = end + 2) {
    end = lineEnd(bytes, at, length);
    if (end < 0) return STRAY_BYTE;
    const place = head.headers.length >> 1;
    const sent = sentNames[place];
    let colon = at + (sent?.length ?? 0);
    let name: string;
    if (sent !== undefined && colon < end && bytes[colon] === 58 /* : */ && text.startsWith(sent, at)) name = lowerNames[place];
    else {
      colon = at;
      let upper = false;
      for (let kind; colon < end && (kind = NAME_BYTE[bytes[colon]]) !== 0; colon++) if (kind === 2) upper = true;
      if (colon === at || colon === end || bytes[colon] !== 58) {
        const anyColon = text.indexOf(':', at);
        if (anyColon <= at || anyColon > end || isSpace(bytes[at])) return 'the backend sent a malformed header line';
        return 'the backend sent an invalid header name';
      }
      const asSent = text.slice(at, colon);
      name = upper ? asSent.toLowerCase() : asSent;
      if (place < KEPT_NAMES) {
        sentNames[place] = asSent;
        lowerNames[place] = name;
      }
    }
    let from = colon + 1;
    let to = end;
    while (from < to && isSpace(bytes[from])) from++;
    while (to > from && isSpace(bytes[to - 1])) to--;
    const value = text.slice(from, to);
    if (name === 'content-length') {
      const n = contentLengthOf(value);
      if (n < 0 || (head.length >= 0 && n !== head.length)) return 'the backend sent an invalid Content-Length';
      head.length = n;
    } else if (name === 'transfer-encoding') {
      head.transferEncoding = true;
      head.chunked = FINAL_CHUNKED.test(value);
    } else if (name === 'connection') {
      const tokens = value.toLowerCase();
      if (tokens.includes('close')) head.keepAlive = false;
      else if (tokens.includes('keep-alive')) head.keepAlive = true;
    }
    head.headers.push(name, value);
  }
  return head;
}

const STRAY_BYTE = 'the backend sent a control character in its response head';
const FINAL_CHUNKED = /(?:^|,)\s*chunked\s*$/i;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,12}$/;

/** The size on a chunk-size line (extensions after `;` ignored), or -1 when it is malformed. */
export function chunkSizeOf(line: string): number {
  const semicolon = line.indexOf(';');
  const size = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
  return CHUNK_SIZE.test(size) ? parseInt(size, 16) : -1;
}
