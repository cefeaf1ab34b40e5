// The uws engine's serve task: uWS apps on the shared port until shutdown (the task itself is
// the shared serveWorker).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Config } from '../../config/types.js';
import { FAULTS } from '../../core/errors.js';
import type { Logger } from '../../log.js';
import type { ServeResult, ServeTask } from '../messages.js';
import { loadUws, type UwsModule } from './binding.js';
import { handleHttp, writeFault } from './httpProxy.js';
import type { WorkerContext } from '../../dataplane/workerContext.js';
import { EngineUnavailable, serveWorker, type Engine } from '../../dataplane/workerLoop.js';
import { webSocketBehavior } from './wsProxy.js';

export default function serve(task: ServeTask): Promise<ServeResult> {
  return serveWorker(task, uwsEngine);
}

/** uWS apps on the shared port (SO_REUSEPORT): one per certificate set, kept across reloads. */
function uwsEngine(context: WorkerContext, logger: Logger): Engine {
  const { uws } = loadUws();
  if (!uws) throw new EngineUnavailable('no uWebSockets.js build loads in this worker');
  const { config } = context;
  const serveOn = (target: TemplatedApp) =>
    target.ws('/*', webSocketBehavior(context, uws)).any('/*', (res, req) => {
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
  let listenSocket: us_listen_socket | false = false;
  let redirect: { app: TemplatedApp; socket: us_listen_socket } | undefined;
  let stopped = false;

  const stopListening = () => {
    stopped = true;
    if (listenSocket) uws.us_listen_socket_close(listenSocket);
    if (redirect) {
      uws.us_listen_socket_close(redirect.socket);
      closeApp(redirect.app);
    }
  };

  /**
   * Certificate files changed (reload): a new app with the new certificates listens on the same
   * port (SO_REUSEPORT), then the old listen socket closes. Connections already open stay on the
   * old app with the certificate they were made with; new ones get the new one.
   */
  const reloadCertificates = async (tls: Config['tls']): Promise<void> => {
    const next = tls ? fingerprint(tls) : '';
    if (!tls || next === certificates) return;
    let fresh: TemplatedApp;
    try {
      fresh = makeApp(tls);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'new certificates could not be loaded: keeping the current ones');
      return;
    }
    const socket = await listenApp(fresh);
    if (!socket || stopped) {
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

  return {
    async listen() {
      if (config.tls?.redirect) redirect = await listenRedirect(uws, config.tls.redirect, config.listen.port);
      listenSocket = await listenApp(app);
      if (!listenSocket) throw new Error(`uWS could not listen on ${config.listen.host}:${config.listen.port}`);
      return {
        stopListening,
        configApplied: (next) => void reloadCertificates(next.tls),
        // uWS closes every connection of an app at once, WebSockets included.
        closeConnections: () => {
          for (const old of [...retired, app]) closeApp(old);
        },
      };
    },
    discard() {
      stopListening();
      closeApp(app);
    },
  };
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
  // node:crypto only with TLS: a worker without it does not load the module (docs/BENCHMARKS.md, start-up).
  const hash = (createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto')).createHash('sha256');
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
