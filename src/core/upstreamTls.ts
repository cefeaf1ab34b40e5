// TLS to https:// backends: the same connect options for the HTTP client, the WebSocket client and
// the health checks.

import { isIP } from 'node:net';
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
