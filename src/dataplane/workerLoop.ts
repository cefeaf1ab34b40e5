// The life of a worker thread, the same for every engine: its serve task (set up, wait for the
// word to listen, listen or fail), then keepalive rounds, messages from the primary, closing on
// an uncaught exception, and graceful shutdown.

import type { MessagePort } from 'node:worker_threads';
import type { Config, TcpListenerConfig } from '../config/types.js';
import type { ErrorCode } from '../core/errors.js';
import { ClientLimits } from '../core/limits/clientLimits.js';
import { StateTable } from '../core/state/stateTable.js';
import { createLogger, type Logger } from '../log.js';
import type { PrimaryMessage, ServeResult, ServeTask, WorkerMessage } from '../engine/messages.js';
import { netReusePort } from '../engine/sockets.js';
import { TcpListener } from '../engine/tcp/tcpListener.js';
import { startProfile } from './cpuProfile.js';
import { holdUntilAnotherAnswers } from './testFaults.js';
import { FleetSessions } from './fleetSessions.js';
import { CacheChannel } from './responseCache.js';
import { closeSpread, shed } from './sessionControl.js';
import { WorkerContext } from './workerContext.js';

const CLOSE_GOING_AWAY = 1001;
const CLOSE_INTERNAL_ERROR = 1011;

/** An engine as a worker's serve task drives it; made once the worker's context is set up. */
export interface Engine {
  /** Opens the engine's listeners (after the primary's word); rejects when one cannot listen. */
  listen(): Promise<EngineSockets>;
  /** Closes whatever the engine set up, when the worker stops or fails before it serves. */
  discard(): void;
}

/** An engine that cannot run in this worker at all (its native binding does not load, say). */
export class EngineUnavailable extends Error {
  readonly code: ErrorCode = 'FAIRWAY_ENGINE';
}

/**
 * The long-lived piscina task of one worker thread, for any engine: sets up the worker's view of
 * the shared table, makes the engine, waits for the primary's word to listen, listens (or tells
 * the primary why not), then serves until shutdown.
 */
export async function serveWorker(task: ServeTask, makeEngine: (context: WorkerContext, logger: Logger) => Engine): Promise<ServeResult> {
  const { worker, config } = task;
  // Listening to the primary from the first moment: nothing it sends while this sets up is lost.
  const channel = new PrimaryChannel(task.port);
  const logger = createLogger(config.log.level, { worker }, task.prettyLogs);
  const profile = await startProfile(process.env.FAIRWAY_CPU_PROFILE, worker);
  const table = StateTable.attach(task.buffer);
  const limits = ClientLimits.attach(task.limitsBuffer, config.workers);
  const context = new WorkerContext(worker, table, limits, config, task.plan, logger, task.testHooks);
  if (config.fleet) context.fleet = new FleetSessions(table, (message) => channel.post(message), config.fleet.exactSessions);
  // Made whether or not a route caches now: a reload may add one.
  context.cache = new CacheChannel((message) => channel.post(message));
  let engine: Engine;
  try {
    engine = makeEngine(context, logger);
  } catch (err) {
    channel.post({ type: 'failed', code: err instanceof EngineUnavailable ? err.code : 'FAIRWAY_START', message: (err as Error).message });
    context.closeUpstreams();
    throw err;
  }
  if (task.testHooks && process.env.FAIRWAY_TEST_HOLD_WORKER === String(worker)) await holdUntilAnotherAnswers(config.listen.host, config.listen.port, logger);
  if (!(await channel.readyToListen())) {
    // Stopped while starting (a replacement the primary no longer wants).
    engine.discard();
    context.closeUpstreams();
    channel.close();
    return { worker };
  }
  let sockets: EngineSockets;
  let tcpListeners: TcpListener[];
  try {
    sockets = await engine.listen();
    tcpListeners = await startTcpListeners(context, config.tcp);
  } catch (err) {
    const message = `worker ${worker} could not listen: ${(err as Error).message}`;
    channel.post({ type: 'failed', code: 'FAIRWAY_LISTEN', message });
    engine.discard();
    context.closeUpstreams();
    throw new Error(message);
  }
  channel.post({ type: 'listening' });
  await runWorker(channel, context, logger, sockets, tcpListeners, profile);
  return { worker };
}

/** What an engine's sockets do at the points of the worker's life the loop decides. */
export interface EngineSockets {
  /** Stops accepting new connections (HTTP listeners, redirect listener). */
  stopListening(): void;
  /** A new config was applied (reload): certificates may have changed. */
  configApplied(config: Config): void;
  /** Extra keepalive work of the engine, every ping interval (client pings, where not built in). */
  keepalive?(): void;
  /** Ends every connection still open: the last step of shutdown, or of a crash. */
  closeConnections(): void;
}

/**
 * The worker's end of the control channel. It listens from the start, so that no message is lost
 * while the engine sets up: messages are queued until the worker loop takes them.
 */
export class PrimaryChannel {
  private readonly queued: PrimaryMessage[] = [];
  private handler: ((message: PrimaryMessage) => void) | null = null;
  private listenNow: (() => void) | null = null;

  constructor(private readonly port: MessagePort) {
    port.on('message', (message: PrimaryMessage) => this.receive(message));
  }

