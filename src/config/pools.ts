// Parsing of `pools.NAME`: backends, algorithm options, health, outliers, retries, drain, rebalance, upstream TLS.

import { readFileSync } from 'node:fs';
import { ALGORITHMS, type BackendConfig, type HashKeySource, type HealthConfig, type OutlierConfig, type PoolConfig, type UpstreamTlsConfig } from './types.js';
import { Checker, ConfigError, join, parseRate, readableFile } from './checker.js';
import { CONFIG_KEYS } from './keys.js';
import { DEFAULTS, defaultMs, defaultRate } from './defaults.js';

function parseBackend(check: Checker, path: string, pool: string, raw: unknown): BackendConfig | undefined {
  let address: unknown = raw;
  let weight = 1;
  let maxConns = 0;
  let name: string | undefined;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.backends[]'])!;
    address = obj.url;
    if (obj.weight !== undefined) weight = check.integer(join(path, 'weight'), obj.weight, 1, 1000) ?? 1;
    if (obj.max_conns !== undefined) maxConns = check.integer(join(path, 'max_conns'), obj.max_conns, 1, 10_000_000) ?? 0;
    if (obj.name !== undefined) {
      name = check.string(join(path, 'name'), obj.name);
      if (name !== undefined && !/^[A-Za-z0-9_.-]+$/.test(name)) name = check.fail(join(path, 'name'), 'a name of letters, digits, ".", "-" and "_"', name);
    }
    path = join(path, 'url');
  }
  if (typeof address !== 'string') return check.fail(path, 'an http(s) URL or host:port', address);
  const text = address.includes('://') ? address : `http://${address}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return check.fail(path, 'an http(s) URL or host:port', address);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search) {
    return check.fail(path, 'an http(s) URL with no path, or host:port', address);
  }
  const tls = url.protocol === 'https:';
  const port = Number(url.port || (tls ? 443 : 80));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const id = `${pool}/${url.host}`;
  return { id, name: name ?? derivedName(id), pool, origin: url.origin, tls, host, port, weight, maxConns };
}

/** A stable opaque name for a backend that has none, so cookies never carry its address. */
function derivedName(id: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return `b${(h >>> 0).toString(36)}`;
}

function parseHashKey(check: Checker, path: string, value: unknown): HashKeySource | undefined {
  const text = typeof value === 'string' ? value : '';
  const match = /^(ip|path)$|^(header|cookie|query):([A-Za-z0-9_.-]+)$/.exec(text);
  if (!match) return check.fail(path, 'ip, path, header:NAME, cookie:NAME or query:NAME', value);
  if (match[1]) return { from: match[1] as 'ip' | 'path', name: '' };
  return { from: match[2] as 'header' | 'cookie' | 'query', name: match[2] === 'header' ? match[3].toLowerCase() : match[3] };
}


export function parseUpstreamTls(check: Checker, path: string, raw: unknown): UpstreamTlsConfig {
  const tls: UpstreamTlsConfig = { verify: true };
  if (raw === undefined) return tls;
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.tls']);
  if (obj?.verify !== undefined) tls.verify = check.boolean(join(path, 'verify'), obj.verify) ?? true;
  if (obj?.ca !== undefined) {
    const file = readableFile(check, join(path, 'ca'), obj.ca);
    if (file !== undefined) {
      const pem = readFileSync(file, 'utf8');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) check.fail(join(path, 'ca'), 'a PEM file of CA certificates', file);
      else tls.ca = pem;
    }
  }
  if (obj?.server_name !== undefined) tls.serverName = check.string(join(path, 'server_name'), obj.server_name);
  return tls;
}

/** "20/s", "600/m" or a plain number: events per second. */
function parseHealth(check: Checker, path: string, raw: unknown): HealthConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.health']);
  if (!obj) return undefined;
  const [lowest, highest] = DEFAULTS['pools.NAME.health.expect_status'].split('-').map(Number);
  const health: HealthConfig = {
    type: DEFAULTS['pools.NAME.health.type'],
    path: DEFAULTS['pools.NAME.health.path'],
    interval: defaultMs('pools.NAME.health.interval'),
    timeout: defaultMs('pools.NAME.health.timeout'),
    rise: DEFAULTS['pools.NAME.health.rise'],
    fall: DEFAULTS['pools.NAME.health.fall'],
    expectStatus: [lowest, highest],
  };
  if (obj.type !== undefined) health.type = check.oneOf(`${path}.type`, obj.type, ['http', 'tcp', 'websocket'] as const) ?? 'http';
  if (obj.path !== undefined) {
    const p = check.string(`${path}.path`, obj.path);
    if (p !== undefined && !p.startsWith('/')) check.fail(`${path}.path`, 'a path starting with /', p);
    else if (p !== undefined) health.path = p;
  }
  if (obj.interval !== undefined) health.interval = check.duration(`${path}.interval`, obj.interval) || health.interval;
  if (obj.timeout !== undefined) health.timeout = check.duration(`${path}.timeout`, obj.timeout) || health.timeout;
  if (obj.rise !== undefined) health.rise = check.integer(`${path}.rise`, obj.rise, 1, 100) ?? health.rise;
  if (obj.fall !== undefined) health.fall = check.integer(`${path}.fall`, obj.fall, 1, 100) ?? health.fall;
  if (obj.expect_status !== undefined) {
    const text = String(obj.expect_status);
    const match = /^(\d{3})(?:-(\d{3}))?$/.exec(text);
    if (!match) check.fail(`${path}.expect_status`, 'a status or range such as 200 or "200-399"', obj.expect_status);
    else health.expectStatus = [Number(match[1]), Number(match[2] ?? match[1])];
  }
  return health;
}

export function parsePool(check: Checker, path: string, name: string, raw: unknown): PoolConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME']);
  if (!obj) return undefined;
  const algorithm =
    obj.algorithm === undefined ? DEFAULTS['pools.NAME.algorithm'] : check.oneOf(join(path, 'algorithm'), obj.algorithm, ALGORITHMS);
  let hash: PoolConfig['hash'];
  if (obj.hash !== undefined) {
    const h = check.object(join(path, 'hash'), obj.hash, CONFIG_KEYS['pools.NAME.hash']);
    const key = h ? parseHashKey(check, join(path, 'hash.key'), h.key) : undefined;
    let balanceFactor = 0;
    if (h?.balance_factor !== undefined) {
      const f = h.balance_factor;
      if (typeof f !== 'number' || !(f > 1) || f > 100) check.fail(join(path, 'hash.balance_factor'), 'a number above 1 such as 1.25', f);
      else balanceFactor = f;
    }
    if (key) hash = { key, balanceFactor };
  }
  if (algorithm === 'hash' && obj.hash === undefined) check.fail(join(path, 'hash'), 'hash: { key: ... } for algorithm hash', undefined);
  if (algorithm !== undefined && algorithm !== 'hash' && obj.hash !== undefined) check.fail(join(path, 'hash'), 'no hash options unless algorithm is hash', 'hash options');
  let decay = defaultMs('pools.NAME.least_time.decay');
  if (obj.least_time !== undefined) {
    const lt = check.object(join(path, 'least_time'), obj.least_time, CONFIG_KEYS['pools.NAME.least_time']);
    if (lt?.decay !== undefined) decay = check.duration(join(path, 'least_time.decay'), lt.decay) || decay;
  }
  const slowStart = obj.slow_start === undefined ? 0 : (check.duration(join(path, 'slow_start'), obj.slow_start) ?? 0);
  let sticky: PoolConfig['sticky'];
  if (obj.sticky !== undefined) {
    const st = check.object(join(path, 'sticky'), obj.sticky, CONFIG_KEYS['pools.NAME.sticky']);
    const cookie = st ? check.string(join(path, 'sticky.cookie'), st.cookie) : undefined;
    if (cookie !== undefined && !/^[A-Za-z0-9_.-]+$/.test(cookie)) check.fail(join(path, 'sticky.cookie'), 'a cookie name of letters, digits, ".", "-" and "_"', cookie);
    else if (cookie !== undefined) sticky = { cookie };
  }
  const queue = { size: DEFAULTS['pools.NAME.queue.size'] as number, timeout: defaultMs('pools.NAME.queue.timeout') };
  if (obj.queue !== undefined) {
    const q = check.object(join(path, 'queue'), obj.queue, CONFIG_KEYS['pools.NAME.queue']);
    if (q?.size !== undefined) queue.size = check.integer(join(path, 'queue.size'), q.size, 0, 1_000_000) ?? 0;
    if (q?.timeout !== undefined) queue.timeout = check.duration(join(path, 'queue.timeout'), q.timeout) ?? queue.timeout;
  }
  if (!Array.isArray(obj.backends) || obj.backends.length === 0) {
    check.fail(join(path, 'backends'), 'a non-empty list of backends', obj.backends);
    return undefined;
  }
  const backends: BackendConfig[] = [];
  const seen = new Set<string>();
  obj.backends.forEach((item, i) => {
    const backend = parseBackend(check, join(join(path, 'backends'), i), name, item);
    if (!backend) return;
    if (seen.has(backend.id)) {
      check.problems.push(`${join(join(path, 'backends'), i)}: duplicate backend ${backend.origin} in pool ${name}`);
      return;
    }
    seen.add(backend.id);
    backends.push(backend);
  });
  const health = obj.health === undefined ? undefined : parseHealth(check, join(path, 'health'), obj.health);
  const outlier: OutlierConfig = {
    consecutiveFailures: DEFAULTS['pools.NAME.outlier.consecutive_failures'],
    consecutive5xx: DEFAULTS['pools.NAME.outlier.consecutive_5xx'],
    baseEjection: defaultMs('pools.NAME.outlier.base_ejection'),
    maxEjectedShare: DEFAULTS['pools.NAME.outlier.max_ejected_share'],
  };
  if (obj.outlier !== undefined) {
    const o = check.object(join(path, 'outlier'), obj.outlier, CONFIG_KEYS['pools.NAME.outlier']);
    if (o?.consecutive_failures !== undefined) outlier.consecutiveFailures = check.integer(join(path, 'outlier.consecutive_failures'), o.consecutive_failures, 0, 1000) ?? 5;
    if (o?.consecutive_5xx !== undefined) outlier.consecutive5xx = check.integer(join(path, 'outlier.consecutive_5xx'), o.consecutive_5xx, 0, 1000) ?? 0;
    if (o?.base_ejection !== undefined) outlier.baseEjection = check.duration(join(path, 'outlier.base_ejection'), o.base_ejection) || outlier.baseEjection;
    if (o?.max_ejected_share !== undefined) {
      const share = o.max_ejected_share;
      if (typeof share !== 'number' || share < 0 || share > 1) check.fail(join(path, 'outlier.max_ejected_share'), 'a number from 0 to 1', share);
      else outlier.maxEjectedShare = share;
    }
  }
  const retries = { count: DEFAULTS['pools.NAME.retries.count'] as number, budget: DEFAULTS['pools.NAME.retries.budget'] as number };
  if (obj.retries !== undefined) {
    const r = check.object(join(path, 'retries'), obj.retries, CONFIG_KEYS['pools.NAME.retries']);
    if (r?.count !== undefined) retries.count = check.integer(join(path, 'retries.count'), r.count, 0, 10) ?? 2;
    if (r?.budget !== undefined) {
      if (typeof r.budget !== 'number' || r.budget < 0 || r.budget > 1) check.fail(join(path, 'retries.budget'), 'a share of requests from 0 to 1', r.budget);
      else retries.budget = r.budget;
    }
  }
  const drain = {
    timeout: defaultMs('pools.NAME.drain.timeout'),
    window: defaultMs('pools.NAME.drain.window'),
    rate: defaultRate('pools.NAME.drain.rate'),
    code: DEFAULTS['pools.NAME.drain.code'] as number,
  };
  if (obj.drain !== undefined) {
    const d = check.object(join(path, 'drain'), obj.drain, CONFIG_KEYS['pools.NAME.drain']);
    if (d?.timeout !== undefined) drain.timeout = check.duration(join(path, 'drain.timeout'), d.timeout) ?? drain.timeout;
    if (d?.window !== undefined) drain.window = check.duration(join(path, 'drain.window'), d.window) ?? drain.window;
    if (d?.rate !== undefined) drain.rate = parseRate(check, join(path, 'drain.rate'), d.rate) ?? drain.rate;
    if (d?.code !== undefined) {
      if (d.code !== 1001 && d.code !== 1012) check.fail(join(path, 'drain.code'), '1001 or 1012', d.code);
      else drain.code = d.code;
    }
  }
  let rebalance: PoolConfig['rebalance'];
  if (obj.rebalance !== undefined) {
    const r = check.object(join(path, 'rebalance'), obj.rebalance, CONFIG_KEYS['pools.NAME.rebalance']);
    if (r) {
      const maxSkew = r.max_skew ?? DEFAULTS['pools.NAME.rebalance.max_skew'];
      if (typeof maxSkew !== 'number' || !(maxSkew > 1)) check.fail(join(path, 'rebalance.max_skew'), 'a number above 1 such as 1.25', maxSkew);
      const rate = r.rate === undefined ? defaultRate('pools.NAME.rebalance.rate') : parseRate(check, join(path, 'rebalance.rate'), r.rate);
      const order = r.order === undefined ? DEFAULTS['pools.NAME.rebalance.order'] : check.oneOf(join(path, 'rebalance.order'), r.order, ['newest', 'oldest'] as const);
      if (typeof maxSkew === 'number' && maxSkew > 1 && rate && order) rebalance = { maxSkew, rate, order };
    }
  }
  const tls = parseUpstreamTls(check, join(path, 'tls'), obj.tls);
  return algorithm ? { name, algorithm, backends, hash, decay, slowStart, sticky, queue, health, outlier, retries, drain, rebalance, tls } : undefined;
}

export function validateBackend(pool: string, raw: unknown, path = 'backend'): BackendConfig {
  const check = new Checker();
  const backend = parseBackend(check, path, pool, raw);
  if (!backend || check.problems.length > 0) throw new ConfigError(check.problems);
  return backend;
}
