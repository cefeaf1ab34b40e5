// Parsing of the listeners besides `listen`: TLS termination (`tls`) and L4 listeners (`tcp[]`).

import type { TcpListenerConfig, TlsConfig } from './types.js';
import { Checker, join, readableFile } from './checker.js';
import { CONFIG_KEYS } from './keys.js';

export function parseTcpListener(check: Checker, path: string, raw: unknown, pools: Record<string, unknown>): TcpListenerConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['tcp[]']);
  if (!obj) return undefined;
  const listen = check.hostPort(join(path, 'listen'), obj.listen);
  const pool = check.string(join(path, 'pool'), obj.pool);
  if (pool !== undefined && !(pool in pools)) check.fail(join(path, 'pool'), `the name of a pool (${Object.keys(pools).join(', ')})`, pool);
  const idleTimeout = obj.idle_timeout === undefined ? 3_600_000 : check.duration(join(path, 'idle_timeout'), obj.idle_timeout);
  let sendProxy: 0 | 1 | 2 = 0;
  if (obj.send_proxy !== undefined) {
    const version = check.oneOf(join(path, 'send_proxy'), obj.send_proxy, ['v1', 'v2'] as const);
    sendProxy = version === 'v1' ? 1 : version === 'v2' ? 2 : 0;
  }
  const acceptProxy = obj.accept_proxy === undefined ? false : (check.boolean(join(path, 'accept_proxy'), obj.accept_proxy) ?? false);
  if (!listen || pool === undefined || idleTimeout === undefined) return undefined;
  return { listen, pool, idleTimeout, sendProxy, acceptProxy };
}

export function parseTls(check: Checker, raw: unknown): TlsConfig | undefined {
  const obj = check.object('tls', raw, CONFIG_KEYS.tls);
  if (!obj) return undefined;
  const cert = readableFile(check, 'tls.cert', obj.cert);
  const key = readableFile(check, 'tls.key', obj.key);
  const certs: TlsConfig['certs'] = [];
  if (obj.certs !== undefined) {
    if (!Array.isArray(obj.certs)) check.fail('tls.certs', 'a list of { names, cert, key }', obj.certs);
    else {
      obj.certs.forEach((item, i) => {
        const path = `tls.certs[${i}]`;
        const entry = check.object(path, item, CONFIG_KEYS['tls.certs[]']);
        if (!entry) return;
        const names = Array.isArray(entry.names) ? entry.names.filter((n): n is string => typeof n === 'string' && /^[A-Za-z0-9*.-]+$/.test(n)) : [];
        if (!Array.isArray(entry.names) || names.length === 0 || names.length !== entry.names.length) {
          check.fail(`${path}.names`, 'a non-empty list of host names', entry.names);
        }
        const c = readableFile(check, `${path}.cert`, entry.cert);
        const k = readableFile(check, `${path}.key`, entry.key);
        if (c && k && names.length > 0) certs.push({ names: names.map((n) => n.toLowerCase()), cert: c, key: k });
      });
    }
  }
  const redirect = obj.redirect === undefined ? undefined : check.hostPort('tls.redirect', obj.redirect);
  return cert && key ? { cert, key, certs, redirect } : undefined;
}

/** Pools that HTTP requests may go to without routes: those no TCP listener uses. */
export function httpPools(pools: string[], tcp: TcpListenerConfig[]): string[] {
  return pools.filter((pool) => !tcp.some((listener) => listener.pool === pool));
}

/** Validates one backend entry (admin API); throws ConfigError naming `path`. */