  private receive(message: PrimaryMessage): void {
    if (message.type === 'listen') {
      this.listenNow?.();
    } else if (this.handler) {
      this.handler(message);
    } else {
      this.queued.push(message);
      // Asked to stop while still starting: no point waiting for the word to listen.
      if (message.type === 'shutdown') this.listenNow?.();
    }
  }

  post(message: WorkerMessage): void {
    this.port.postMessage(message);
  }

  /**
   * Tells the primary this worker is set up and waits for its word to listen: the primary holds
   * the ports until the first worker is ready, so that no other process can take them in between.
   * False when a shutdown came first: the worker then stops without listening.
   */
  readyToListen(): Promise<boolean> {
    return new Promise((resolve) => {
      this.listenNow = () => {
        this.listenNow = null;
        resolve(!this.queued.some((message) => message.type === 'shutdown'));
      };
      this.post({ type: 'ready' });
    });
  }

  /** From now on messages go to `handler`, those queued first. */
  handle(handler: (message: PrimaryMessage) => void): void {
    this.handler = handler;
    for (const message of this.queued.splice(0)) handler(message);
  }

  close(): void {
    this.port.close();
  }
}

/** TCP listeners of this worker: all of them where net listeners share a port, else on worker 0 only. */
export async function startTcpListeners(context: WorkerContext, listeners: TcpListenerConfig[]): Promise<TcpListener[]> {
  const started = context.worker === 0 || netReusePort() ? listeners.map((listener) => new TcpListener(context, listener)) : [];
  await Promise.all(started.map((listener) => listener.listen(netReusePort())));
  return started;
}

const REQUEST_COUNT_PUBLISH_MS = 250;

/** Runs until the primary asks for shutdown, then shuts down gracefully and resolves. */
export async function runWorker(
  channel: PrimaryChannel,
  context: WorkerContext,
  logger: Logger,
  sockets: EngineSockets,
  tcpListeners: TcpListener[],
  profile: (() => Promise<void>) | undefined,
): Promise<void> {
  const { config } = context;
  const keepalive =
    config.websocket.pingInterval > 0
      ? setInterval(() => {
          for (const session of context.webSockets) session.keepalive();
          sockets.keepalive?.();
        }, config.websocket.pingInterval)
      : undefined;

  // This worker's request count, published a few times a second instead of with an atomic per
  // request; a replacement worker goes on from what the one before it published.
  context.requestsRead = Number(context.table.workerRequests(context.worker));
  const publish = () => context.table.storeWorkerRequests(context.worker, context.requestsRead);
  const publisher = setInterval(publish, REQUEST_COUNT_PUBLISH_MS);
  publisher.unref();

  let closed = false;
  const closeAll = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    context.shuttingDown = true;
    clearInterval(keepalive);
    clearInterval(publisher);
    publish();
    sockets.stopListening();
    for (const listener of tcpListeners) listener.stopAccepting();
    for (const session of [...context.webSockets]) session.shutdown(code, reason);
    context.closeQueues();
  };

  // uWS aborts the whole process if a worker exits with sockets open, so an uncaught exception
  // closes everything first; the primary then replaces the worker and subtracts its sessions.
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception in worker: closing its connections and exiting');
    try {
      closeAll(CLOSE_INTERNAL_ERROR, 'load balancer worker failed');
      sockets.closeConnections();
    } finally {
      logger.flush();
      process.exit(1);
    }
  });

  const shutdown = async (grace: number): Promise<void> => {
    closeAll(CLOSE_GOING_AWAY, 'server shutting down');
    const deadline = Date.now() + grace;
    // HTTP requests in flight and TCP connections may finish within the grace period, and
    // WebSocket sessions told to close (1001) may finish their closing handshakes.
    const open = () => context.inFlightHttp > 0 || context.tcpSessions.size > 0 || context.webSockets.size > 0;
    while (open() && Date.now() < deadline) await delay(25);
    if (open()) {
      logger.warn(
        { inFlight: context.inFlightHttp, tcp: context.tcpSessions.size, webSockets: context.webSockets.size },
        'grace period over: cutting requests and connections still open',
      );
    }
    for (const session of [...context.tcpSessions]) session.shutdown(CLOSE_GOING_AWAY, 'server shutting down');
    sockets.closeConnections();
    context.closeUpstreams();
    context.cache?.close();
    await profile?.();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  };

  await new Promise<void>((resolve) => {
    channel.handle((message) => {
      if (message.type === 'config') {
        // Validated in the primary; the listen addresses and worker count do not change here.
        context.apply(message.config, message.plan);
        if (!closed) sockets.configApplied(message.config);
        logger.debug({ pools: Object.keys(message.config.pools) }, 'config applied');
      } else if (message.type === 'close-sessions') closeSpread(context, message);
      else if (message.type === 'shed') shed(context, message.slot, message.count, message.order);
      else if (message.type === 'fleet-picked') context.fleet?.answer(message.id, message.slot);
      else if (message.type === 'fleet-limited') context.fleet?.limited(message.id, message.verdict);
      else if (message.type === 'cache-answer') context.cache?.answer(message.id, message.answer);
      else if (message.type === 'shutdown') void shutdown(message.grace).then(resolve);
    });
  });
  channel.close();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
