// The long-lived piscina task of one worker thread: a uWS App on the shared port until shutdown.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Config } from '../../config/schema.js';
import { FAULTS } from '../../core/errors.js';
import type { SlotPlan } from '../../core/state/slotRegistry.js';
import { StateTable } from '../../core/state/stateTable.js';
import { ClientLimits } from '../../core/limits/clientLimits.js';
import { createLogger } from '../../log.js';
import type { PrimaryMessage, ServeResult, ServeTask, WorkerMessage } from '../messages.js';
import { loadUws, type UwsModule } from './binding.js';
import { handleHttp, writeFault } from './httpProxy.js';
import { WorkerContext } from '../worker/workerContext.js';
import { closeSpread, shed, startProfile } from '../worker/sessionControl.js';
import { netReusePort, TcpListener } from '../tcp/tcpListener.js';
import { webSocketBehavior } from './wsProxy.js';

const CLOSE_GOING_AWAY = 1001;
const CLOSE_INTERNAL_ERROR = 1011;

export default async function serve(task: ServeTask): Promise<ServeResult> {
  const { worker, config, port } = task;
  const logger = createLogger(config.log.level, { worker }, task.prettyLogs);
  const profile = await startProfile(process.env.FAIRWAY_CPU_PROFILE, worker);
  const { uws } = loadUws();
  if (!uws) {
    port.postMessage({ type: 'failed', code: 'FAIRWAY_ERR_ENGINE', message: 'no uWebSockets.js build loads in this worker' } satisfies WorkerMessage);
    throw new Error('no uWebSockets.js build loads in this worker');
  }
  const table = StateTable.attach(task.buffer);
  const limits = ClientLimits.attach(task.limitsBuffer, config.workers);
  const context = new WorkerContext(worker, table, limits, config, task.plan, logger, task.testHooks);
  const serveOn = (target: TemplatedApp) =>
    target.ws('/*', webSocketBehavior(context)).any('/*', (res, req) => {
      try {
        handleHttp(context, res, req);
      } catch (err) {
        logger.error({ err }, 'error in HTTP handler');
        try {
          writeFault(res, FAULTS.internal);
        } catch {
          // The response was already ended or aborted.
        }
      }
    });
  /** An app with the routes on it, and the certificates of `tls` when there is TLS. */
  const makeApp = (tls: Config['tls']): TemplatedApp => {
    const made = tls ? uws.SSLApp({ cert_file_name: tls.cert, key_file_name: tls.key }) : uws.App();
    serveOn(made);
    // uWS keeps one router per SNI name: each certificate's names get the same routes.
    for (const entry of tls?.certs ?? []) {
      for (const name of entry.names) {
        made.addServerName(name, { cert_file_name: entry.cert, key_file_name: entry.key });
        serveOn(made.domain(name));
      }
    }
    return made;
  };
  const listenApp = (target: TemplatedApp) => new Promise<us_listen_socket | false>((resolve) => target.listen(config.listen.host, config.listen.port, resolve));
  let app = makeApp(config.tls);
  /** Apps replaced by a certificate reload: they keep serving the connections they have. */
  const retired: TemplatedApp[] = [];
  let certificates = config.tls ? fingerprint(config.tls) : '';
  const redirect = config.tls?.redirect ? await listenRedirect(uws, config.tls.redirect, config.listen.port) : undefined;

  let listenSocket = await listenApp(app);
  if (!listenSocket) {
    const message = `worker ${worker} could not listen on ${config.listen.host}:${config.listen.port}`;
    port.postMessage({ type: 'failed', code: 'FAIRWAY_ERR_LISTEN', message } satisfies WorkerMessage);
    await context.closeDispatchers();
    throw new Error(message);
  }
  // TCP listeners: on every worker where net listeners can share a port, else on worker 0 only.
  const tcpListeners = worker === 0 || netReusePort() ? config.tcp.map((listener) => new TcpListener(context, listener)) : [];
  try {
    await Promise.all(tcpListeners.map((listener) => listener.listen(netReusePort())));
  } catch (err) {
    const message = `worker ${worker} could not open a TCP listener: ${(err as Error).message}`;
    port.postMessage({ type: 'failed', code: 'FAIRWAY_ERR_LISTEN', message } satisfies WorkerMessage);
    uws.us_listen_socket_close(listenSocket);
    closeApp(app);
    await context.closeDispatchers();
    throw new Error(message);
  }
  port.postMessage({ type: 'listening' } satisfies WorkerMessage);

  const keepalive =
    config.websocket.pingInterval > 0
      ? setInterval(() => {
          for (const session of context.webSockets) session.keepalive();
        }, config.websocket.pingInterval)
      : undefined;

  let closed = false;
  const closeAll = (code: number, reason: string) => {
    if (closed) return;
    closed = true;
    context.shuttingDown = true;
    clearInterval(keepalive);
    uws.us_listen_socket_close(listenSocket);
    for (const listener of tcpListeners) listener.stopAccepting();
    if (redirect) {
      uws.us_listen_socket_close(redirect.socket);
      closeApp(redirect.app);
    }
    for (const session of [...context.webSockets]) session.shutdown(code, reason);
    context.closeQueues();
  };

  /**
   * Certificate files changed (reload): a new app with the new certificates listens on the same
   * port (SO_REUSEPORT), then the old listen socket closes. Connections already open stay on the
   * old app with the certificate they were made with; new ones get the new one.
   */
  const reloadCertificates = async (tls: Config['tls']): Promise<void> => {
    const next = tls ? fingerprint(tls) : '';
    if (!tls || next === certificates || closed) return;
    let fresh: TemplatedApp;
    try {
      fresh = makeApp(tls);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'new certificates could not be loaded: keeping the current ones');
      return;
    }
    const socket = await listenApp(fresh);
    if (!socket || closed) {
      if (socket) uws.us_listen_socket_close(socket);
      closeApp(fresh);
      if (!socket) logger.error('could not listen with the new certificates: keeping the current ones');
      return;
    }
    uws.us_listen_socket_close(listenSocket as us_listen_socket);
    retired.push(app);
    app = fresh;
    listenSocket = socket;
    certificates = next;
    logger.info('certificates reloaded: new connections use the new ones');
  };

  // uWS aborts the whole process if a worker exits with sockets open, so an uncaught exception
  // closes everything first; the primary then replaces the worker and subtracts its sessions.
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception in worker: closing its connections and exiting');
    try {
      closeAll(CLOSE_INTERNAL_ERROR, 'load balancer worker failed');
      for (const old of [...retired, app]) closeApp(old);
    } finally {
      logger.flush();
      process.exit(1);
    }
  });

  await new Promise<void>((resolve) => {
    port.on('message', (message: PrimaryMessage) => {
      if (message.type === 'config') {
        // Validated in the primary; the listen address and worker count do not change here.
        context.apply(message.config, message.plan);
        void reloadCertificates(message.config.tls);
        logger.debug({ pools: Object.keys(message.config.pools) }, 'config applied');
      } else if (message.type === 'close-sessions') closeSpread(context, message);
      else if (message.type === 'shed') shed(context, message.slot, message.count, message.order);
      else if (message.type === 'shutdown') void shutdown(message.grace).then(resolve);
    });
  });
  port.close();
  return { worker };

  async function shutdown(grace: number): Promise<void> {
    closeAll(CLOSE_GOING_AWAY, 'server shutting down');
    const deadline = Date.now() + grace;
    // HTTP requests in flight and TCP connections may finish within the grace period.
    while ((context.inFlightHttp > 0 || context.tcpSessions.size > 0) && Date.now() < deadline) await delay(25);
    if (context.inFlightHttp > 0 || context.tcpSessions.size > 0) {
      logger.warn({ inFlight: context.inFlightHttp, tcp: context.tcpSessions.size }, 'grace period over: cutting requests and connections still open');
    }
    for (const session of [...context.tcpSessions]) session.shutdown(CLOSE_GOING_AWAY, 'server shutting down');
    for (const old of [...retired, app]) closeApp(old);
    await context.closeDispatchers();
    await profile?.();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
}

