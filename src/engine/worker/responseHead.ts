// Pieces of reading a backend's HTTP/1.x response head, shared by both upstream clients.

/**
 * A control character other than HTAB (NUL, DEL, …), or a CR or LF that is not part of a CRLF.
 * None may stand in a status line or a field (RFC 9110 5.5, RFC 9112 4): a bare CR or LF would
 * reach a client as a header line of its own (response splitting), so a head holding one is refused.
 */
const STRAY_BYTE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;

export function hasStrayByte(head: string): boolean {
  return STRAY_BYTE.test(head);
}

/** A field name is a token (RFC 9110 5.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function isToken(name: string): boolean {
  return TOKEN.test(name);
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
