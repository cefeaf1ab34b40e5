// Prometheus exposition of the shared counters, read straight from shared memory at each scrape.

import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ClientLimits } from '../core/limits/clientLimits.js';
import { FULL_SHARE } from '../core/state/slotRegistry.js';
import { BACKEND_UP, FAULT_CODES, LATENCY_BUCKETS, SESSION_BUCKETS, type StateTable } from '../core/state/stateTable.js';
import type { ControlPlane } from './controlPlane.js';
import type { FleetAgent } from './fleet.js';

/** Process metrics (CPU, memory, event loop) of the whole process: workers are its threads. */
const processRegistry = new Registry();
collectDefaultMetrics({ register: processRegistry });

/** The fleet's view: whether this instance is degraded, who is alive, each instance's counts. */
function fleetFamilies(fleet: FleetAgent, family: (name: string, type: Family['type'], help: string) => Family): Family[] {
  const view = fleet.snapshot();
  const degraded = family('fairway_fleet_degraded', 'gauge', 'Whether this instance picks from local counts because Redis is not answering (1) or shares the fleet view (0).');
  degraded.lines.push(`fairway_fleet_degraded{instance="${label(view.name)}"} ${view.degraded ? 1 : 0}`);
  const degradations = family('fairway_fleet_degradations_total', 'counter', 'Times this instance lost Redis and fell back to local picks.');
  degradations.lines.push(`fairway_fleet_degradations_total{instance="${label(view.name)}"} ${fleet.degradations}`);
  const instances = family('fairway_fleet_instances', 'gauge', 'Live instances of the fleet, this one included, as of the last sync.');
  instances.lines.push(`fairway_fleet_instances ${view.instances.length}`);
  const active = family('fairway_fleet_backend_active', 'gauge', 'Sessions plus in-flight requests each live instance holds on the backend, as of the last sync.');
  const sessions = family('fairway_fleet_backend_sessions', 'gauge', 'WebSocket and TCP sessions on the backend over the whole fleet (the count exact session picks use).');
  for (const backend of view.backends) {
    for (const [instance, count] of Object.entries(backend.instances)) active.lines.push(`fairway_fleet_backend_active{backend="${label(backend.id)}",instance="${label(instance)}"} ${count}`);
    sessions.lines.push(`fairway_fleet_backend_sessions{backend="${label(backend.id)}"} ${backend.sessions}`);
  }
  return [degraded, degradations, instances, active, sessions];
}

function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  lines: string[];
}

/** A histogram's lines from per-bucket counts (not cumulative; one bucket past the bounds) and its sum. */
function histogram(into: Family, labels: string, bounds: readonly number[], bucket: (k: number) => bigint, sum: number): void {
  let cumulative = 0n;
  for (let k = 0; k <= bounds.length; k++) {
    cumulative += bucket(k);
    into.lines.push(`${into.name}_bucket{${labels},le="${k < bounds.length ? bounds[k] : '+Inf'}"} ${cumulative}`);
  }
  into.lines.push(`${into.name}_sum{${labels}} ${sum}`);
  into.lines.push(`${into.name}_count{${labels}} ${cumulative}`);
}

