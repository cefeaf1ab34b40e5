// Starting and stopping a fairway instance in the primary thread.

import { createServer, type Server } from 'node:net';
import type { Config, TcpListenerConfig } from '../config/types.js';
import { netReusePort } from '../engine/sockets.js';
import { ClientLimits } from '../core/limits/clientLimits.js';
import { SlotRegistry, type SlotPlan } from '../core/state/slotRegistry.js';
import { StateTable } from '../core/state/stateTable.js';
import type { ErrorCode } from '../core/errors.js';
import { loadUws } from '../engine/uws/binding.js';
import { createLogger, prettyFor, type Logger } from '../log.js';
import type { AdminServer } from './adminServer.js';
import { ControlPlane } from './controlPlane.js';
import type { FleetAgent } from './fleet.js';
import { History } from './history.js';
import { Lifecycle } from './lifecycle.js';
import { Supervisor, type RunningEngine } from './supervisor.js';

/** Backend slots in the shared table; later reloads and the admin API add within this. */
const BACKEND_CAPACITY = 1024;
const POOL_CAPACITY = 256;

export class StartupError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface StartOptions {
  logger?: Logger;
  /** Enables the x-fairway-test-fault request header (tests only). */
  testHooks?: boolean;
  /** The config file, for reloads (SIGHUP, POST /api/reload). */
  configPath?: string;
}

export interface Fairway {
  readonly config: Config;
  /** The port actually listened on (useful when the config said port 0). */
  readonly port: number;
  readonly engine: string;
  readonly table: StateTable;
  /** Per-client limits and session counts, shared with the workers. */
  readonly limits: ClientLimits;
  /** Ports of the TCP listeners, in config order. */
  readonly tcpPorts: number[];
  /** Where each backend and pool lives in the table (current: it grows with reloads). */
  readonly plan: SlotPlan;
  readonly supervisor: Supervisor;
  readonly control: ControlPlane;
  /** This instance's part in the fleet, when `fleet` is configured. */
  readonly fleet?: FleetAgent;
  /** The admin listener's port, when one is configured. */
  readonly adminPort?: number;
  /** The HTTP-to-HTTPS redirect listener's port, when one is configured. */
  readonly redirectPort?: number;
  /** Graceful shutdown: stop accepting, close WebSockets with 1001, let HTTP requests finish. */
  stop(grace?: number): Promise<void>;
}

/** How often a start on port 0 is tried again when another process took the port in between. */
const EPHEMERAL_ATTEMPTS = 3;

export async function startFairway(config: Config, options: StartOptions = {}): Promise<Fairway> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(config, options);
    } catch (err) {
      // Port 0 is resolved in the primary, then listened on by the workers: another process can
      // take it in between. A port the user chose is never silently changed.
      const ephemeral = config.listen.port === 0 || config.tls?.redirect?.port === 0 || config.tcp.some((l) => l.listen.port === 0);
      if (!ephemeral || attempt >= EPHEMERAL_ATTEMPTS || !(err instanceof StartupError) || err.code !== 'FAIRWAY_START') throw err;
    }
  }
}

