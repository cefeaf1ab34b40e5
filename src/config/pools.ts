// Parsing of `pools.NAME`: backends, algorithm options, health, outliers, retries, drain, rebalance, upstream TLS.

import { readFileSync } from 'node:fs';
import { ALGORITHMS, type AgentConfig, type BackendConfig, type BodyCondition, type DiscoverySource, type HashKeySource, type HealthConfig, type OutlierConfig, type PoolConfig, type UpstreamTlsConfig } from './types.js';
import { Checker, ConfigError, join, parseRate, readableFile } from './checker.js';
import { CONFIG_KEYS } from './keys.js';
import { DEFAULTS, defaultMs, defaultRate } from './defaults.js';

/** A host name as DNS writes it: labels of letters, digits, "-" and "_" (SRV), a final dot allowed. */
const DNS_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** `{ dns: NAME, port, interval }` or `{ srv: NAME, interval }`: a name that stands for many backends. */
function parseDiscovery(check: Checker, path: string, obj: Record<string, unknown>): DiscoverySource | undefined {
  const kind = obj.dns !== undefined ? 'dns' : 'srv';
  const before = check.problems.length;
  if (obj.dns !== undefined && obj.srv !== undefined) return check.fail(path, 'one of dns or srv', 'both');
  if (obj.url !== undefined) return check.fail(join(path, 'url'), `no url beside ${kind} (the addresses come from DNS)`, obj.url);
  if (obj.name !== undefined) return check.fail(join(path, 'name'), `no name beside ${kind}: each address found gets its own`, obj.name);
  const name = check.string(join(path, kind), obj[kind]);
  if (name !== undefined && !DNS_NAME.test(name)) check.fail(join(path, kind), 'a DNS name such as chat.internal', name);
  let port = 0;
  if (kind === 'dns') port = check.integer(join(path, 'port'), obj.port, 1, 65535) ?? 0;
  else if (obj.port !== undefined) check.fail(join(path, 'port'), 'no port beside srv (SRV records carry the ports)', obj.port);
  let interval = defaultMs('pools.NAME.backends[].interval');
  if (obj.interval !== undefined) {
    const ms = check.duration(join(path, 'interval'), obj.interval);
    if (ms !== undefined && ms < 1000) check.fail(join(path, 'interval'), 'at least "1s"', obj.interval);
    else if (ms !== undefined) interval = ms;
  }
  let weight = 1;
  if (obj.weight !== undefined) {
    if (kind === 'srv') check.fail(join(path, 'weight'), 'no weight beside srv (SRV records carry the weights)', obj.weight);
    else weight = check.integer(join(path, 'weight'), obj.weight, 1, 1000) ?? 1;
  }
  const maxConns = obj.max_conns === undefined ? 0 : (check.integer(join(path, 'max_conns'), obj.max_conns, 1, 10_000_000) ?? 0);
  if (check.problems.length > before || name === undefined) return undefined;
  return { kind, name: name.replace(/\.$/, '').toLowerCase(), port, interval, weight, maxConns };
}

/**
 * A backend found by a discovery source: its identity is the pool, the name it came from, and its
 * address and port, so its counters carry over from one resolution to the next.
 */
export function discoveredBackend(pool: string, source: DiscoverySource, address: string, port: number, weight: number): BackendConfig {
  const host = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  const id = `${pool}/${source.name}/${host}`;
  return { id, name: derivedName(id), pool, origin: `http://${host}`, tls: false, host: address, port, weight, maxConns: source.maxConns, source: `${source.kind} ${source.name}` };
}

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
    degradedWeight: DEFAULTS['pools.NAME.health.degraded_weight'],
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
  if (obj.expect_body !== undefined) {
    const source = check.string(`${path}.expect_body`, obj.expect_body);
    try {
      if (source !== undefined) new RegExp(source);
      health.expectBody = source;
    } catch (err) {
      check.fail(`${path}.expect_body`, `a regular expression (${(err as Error).message})`, source);
    }
  }
  if (obj.json !== undefined) {
    const json = check.object(`${path}.json`, obj.json, CONFIG_KEYS['pools.NAME.health.json']);
    if (json) health.json = { unhealthy: parseConditions(check, `${path}.json.unhealthy`, json.unhealthy), degraded: parseConditions(check, `${path}.json.degraded`, json.degraded) };
  }
  if (obj.degraded_weight !== undefined) {
    const share = obj.degraded_weight;
    if (typeof share !== 'number' || !(share > 0) || share > 1) check.fail(`${path}.degraded_weight`, 'a share of the weight above 0 and at most 1, such as 0.5', share);
    else health.degradedWeight = share;
  }
  if ((obj.expect_body !== undefined || obj.json !== undefined) && health.type !== 'http') {
    check.fail(`${path}.type`, 'http for expect_body and json (they read the response body)', health.type);
  }
  if (obj.agent !== undefined) health.agent = parseAgent(check, `${path}.agent`, obj.agent);
  return health;
}

