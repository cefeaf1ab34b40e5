// The pieces of HTTP syntax that requests, backend responses and the config all check: a token
// (RFC 9110 5.6.2: header names, transfer codings) and a Content-Length value (8.6); and how a
// header is read from the flat [name, value, …] lists that heads are kept in.

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

/** The value of header `name` (lower case) in a flat list, duplicates joined with ", "; undefined when absent. */
export function headerValue(headers: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) value = value === undefined ? headers[i + 1] : `${value}, ${headers[i + 1]}`;
  return value;
}
