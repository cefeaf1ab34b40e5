// Validation of raw YAML/JSON input into a normalised Config, section by section: types in
// types.ts, accepted keys in keys.ts, defaults in defaults.ts, section parsers beside this file.

import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { isRange } from '../core/accessList.js';
import { Checker, ConfigError } from './checker.js';
import { CONFIG_KEYS } from './keys.js';
import { DEFAULTS, defaultBytes, defaultMs } from './defaults.js';
import { parseFleet } from './fleet.js';
import { parseTcpListener, parseTls, httpPools } from './listeners.js';
import { parsePool } from './pools.js';
import { parseRoute } from './routes.js';
import { COMPRESSION, ENGINES, LOG_FORMATS, LOG_LEVELS, type AdminConfig, type Compression, type Config, type PoolConfig, type RouteConfig, type TcpListenerConfig } from './types.js';

export * from './types.js';
export { CONFIG_KEYS } from './keys.js';
export { DEFAULTS } from './defaults.js';
export { ConfigError, parseHostPort } from './checker.js';
export { httpPools } from './listeners.js';
export { validateBackend } from './pools.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Validates raw config input; throws ConfigError listing every problem found. */
export function validateConfig(raw: unknown): Config {
  const check = new Checker();
  const top = check.object('', raw, CONFIG_KEYS['']);
  if (!top) throw new ConfigError(check.problems.map((p) => p.replace(/^: /, 'top level: ')));

  const listen = check.hostPort('listen', top.listen ?? DEFAULTS.listen);
  const tls = top.tls === undefined ? undefined : parseTls(check, top.tls);
  const workers =
    (top.workers ?? DEFAULTS.workers) === 'auto'
      ? availableParallelism()
      : check.integer('workers', top.workers, 1, 256);
  const engine = check.oneOf('engine', top.engine ?? DEFAULTS.engine, ENGINES);

  const log = { level: DEFAULTS['log.level'] as Config['log']['level'], access: DEFAULTS['log.access'] as boolean, format: DEFAULTS['log.format'] as Config['log']['format'] };
  if (top.log !== undefined) {
    const obj = check.object('log', top.log, CONFIG_KEYS.log);
    if (obj?.level !== undefined) log.level = check.oneOf('log.level', obj.level, LOG_LEVELS) ?? log.level;
    if (obj?.access !== undefined) log.access = check.boolean('log.access', obj.access) ?? log.access;
    if (obj?.format !== undefined) log.format = check.oneOf('log.format', obj.format, LOG_FORMATS) ?? log.format;
  }

  const timeouts = {
    connect: defaultMs('timeouts.connect'),
    response: defaultMs('timeouts.response'),
    idle: defaultMs('timeouts.idle'),
    requestHead: defaultMs('timeouts.request_head'),
    requestBody: defaultMs('timeouts.request_body'),
  };
  if (top.timeouts !== undefined) {
    const obj = check.object('timeouts', top.timeouts, CONFIG_KEYS.timeouts);
    for (const key of ['connect', 'response', 'idle'] as const) {
      if (obj?.[key] !== undefined) timeouts[key] = check.duration(`timeouts.${key}`, obj[key]) ?? timeouts[key];
    }
    for (const [key, name] of [['requestHead', 'request_head'], ['requestBody', 'request_body']] as const) {
      if (obj?.[name] === undefined) continue;
      const ms = check.duration(`timeouts.${name}`, obj[name]);
      if (ms !== undefined && ms < 1000) check.fail(`timeouts.${name}`, 'at least "1s"', obj[name]);
      else if (ms !== undefined) timeouts[key] = ms;
    }
  }

  const limits = { maxRequestLine: defaultBytes('limits.max_request_line'), maxRequestHead: defaultBytes('limits.max_request_head') };
  if (top.limits !== undefined) {
    const obj = check.object('limits', top.limits, CONFIG_KEYS.limits);
    for (const [key, name] of [['maxRequestLine', 'max_request_line'], ['maxRequestHead', 'max_request_head']] as const) {
      if (obj?.[name] === undefined) continue;
      const bytes = check.size(`limits.${name}`, obj[name]);
      if (bytes !== undefined && (bytes < 1024 || bytes > 1024 * 1024)) check.fail(`limits.${name}`, 'a size from "1kb" to "1mb"', obj[name]);
      else if (bytes !== undefined) limits[key] = bytes;
    }
  }

  const websocket = {
    maxMessage: defaultBytes('websocket.max_message'),
    pingInterval: defaultMs('websocket.ping_interval'),
    maxBuffered: defaultBytes('websocket.max_buffered'),
    compression: DEFAULTS['websocket.compression'] as Compression,
  };
  if (top.websocket !== undefined) {
    const obj = check.object('websocket', top.websocket, CONFIG_KEYS.websocket);
    if (obj?.max_message !== undefined) websocket.maxMessage = check.size('websocket.max_message', obj.max_message) ?? 0;
    if (obj?.max_buffered !== undefined) websocket.maxBuffered = check.size('websocket.max_buffered', obj.max_buffered) ?? 0;
    if (obj?.compression !== undefined) websocket.compression = check.oneOf('websocket.compression', obj.compression, COMPRESSION) ?? websocket.compression;
    if (obj?.ping_interval !== undefined) {
      const ms = check.duration('websocket.ping_interval', obj.ping_interval);
      // uWS counts idle time in seconds and refuses idle timeouts from 1 to 8.
      if (ms !== undefined && ms !== 0 && ms < 10_000) check.fail('websocket.ping_interval', 'at least "10s", or "0s" to turn pings off', obj.ping_interval);
      else if (ms !== undefined) websocket.pingInterval = ms;
    }
  }

  const shutdown = { grace: defaultMs('shutdown.grace') };
  if (top.shutdown !== undefined) {
    const obj = check.object('shutdown', top.shutdown, CONFIG_KEYS.shutdown);
    if (obj?.grace !== undefined) shutdown.grace = check.duration('shutdown.grace', obj.grace) ?? shutdown.grace;
  }

  let admin: AdminConfig | undefined;
  if (top.admin !== undefined) {
    const obj = check.object('admin', top.admin, CONFIG_KEYS.admin);
    const adminListen = obj ? check.hostPort('admin.listen', obj.listen ?? '127.0.0.1:9900') : undefined;
    let token = obj?.token === undefined ? undefined : check.string('admin.token', obj.token);
    // HTTP strips the spaces around a header value: such a token could never be sent.
    if (token !== undefined && (token.trim() === '' || token.trim() !== token)) {
      token = check.fail('admin.token', 'a token that neither is blank nor starts or ends with a space', obj!.token);
    }
    if (adminListen && !LOOPBACK.test(adminListen.host) && token === undefined) {
      check.fail('admin.token', `a token when admin.listen is not a loopback address (${adminListen.host})`, undefined);
    }
    const hosts = obj?.hosts === undefined ? [] : check.hostNames('admin.hosts', obj.hosts);
    if (adminListen) admin = { listen: adminListen, token, hosts };
  }

  const fleet = top.fleet === undefined ? undefined : parseFleet(check, top.fleet);

  const resolver = { servers: [] as string[], timeout: defaultMs('resolver.timeout') };
  if (top.resolver !== undefined) {
    const obj = check.object('resolver', top.resolver, CONFIG_KEYS.resolver);
    if (obj?.servers !== undefined) {
      const list = obj.servers;
      if (!Array.isArray(list) || list.length === 0) check.fail('resolver.servers', 'a list of DNS servers such as ["127.0.0.1:53"]', list);
      else
        list.forEach((server, i) => {
          const address = typeof server === 'string' && !server.includes(':') ? { host: server, port: 53 } : check.hostPort(`resolver.servers[${i}]`, server);
          if (address && isIP(address.host) === 0) check.fail(`resolver.servers[${i}]`, 'an IP address with an optional port, such as 127.0.0.1:53', server);
          else if (address) resolver.servers.push(address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`);
        });
    }
    if (obj?.timeout !== undefined) {
      const ms = check.duration('resolver.timeout', obj.timeout);
      if (ms !== undefined && ms <= 0) check.fail('resolver.timeout', 'a duration above zero', obj.timeout);
      else if (ms !== undefined) resolver.timeout = ms;
    }
  }

  const pools: Record<string, PoolConfig> = {};
  const rawPools = check.mapping('pools', top.pools);
  if (rawPools) {
    if (Object.keys(rawPools).length === 0) check.fail('pools', 'at least one pool', rawPools);
    for (const [name, value] of Object.entries(rawPools)) {
      if (!/^[A-Za-z0-9_-]+$/.test(name)) check.fail(`pools.${name}`, 'a pool name of letters, digits, - and _', name);
      const pool = parsePool(check, `pools.${name}`, name, value);
      if (pool) pools[name] = pool;
    }
  }

  let tcp: TcpListenerConfig[] = [];
  if (top.tcp !== undefined) {
    if (!Array.isArray(top.tcp)) check.fail('tcp', 'a list of TCP listeners', top.tcp);
    else tcp = top.tcp.map((l, i) => parseTcpListener(check, `tcp[${i}]`, l, rawPools ?? {})).filter((l) => l !== undefined);
  }

  let routes: RouteConfig[] = [];
  if (top.routes !== undefined) {
    if (!Array.isArray(top.routes)) check.fail('routes', 'a list of routes', top.routes);
    else routes = top.routes.map((r, i) => parseRoute(check, `routes[${i}]`, r, rawPools ?? {}, timeouts)).filter((r) => r !== undefined);
  } else if (rawPools && httpPools(Object.keys(rawPools), tcp).length > 1) {
    check.fail('routes', 'a list of routes when more than one pool serves HTTP', undefined);
  }

  routes.forEach((route, i) => {
    if (route.rateLimit?.scope === 'fleet' && !fleet) check.fail(`routes[${i}].rate_limit.scope`, 'instance, or a fleet section for fleet', 'fleet');
  });

  let trustedProxies: string[] = [];
  if (top.trusted_proxies !== undefined) {
    const list = top.trusted_proxies;
    if (!Array.isArray(list) || list.some((v) => typeof v !== 'string' || !isRange(v))) {
      check.fail('trusted_proxies', 'a list of addresses or CIDR ranges such as "10.0.0.0/8"', list);
    } else trustedProxies = list as string[];
  }
  const proxyProtocol = top.proxy_protocol === undefined ? false : (check.boolean('proxy_protocol', top.proxy_protocol) ?? false);

  if (check.problems.length > 0) throw new ConfigError(check.problems);
  return { listen: listen!, tls, admin, fleet, workers: workers!, engine: engine!, log, timeouts, limits, websocket, shutdown, resolver, pools, routes, trustedProxies, proxyProtocol, tcp };
}