/** `{ field: "> 90", other: degraded }`: a comparison with a number, or a value the field must equal. */
function parseConditions(check: Checker, path: string, raw: unknown): BodyCondition[] {
  if (raw === undefined) return [];
  const obj = check.mapping(path, raw);
  if (!obj) return [];
  const conditions: BodyCondition[] = [];
  for (const [field, rule] of Object.entries(obj)) {
    const at = join(path, field);
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(field)) {
      check.fail(at, 'a field name or dotted path such as cpu_usage or load.cpu', field);
      continue;
    }
    if (typeof rule === 'number' || typeof rule === 'boolean') {
      conditions.push({ field, op: '==', value: rule });
      continue;
    }
    if (typeof rule !== 'string') {
      check.fail(at, 'a comparison such as "> 90", or a value the field must equal', rule);
      continue;
    }
    const match = /^\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$/.exec(rule);
    if (!match) {
      conditions.push({ field, op: '==', value: rule });
      continue;
    }
    const op = match[1] as BodyCondition['op'];
    const number = Number(match[2]);
    if (op === '==' || op === '!=') conditions.push({ field, op, value: Number.isFinite(number) && match[2] !== '' ? number : match[2] });
    else if (!Number.isFinite(number)) check.fail(at, `a number after ${op}, such as "${op} 90"`, rule);
    else conditions.push({ field, op, value: number });
  }
  return conditions;
}

function parseAgent(check: Checker, path: string, raw: unknown): AgentConfig | undefined {
  const obj = check.object(path, raw, CONFIG_KEYS['pools.NAME.health.agent']);
  if (!obj) return undefined;
  const port = check.integer(join(path, 'port'), obj.port, 1, 65535);
  const interval = obj.interval === undefined ? defaultMs('pools.NAME.health.agent.interval') : check.duration(join(path, 'interval'), obj.interval);
  const timeout = obj.timeout === undefined ? defaultMs('pools.NAME.health.agent.timeout') : check.duration(join(path, 'timeout'), obj.timeout);
  const send = obj.send === undefined ? '' : check.string(join(path, 'send'), obj.send);
  if (interval !== undefined && interval < 100) return check.fail(join(path, 'interval'), 'at least "100ms"', obj.interval);
  if (timeout !== undefined && timeout <= 0) return check.fail(join(path, 'timeout'), 'a duration above zero', obj.timeout);
  if (port === undefined || interval === undefined || timeout === undefined || send === undefined) return undefined;
  return { port, interval, timeout, send };
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
  const discovery: DiscoverySource[] = [];
  const seen = new Set<string>();
  obj.backends.forEach((item, i) => {
    const at = join(join(path, 'backends'), i);
    if (item !== null && typeof item === 'object' && !Array.isArray(item) && ('dns' in item || 'srv' in item)) {
      const source = parseDiscovery(check, at, check.object(at, item, CONFIG_KEYS['pools.NAME.backends[]'])!);
      if (!source) return;
      const key = `${source.kind} ${source.name}:${source.port}`;
      if (seen.has(key)) check.problems.push(`${at}: ${source.kind} ${source.name} is listed twice in pool ${name}`);
      else discovery.push(source);
      seen.add(key);
      return;
    }
    if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
      for (const key of ['port', 'interval'] as const) if (key in item) check.fail(join(at, key), `no ${key} beside url (it is for dns and srv entries)`, (item as Record<string, unknown>)[key]);
    }
    const backend = parseBackend(check, at, name, item);
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
  return algorithm ? { name, algorithm, backends, discovery, hash, decay, slowStart, sticky, queue, health, outlier, retries, drain, rebalance, tls } : undefined;
}

export function validateBackend(pool: string, raw: unknown, path = 'backend'): BackendConfig {
  const check = new Checker();
  const backend = parseBackend(check, path, pool, raw);
  if (!backend || check.problems.length > 0) throw new ConfigError(check.problems);
  return backend;
}