export async function renderMetrics(control: ControlPlane, table: StateTable, limits: ClientLimits, workerRestarts: number, fleet?: FleetAgent): Promise<string> {
  const { config, plan } = control;
  const family = (name: string, type: Family['type'], help: string): Family => ({ name, help, type, lines: [] });
  const active = family('fairway_backend_active', 'gauge', 'Open WebSocket sessions plus in-flight HTTP requests on the backend, across all workers.');
  const up = family('fairway_backend_up', 'gauge', 'Whether the backend takes new sessions (1) or not (0: down, draining, ejected).');
  const weight = family('fairway_backend_weight', 'gauge', 'The weight the pickers use: the configured (or SRV) weight times the share an agent check or a degraded health check leaves it.');
  const requests = family('fairway_requests_total', 'counter', 'Responses by status class, including those fairway made itself for the backend.');
  const failures = family('fairway_upstream_failures_total', 'counter', 'Requests and sessions that failed on the backend (refused, reset, timed out).');
  const sessions = family('fairway_websocket_sessions_total', 'counter', 'WebSocket sessions opened to the backend.');
  const duration = family('fairway_upstream_duration_seconds', 'histogram', 'Time from sending a request to the end of the backend response (HTTP) or to the backend handshake (WebSocket).');
  const sessionDuration = family('fairway_session_duration_seconds', 'histogram', 'How long WebSocket and TCP sessions lasted on the backend, counted when they end.');
  const queued = family('fairway_queued_requests', 'gauge', 'Requests waiting for a backend under max_conns.');
  const retries = family('fairway_retries_total', 'counter', 'Requests and upgrades retried on another backend after failing on this one.');
  const ejections = family('fairway_ejections_total', 'counter', 'Times the backend was ejected by passive health checks.');
  const sheds = family('fairway_sheds_total', 'counter', 'WebSocket sessions closed on the backend by active rebalancing.');
  for (const pool of Object.values(config.pools)) {
    queued.lines.push(`fairway_queued_requests{pool="${label(pool.name)}"} ${table.queued(plan.poolSlots[pool.name])}`);
    for (const backend of pool.backends) {
      const slot = plan.backendSlots[backend.id];
      const labels = `pool="${label(pool.name)}",backend="${label(`${backend.host}:${backend.port}`)}"`;
      active.lines.push(`fairway_backend_active{${labels}} ${table.active(slot)}`);
      up.lines.push(`fairway_backend_up{${labels}} ${table.state(slot) === BACKEND_UP ? 1 : 0}`);
      weight.lines.push(`fairway_backend_weight{${labels}} ${table.weight(slot) / FULL_SHARE}`);
      for (let klass = 1; klass <= 5; klass++) requests.lines.push(`fairway_requests_total{${labels},code="${klass}xx"} ${table.statusCount(slot, klass)}`);
      failures.lines.push(`fairway_upstream_failures_total{${labels}} ${table.failures(slot)}`);
      sessions.lines.push(`fairway_websocket_sessions_total{${labels}} ${table.webSockets(slot)}`);
      retries.lines.push(`fairway_retries_total{${labels}} ${table.retries(slot)}`);
      ejections.lines.push(`fairway_ejections_total{${labels}} ${table.ejections(slot)}`);
      sheds.lines.push(`fairway_sheds_total{${labels}} ${table.sheds(slot)}`);
      histogram(duration, labels, LATENCY_BUCKETS, (k) => table.latencyBucket(slot, k), Number(table.latencySumMicros(slot)) / 1e6);
      histogram(sessionDuration, labels, SESSION_BUCKETS, (k) => table.sessionBucket(slot, k), Number(table.sessionSumMs(slot)) / 1000);
    }
  }
  const restarts = family('fairway_worker_restarts_total', 'counter', 'Worker threads that died and were replaced.');
  restarts.lines.push(`fairway_worker_restarts_total ${workerRestarts}`);
  const limited = family('fairway_rate_limited_total', 'counter', 'Requests and upgrades refused with 429 by per-client limits, by reason.');
  for (const [reason, count] of Object.entries(limits.refusals())) limited.lines.push(`fairway_rate_limited_total{reason="${reason}"} ${count}`);
  const faults = family('fairway_errors_total', 'counter', 'Answers fairway made itself with an x-fairway-error code (refusals, and failures toward backends), by code.');
  FAULT_CODES.forEach((code, index) => faults.lines.push(`fairway_errors_total{code="${code}"} ${table.faults(index)}`));
  const workerRequests = family('fairway_worker_requests_total', 'counter', 'HTTP requests and WebSocket upgrades each worker thread read: how evenly the kernel spreads connections.');
  const workerSessions = family('fairway_worker_active', 'gauge', 'Open sessions and in-flight requests each worker thread holds, over every backend.');
  for (let worker = 0; worker < config.workers; worker++) {
    workerRequests.lines.push(`fairway_worker_requests_total{worker="${worker}"} ${table.workerRequests(worker)}`);
    workerSessions.lines.push(`fairway_worker_active{worker="${worker}"} ${table.heldByWorker(worker)}`);
  }
  const resolutions = family('fairway_dns_resolutions_total', 'counter', 'Resolutions of each discovery name, by result; a failed one keeps the backends last found.');
  const found = family('fairway_dns_backends', 'gauge', 'Backends the discovery name stood for at its last good resolution.');
  for (const source of control.sources()) {
    const labels = `pool="${label(source.pool)}",name="${label(source.source)}"`;
    resolutions.lines.push(`fairway_dns_resolutions_total{${labels},result="ok"} ${source.resolutions - source.failures}`);
    resolutions.lines.push(`fairway_dns_resolutions_total{${labels},result="failed"} ${source.failures}`);
    found.lines.push(`fairway_dns_backends{${labels}} ${source.backends}`);
  }
  const cacheRequests = family('fairway_cache_requests_total', 'counter', 'Requests on caching routes by what the cache did: hit, miss, stale (served stale), revalidated (a 304 refreshed it), bypass.');
  const cacheBytes = family('fairway_cache_bytes', 'gauge', 'Bytes the route\'s stored responses take, bodies and heads.');
  const cacheEntries = family('fairway_cache_entries', 'gauge', 'Keys the route\'s cache holds (each with its Vary variants).');
  const cacheEvictions = family('fairway_cache_evictions_total', 'counter', 'Keys evicted to keep the route\'s cache within its size.');
  for (const cache of control.caches.stats()) {
    const labels = `route="${cache.route}"`;
    for (const [result, count] of Object.entries(cache.results)) cacheRequests.lines.push(`fairway_cache_requests_total{${labels},result="${result}"} ${count}`);
    cacheBytes.lines.push(`fairway_cache_bytes{${labels}} ${cache.bytes}`);
    cacheEntries.lines.push(`fairway_cache_entries{${labels}} ${cache.entries}`);
    cacheEvictions.lines.push(`fairway_cache_evictions_total{${labels}} ${cache.evictions}`);
  }
  const families = [active, up, weight, requests, failures, sessions, retries, ejections, sheds, duration, sessionDuration, queued, restarts, limited, faults, workerRequests, workerSessions, resolutions, found];
  if (control.caches.enabled) families.push(cacheRequests, cacheBytes, cacheEntries, cacheEvictions);
  if (fleet) families.push(...fleetFamilies(fleet, family));
  const text = families.map((f) => `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n${f.lines.join('\n')}\n`).join('');
  return text + (await processRegistry.metrics());
}
