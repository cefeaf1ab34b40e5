// Error codes that cross threads and reach users: a stable code, a source, and the HTTP status.
// Two vocabularies, each one union: ErrorCode for errors inside fairway (thrown, logged, posted
// between threads), FaultCode for what a client is told in x-fairway-error.

export type ErrorSource = 'upstream' | 'downstream' | 'internal';

/** Every code an error of fairway's own carries, next to Node's system codes (ECONNREFUSED, …). */
export type ErrorCode =
  // Start-up and configuration (the primary's and workers' failures to start).
  | 'FAIRWAY_CONFIG'
  | 'FAIRWAY_START'
  | 'FAIRWAY_LISTEN'
  | 'FAIRWAY_ENGINE'
  // The upstream clients.
  | 'FAIRWAY_CONNECT_TIMEOUT'
  | 'FAIRWAY_RESPONSE_TIMEOUT'
  | 'FAIRWAY_BODY_TIMEOUT'
  | 'FAIRWAY_HANDSHAKE_TIMEOUT'
  | 'FAIRWAY_IDLE'
  | 'FAIRWAY_BAD_RESPONSE'
  | 'FAIRWAY_BAD_HANDSHAKE'
  | 'FAIRWAY_UPSTREAM_CLOSED'
  | 'FAIRWAY_UPSTREAM_PROTOCOL'
  | 'FAIRWAY_CLIENT_CLOSED'
  | 'FAIRWAY_CLIENT_BODY_TIMEOUT'
  | 'FAIRWAY_BODY_LENGTH';

export interface ProxyFault {
  /** Short stable name, sent in the x-fairway-error header. */
  code: string;
  source: ErrorSource;
  status: number;
  message: string;
}

export const FAULTS = {
  badFraming: { code: 'bad-framing', source: 'downstream', status: 400, message: 'the request body framing is invalid: send one Content-Length of digits or Transfer-Encoding: chunked, not both' },
  unsupportedCoding: { code: 'unsupported-coding', source: 'downstream', status: 501, message: 'the request uses a transfer coding other than chunked' },
  badRequest: { code: 'bad-request', source: 'downstream', status: 400, message: 'the request could not be parsed' },
  headTimeout: { code: 'head-timeout', source: 'downstream', status: 408, message: 'the request head did not arrive in time' },
  bodyTimeout: { code: 'body-timeout', source: 'downstream', status: 408, message: 'the request body stopped arriving' },
  badTarget: { code: 'bad-target', source: 'downstream', status: 400, message: 'the request target must be a path, or an absolute URL whose authority is the Host' },
  badHost: { code: 'bad-host', source: 'downstream', status: 400, message: 'the request needs one valid Host header' },
  uriTooLong: { code: 'uri-too-long', source: 'downstream', status: 414, message: 'the request line is longer than this listener allows' },
  headTooLarge: { code: 'head-too-large', source: 'downstream', status: 431, message: 'the request headers are larger than this listener allows' },
  upgradeWithBody: { code: 'upgrade-with-body', source: 'downstream', status: 400, message: 'a WebSocket upgrade request carries no body' },
  noRoute: { code: 'no-route', source: 'downstream', status: 404, message: 'no route matches this request' },
  forbidden: { code: 'forbidden', source: 'downstream', status: 403, message: 'this address may not use this route' },
  websocketNotAllowed: { code: 'websocket-not-allowed', source: 'downstream', status: 403, message: 'WebSocket is not allowed on this route' },
  bodyTooLarge: { code: 'body-too-large', source: 'downstream', status: 413, message: 'the request body is larger than this route allows' },
  rateLimited: { code: 'rate-limited', source: 'downstream', status: 429, message: 'too many requests from this client; retry later' },
  tooManySessions: { code: 'too-many-sessions', source: 'downstream', status: 429, message: 'too many WebSocket sessions from this client' },
  noBackend: { code: 'no-backend', source: 'upstream', status: 503, message: 'no backend is available to take this request' },
  backendsFull: { code: 'backends-full', source: 'upstream', status: 503, message: 'every backend is at its connection limit' },
  queueFull: { code: 'queue-full', source: 'upstream', status: 503, message: 'every backend is at its connection limit and the wait queue is full' },
  queueTimeout: { code: 'queue-timeout', source: 'upstream', status: 503, message: 'no backend became free within the queue timeout' },
  connectRefused: { code: 'connect-refused', source: 'upstream', status: 502, message: 'the backend refused the connection' },
  connectTimeout: { code: 'connect-timeout', source: 'upstream', status: 504, message: 'the backend did not accept the connection in time' },
  responseTimeout: { code: 'response-timeout', source: 'upstream', status: 504, message: 'the backend did not answer in time' },
  upstreamReset: { code: 'upstream-reset', source: 'upstream', status: 502, message: 'the backend closed the connection before answering' },
  upstreamError: { code: 'upstream-error', source: 'upstream', status: 502, message: 'the backend request failed' },
  upstreamTls: { code: 'upstream-tls', source: 'upstream', status: 502, message: 'the backend certificate could not be verified' },
  badHandshake: { code: 'upstream-handshake', source: 'upstream', status: 502, message: 'the backend refused the WebSocket handshake' },
  internal: { code: 'internal', source: 'internal', status: 500, message: 'internal error in the load balancer' },
} as const satisfies Record<string, ProxyFault>;

/** What a client is told in x-fairway-error: one of the FAULTS. */
export type FaultCode = (typeof FAULTS)[keyof typeof FAULTS]['code'];

/** An error carrying a code for faultFor: what the upstream clients fail a request or session with. */
export function upstreamFailure(code: ErrorCode | 'ECONNRESET', message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** Maps an error from the HTTP client or a socket to the fault a client is told about. */
export function faultFor(err: unknown): ProxyFault {
  const code = (err as { code?: string } | null)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return FAULTS.connectRefused;
    case 'FAIRWAY_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return FAULTS.connectTimeout;
    case 'FAIRWAY_BAD_HANDSHAKE':
      return FAULTS.badHandshake;
    case 'FAIRWAY_CLIENT_BODY_TIMEOUT':
      return FAULTS.bodyTimeout;
    case 'FAIRWAY_HANDSHAKE_TIMEOUT':
    case 'FAIRWAY_RESPONSE_TIMEOUT':
    case 'FAIRWAY_BODY_TIMEOUT':
      return FAULTS.responseTimeout;
    case 'ECONNRESET':
    case 'EPIPE':
    case 'FAIRWAY_UPSTREAM_CLOSED':
      return FAULTS.upstreamReset;
    default:
      return isCertificateError(err) ? FAULTS.upstreamTls : FAULTS.upstreamError;
  }
}

/** Certificate problems reported by Node's TLS layer: the backend is reachable but not trusted. */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code ?? '';
  return code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET)/.test(code);
}

/** The backend was never reached: safe to try another for any request. */
export function isConnectFailure(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ECONNREFUSED' || code === 'FAIRWAY_CONNECT_TIMEOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL';
}

/** The connection broke before any response byte: safe to try another for idempotent methods. */
export function isReset(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'FAIRWAY_UPSTREAM_CLOSED';
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}