/** A plain-HTTP listener that answers every request with a 308 to the same URL over HTTPS. */
async function listenRedirect(uws: UwsModule, at: { host: string; port: number }, httpsPort: number): Promise<{ app: TemplatedApp; socket: us_listen_socket }> {
  const app = uws.App().any('/*', (res, req) => {
    const host = req.getHeader('host').replace(/:\d+$/, '') || '127.0.0.1';
    const query = req.getQuery();
    const location = `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${req.getUrl()}${query ? `?${query}` : ''}`;
    res.writeStatus('308 Permanent Redirect').writeHeader('location', location).end();
  });
  const socket = await new Promise<us_listen_socket | false>((resolve) => app.listen(at.host, at.port, resolve));
  if (!socket) throw new Error(`could not listen for the HTTPS redirect on ${at.host}:${at.port}`);
  return { app, socket };
}

/** A digest of the certificate and key files' contents: a renewal at the same paths counts. */
function fingerprint(tls: NonNullable<Config['tls']>): string {
  const hash = createHash('sha256');
  for (const file of [tls.cert, tls.key, ...tls.certs.flatMap((entry) => [entry.cert, entry.key])]) {
    try {
      hash.update(readFileSync(file));
    } catch {
      hash.update(`unreadable ${file}`);
    }
  }
  hash.update(JSON.stringify(tls.certs.map((entry) => entry.names)));
  return hash.digest('hex');
}

/** `close` exists on uWS apps of this version but is missing from its type definitions. */
function closeApp(app: TemplatedApp): void {
  (app as TemplatedApp & { close(): void }).close();
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

