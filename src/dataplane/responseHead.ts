// Pieces of reading a backend's HTTP/1.x response head, shared by both upstream clients.

import { contentLengthOf, isToken } from '../core/httpSyntax.js';

/**
 * A control character other than HTAB (NUL, DEL, …), or a CR or LF that is not part of a CRLF.
 * None may stand in a status line or a field (RFC 9110 5.5, RFC 9112 4): a bare CR or LF would
 * reach a client as a header line of its own (response splitting), so a head holding one is refused.
 */
const STRAY_BYTE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;

export function hasStrayByte(head: string): boolean {
  return STRAY_BYTE.test(head);
}

/**
 * The status code of the status line `HTTP/1.x NNN[ reason]` that ends at `end`, or -1 when the
 * line is not one.
 */
export function statusOf(head: string, end: number): number {
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

/** The reason phrase of the status line that ends at `end` ('' when there is none). */
export function reasonOf(head: string, end: number): string {
  return end > 13 ? head.slice(13, end) : '';
}

/** Where the line that starts at `at` ends: its CRLF, or the end of the head. */
export function lineEnd(head: string, at: number): number {
  const end = head.indexOf('\r\n', at);
  return end < 0 ? head.length : end;
}

/** `name` in lower case; most backends send lower-case names already, which are kept as they are. */
export function lowerCase(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

/** head[from, to) without the spaces and tabs around it (a header value's OWS, RFC 9110 5.6.3). */
export function withoutSpaces(head: string, from: number, to: number): string {
  while (from < to && (head.charCodeAt(from) === 32 || head.charCodeAt(from) === 9)) from++;
  while (to > from && (head.charCodeAt(to - 1) === 32 || head.charCodeAt(to - 1) === 9)) to--;
  return head.slice(from, to);
}

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
 * Parses a response head (without its final CRLF CRLF), walking it by index (this runs once per
 * response), or says why it is refused: a control character or bare CR/LF, no HTTP/1.x status
 * line, a line without a name or a folded one (obsolete, RFC 9112 5.2, refused as NGINX does), a
 * name that is not a token, a Content-Length that is not digits or two that differ.
 */
export function parseResponseHead(text: string): ResponseHead | string {
  if (hasStrayByte(text)) return 'the backend sent a control character in its response head';
  let end = lineEnd(text, 0);
  const statusCode = statusOf(text, end);
  if (statusCode < 0) return 'the backend did not answer in HTTP/1.x';
  const head: ResponseHead = {
    statusCode,
    statusMessage: reasonOf(text, end),
    headers: [],
    length: -1,
    transferEncoding: false,
    chunked: false,
    keepAlive: text.charCodeAt(7) === 49, // HTTP/1.1
  };
  for (let at = end + 2; at < text.length; at = end + 2) {
    end = lineEnd(text, at);
    const colon = text.indexOf(':', at);
    const first = text.charCodeAt(at);
    if (colon <= at || colon > end || first === 32 || first === 9) return 'the backend sent a malformed header line';
    const name = lowerCase(text.slice(at, colon));
    if (!isToken(name)) return 'the backend sent an invalid header name';
    const value = withoutSpaces(text, colon + 1, end);
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

const FINAL_CHUNKED = /(?:^|,)\s*chunked\s*$/i;
const CHUNK_SIZE = /^[0-9a-fA-F]{1,12}$/;

/** The size on a chunk-size line (extensions after `;` ignored), or -1 when it is malformed. */
export function chunkSizeOf(line: string): number {
  const semicolon = line.indexOf(';');
  const size = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
  return CHUNK_SIZE.test(size) ? parseInt(size, 16) : -1;
}
