// TLS to https:// backends: the same connect options for the HTTP client, the WebSocket client and
// the health checks.

import { createRequire } from 'node:module';
import { isIP, type Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { BackendConfig, PoolConfig } from '../config/types.js';

export interface TlsConnectOptions {
  ca?: string;
  rejectUnauthorized: boolean;
  /** SNI name, and the name the certificate is checked against; absent for an IP address. */
  servername?: string;
}

/** Connect options for a backend, or undefined for a plain-HTTP one. */
export function tlsConnectOptions(pool: PoolConfig, backend: BackendConfig): TlsConnectOptions | undefined {
  if (!backend.tls) return undefined;
  const servername = pool.tls.serverName ?? (isIP(backend.host) ? undefined : backend.host);
  return { ca: pool.tls.ca, rejectUnauthorized: pool.tls.verify, servername };
}

let tls: typeof import('node:tls') | undefined;

/**
 * tls.connect, with node:tls loaded on the first TLS connection: a uws worker whose backends are
 * all plain HTTP does not load it at start-up (5 ms of each worker thread's start here).
 */
export function connectTls(options: ConnectionOptions): Socket {
  tls ??= createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
  return tls.connect(options);
}
