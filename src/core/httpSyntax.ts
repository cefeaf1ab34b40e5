// The two pieces of HTTP syntax that requests, backend responses and the config all check: a
// token (RFC 9110 5.6.2: header names, transfer codings) and a Content-Length value (8.6).

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function isToken(text: string): boolean {
  return TOKEN.test(text);
}

/** 1*DIGIT, short enough to be an exact number. */
const DIGITS = /^[0-9]{1,15}$/;

/** The length a Content-Length value gives, or -1 when it is not plain digits. */
export function contentLengthOf(value: string): number {
  return DIGITS.test(value) ? Number(value) : -1;
}
