// DNS discovery, run by the primary: each pool's dns and srv names resolved on their interval
// (sooner when their records' TTL is shorter), the addresses found made backends through the
// control plane. A failed resolution keeps the last good set.

import { Resolver } from 'node:dns/promises';
import { discoveredBackend } from '../config/pools.js';
import type { BackendConfig, DiscoverySource, ResolverConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { sourceKey, type ControlPlane } from './controlPlane.js';

/** The shortest time between two resolutions of one name, whatever its TTL. */
const MIN_REFRESH_MS = 1000;
/** Lookups that find nothing without anything going wrong: the name has no record of that type. */
const EMPTY_ANSWERS = new Set(['ENODATA', 'ENOTFOUND']);

/** What the admin API and /metrics show of one source. */
export interface SourceStatus {
  pool: string;
  source: string;
  backends: number;
  resolutions: number;
  failures: number;
  lastError?: string;
}

interface Watch {
  key: string;
  timer?: NodeJS.Timeout;
  stopped: boolean;
}

type Found = { backends: BackendConfig[]; ttl: number } | { error: string };

export class Discovery {
  private readonly watches = new Map<string, Watch>();
  readonly status = new Map<string, SourceStatus>();
  private resolver: Resolver | undefined;
  private resolverKey = '';

  constructor(
    private readonly control: ControlPlane,
    private readonly logger: Logger,
  ) {}

  /** Starts, keeps or stops the watches so that they follow the pools' sources and the resolver settings. */
  sync(): void {
    const settings = this.control.config.resolver;
    const resolverKey = JSON.stringify(settings);
    const renewed = resolverKey !== this.resolverKey;
    if (renewed) {
      this.resolverKey = resolverKey;
      this.resolver = makeResolver(settings);
    }
    const wanted = new Map<string, [string, DiscoverySource]>();
    for (const pool of Object.values(this.control.config.pools)) {
      for (const source of pool.discovery) wanted.set(`${pool.name} ${sourceKey(source)}`, [pool.name, source]);
    }
    for (const [id, watch] of this.watches) {
      const want = wanted.get(id);
      if (want && !renewed && JSON.stringify(want[1]) === watch.key) continue;
      watch.stopped = true;
      clearTimeout(watch.timer);
      this.watches.delete(id);
      if (!want) this.status.delete(id);
    }
    for (const [id, [pool, source]] of wanted) {
      if (this.watches.has(id)) continue;
      const watch: Watch = { key: JSON.stringify(source), stopped: false };
      this.watches.set(id, watch);
      const status = this.status.get(id) ?? { pool, source: `${source.kind} ${source.name}`, backends: 0, resolutions: 0, failures: 0 };
      this.status.set(id, status);
      // How soon to ask again: the interval, or the records' TTL when shorter; a failure is asked
      // again at the pace the last good answer set.
      let next = source.interval;
      const round = async () => {
        const found = await this.resolve(pool, source);
        if (watch.stopped) return;
        status.resolutions++;
        if ('error' in found) {
          status.failures++;
          status.lastError = found.error;
          this.logger.warn({ pool, source: status.source, err: found.error, keeping: status.backends }, 'DNS resolution failed: keeping the backends last found');
        } else {
          status.backends = found.backends.length;
          delete status.lastError;
          this.control.setDiscovered(pool, source, found.backends);
          next = found.ttl < Infinity ? Math.min(source.interval, Math.max(MIN_REFRESH_MS, found.ttl * 1000)) : source.interval;
        }
        if (watch.stopped) return;
        watch.timer = setTimeout(round, next);
        watch.timer.unref();
      };
      // The first resolution at once: a pool of DNS names has no backend before it.
      watch.timer = setTimeout(round, 0);
      watch.timer.unref();
    }
  }

  /** Resolves one source; never rejects. */
  private async resolve(pool: string, source: DiscoverySource): Promise<Found> {
    const resolver = this.resolver!;
    try {
      if (source.kind === 'dns') {
        const found = await addressesOf(resolver, source.name);
        if ('error' in found) return found;
        return { backends: found.addresses.map((address) => discoveredBackend(pool, source, address, source.port, source.weight)), ttl: found.ttl };
      }
      const records = (await resolver.resolveSrv(source.name)).filter((r) => r.name !== '' && r.name !== '.');
      if (records.length === 0) return { error: `${source.name} has no SRV record` };
      // RFC 2782: the targets of the lowest priority are the ones to use.
      const lowest = Math.min(...records.map((r) => r.priority));
      const backends: BackendConfig[] = [];
      let ttl = Infinity;
      for (const record of records.filter((r) => r.priority === lowest)) {
        const found = await addressesOf(resolver, record.name);
        if ('error' in found) return { error: `SRV target ${record.name}: ${found.error}` };
        ttl = Math.min(ttl, found.ttl);
        // An SRV weight of 0 is the smallest share (RFC 2782); fairway's weights go from 1 to 1000.
        const weight = Math.min(1000, Math.max(1, record.weight));
        for (const address of found.addresses) {
          const backend = discoveredBackend(pool, source, address, record.port, weight);
          if (!backends.some((b) => b.id === backend.id)) backends.push(backend);
        }
      }
      return { backends, ttl };
    } catch (err) {
      return { error: describe(err) };
    }
  }

  close(): void {
    for (const watch of this.watches.values()) {
      watch.stopped = true;
      clearTimeout(watch.timer);
    }
    this.watches.clear();
  }
}

function makeResolver(settings: ResolverConfig): Resolver {
  const resolver = new Resolver({ timeout: settings.timeout, tries: 2 });
  if (settings.servers.length > 0) resolver.setServers(settings.servers);
  return resolver;
}

/** A and AAAA records of a name with their shortest TTL, in a stable order. */
async function addressesOf(resolver: Resolver, name: string): Promise<{ addresses: string[]; ttl: number } | { error: string }> {
  const answers = await Promise.allSettled([resolver.resolve4(name, { ttl: true }), resolver.resolve6(name, { ttl: true })]);
  const addresses: string[] = [];
  let ttl = Infinity;
  for (const answer of answers) {
    if (answer.status === 'rejected') {
      // Any failure but "no such record" keeps the last good set: a timeout must not drain backends.
      if (!EMPTY_ANSWERS.has((answer.reason as NodeJS.ErrnoException).code ?? '')) return { error: describe(answer.reason) };
      continue;
    }
    for (const record of answer.value) {
      addresses.push(record.address);
      ttl = Math.min(ttl, record.ttl);
    }
  }
  if (addresses.length === 0) return { error: `${name} has no A or AAAA record` };
  return { addresses: [...new Set(addresses)].sort(), ttl };
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { hostname?: string };
  return e.code ? `${e.code}${e.hostname ? ` for ${e.hostname}` : ''}` : String(e.message ?? err);
}