async function startOnce(config: Config, options: StartOptions): Promise<Fairway> {
  const logger = options.logger ?? createLogger(config.log.level, { role: 'primary' }, prettyFor(config.log.format));
  const engine = chooseEngine(config, logger);
  // Without reusePort, node:http listeners cannot share a port between threads: one worker.
  const workers = engine === 'native-free' && !netReusePort() ? 1 : config.workers;
  if (workers !== config.workers) {
    logger.info(
      { engine, workers, configured: config.workers },
      `engine native-free runs one worker thread on Node ${process.versions.node}: its listeners cannot share a port between threads (reusePort needs Node 22.12 or 23.1; engine: uws runs every worker here but drops some valid requests, docs/engines.md)`,
    );
  }
  const held: Server[] = [];
  let port: number;
  let redirectPort: number | undefined;
  const tcp: TcpListenerConfig[] = [];
  const redirect = config.tls?.redirect;
  try {
    port = await preflightPort(config.listen.host, config.listen.port, held);
    redirectPort = redirect ? await preflightPort(redirect.host, redirect.port, held) : undefined;
    for (const listener of config.tcp) tcp.push({ ...listener, listen: { host: listener.listen.host, port: await preflightPort(listener.listen.host, listener.listen.port, held) } });
  } catch (err) {
    await releasePorts(held);
    throw err;
  }
  const listenConfig: Config = {
    ...config,
    workers,
    tcp,
    listen: { host: config.listen.host, port },
    tls: config.tls && { ...config.tls, redirect: redirect && { host: redirect.host, port: redirectPort! } },
  };

  const table = StateTable.create({ backends: BACKEND_CAPACITY, workers, pools: POOL_CAPACITY });
  const limits = ClientLimits.create(workers);
  const registry = new SlotRegistry(table);
  const plan = registry.assign(listenConfig);
  const testHooks = options.testHooks ?? process.env.FAIRWAY_TEST_HOOKS === '1';
  let control: ControlPlane | undefined;
  // A worker started later (a replacement) gets the config as it is then, not as it was.
  const supervisor = new Supervisor(
    engine,
    workers,
    (worker, controlPort) => ({ worker, buffer: table.buffer, limitsBuffer: limits.buffer, config: control?.config ?? listenConfig, plan: control?.plan ?? plan, port: controlPort, testHooks, prettyLogs: prettyFor(config.log.format) }),
    table,
    limits,
    logger,
  );
  control = new ControlPlane(listenConfig, plan, table, registry, supervisor, logger, options.configPath, config);
  // The fleet (ioredis) and the admin listener (prom-client) are loaded only when configured:
  // start-up does not pay for what it does not run.
  const fleet = config.fleet && new (await import('./fleet.js')).FleetAgent(config.fleet, table, control, registry, supervisor, logger);
  const caches = control.caches;
  supervisor.onMessage = (worker, message) => caches.onWorkerMessage(worker, message) || fleet?.onWorkerMessage(worker, message);
  supervisor.onDied = (worker) => {
    caches.workerDied(worker);
    fleet?.onWorkerDied(worker);
  };
  try {
    // Workers set up; the ports are let go of when the first is ready, and each listens once it is.
    await supervisor.start(() => releasePorts(held));
  } catch (err) {
    await releasePorts(held);
    await supervisor.stop(0);
    await fleet?.stop();
    throw new StartupError('FAIRWAY_START', (err as Error).message);
  }
  fleet?.start();
  // The last 15 minutes, for the dashboard; with a fleet, also what this instance tells the others
  // of its last second, so it runs for a fleet without an admin listener too.
  const history = config.admin || fleet ? new History(control, table, fleet) : undefined;
  supervisor.onRestart = (worker) => control!.events.add('worker-restart', `worker ${worker} died and was replaced`);
  const lifecycle = new Lifecycle(control, table, supervisor, logger);
  let admin: AdminServer | undefined;
  if (config.admin) {
    try {
      const { startAdminServer } = await import('./adminServer.js');
      admin = await startAdminServer(config.admin, control, table, limits, history!, () => supervisor.restarts, logger, fleet);
    } catch (err) {
      history?.close();
      lifecycle.close();
      await supervisor.stop(0);
      await fleet?.stop();
      throw new StartupError('FAIRWAY_LISTEN', `cannot listen for the admin API on ${config.admin.listen.host}:${config.admin.listen.port}: ${(err as Error).message}`);
    }
  }
  logger.info({ listen: `${config.listen.host}:${port}`, workers, engine, pools: Object.keys(config.pools) }, 'fairway is listening');
  for (const listener of tcp) {
    const where = { tcp: `${listener.listen.host}:${listener.listen.port}`, pool: listener.pool };
    if (netReusePort()) logger.info({ ...where, threads: workers }, 'TCP listener accepting on every worker thread');
    else logger.info({ ...where, threads: 1 }, `TCP listener accepting on one worker thread: net listeners cannot share a port on Node ${process.versions.node} (reusePort needs 22.12 or 23.1)`);
  }

  let stopping: Promise<void> | undefined;
  const plane = control;
  return {
    config: listenConfig,
    port,
    engine,
    table,
    limits,
    get plan() {
      return plane.plan;
    },
    supervisor,
    control: plane,
    fleet,
    adminPort: admin?.port,
    tcpPorts: tcp.map((listener) => listener.listen.port),
    redirectPort,
    stop(grace = config.shutdown.grace) {
      stopping ??= (async () => {
        plane.close();
        lifecycle.close();
        history?.close();
        await admin?.close();
        await supervisor.stop(grace);
        await fleet?.stop();
        logger.info('fairway stopped');
      })();
      return stopping;
    },
  };
}

/**
 * native-free unless another engine is asked for: it is the engine that serves every valid
 * HTTP/1.x request (uWS 20.30 drops some, docs/engines.md). `uws` and `auto` (uws when a build
 * loads, else native-free) trade that for speed. The log says which runs and why.
 */
function chooseEngine(config: Config, logger: Logger): RunningEngine {
  if (config.engine === 'native-free') {
    logger.info({ engine: 'native-free' }, 'engine native-free: node:http, node:https and ws');
    return 'native-free';
  }
  const binding = loadUws();
  if (binding.uws) {
    logger.info({ engine: 'uws', binding: binding.name }, `engine uws: loaded ${binding.name}`);
    return 'uws';
  }
  if (config.engine === 'uws') {
    throw new StartupError('FAIRWAY_ENGINE', `engine uws was asked for, but no uWebSockets.js build loads on this host (${binding.reasons.join('; ')})`);
  }
  logger.warn({ engine: 'native-free', reasons: binding.reasons }, `engine native-free: no uWebSockets.js build loads on this host (${binding.reasons.join('; ')})`);
  return 'native-free';
}

/**
 * Workers listen with SO_REUSEPORT, which would let them share the port silently with a stray
 * process; an exclusive listen here first fails if anything holds it. Also resolves port 0 to a
 * free port, so that every worker listens on the same one.
 */
function preflightPort(host: string, port: number, held: Server[]): Promise<number> {
  return new Promise((resolve, reject) => {
    // A client that connects while the port is held is cut at once: left open, its connection
    // would keep the probe's close() (and so the workers' listen) waiting for as long as it stays.
    const probe = createServer((socket) => socket.destroy());
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(new StartupError('FAIRWAY_LISTEN', `cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the address is already in use' : err.message}`)),
    );
    probe.listen({ host, port, exclusive: true }, () => {
      // Held until the workers are ready to listen, so that nothing else takes the port meanwhile.
      held.push(probe);
      resolve((probe.address() as { port: number }).port);
    });
  });
}

/** Lets go of the ports held by preflightPort. */
async function releasePorts(held: Server[]): Promise<void> {
  const probes = held.splice(0);
  await Promise.all(probes.map((probe) => new Promise((resolve) => probe.close(resolve))));
}
