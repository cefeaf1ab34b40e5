// The native-free engine's serve task: node:http (or HTTP/2 with HTTP/1.1 fallback over TLS) on
// the listen address until shutdown (the task itself is the shared serveWorker).

import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Config } from '../src/config/types.js';
import { FAULTS, type ProxyFault } from '../src/core/errors.js';
import type { ServeResult, ServeTask } from '../src/engine/messages.js';
import { netReusePort, readProxyHeader } from '../src/engine/sockets.js';
import { serveWorker, type Engine } from '../src/dataplane/workerLoop.js';
import type { WorkerContext } from '../src/dataplane/workerContext.js';
import type { Logger } from '../src/log.js';
import type { StateTable } from '../src/core/state/stateTable.js';
import { handleHttp, writeFault, type ClientResponse } from './httpProxy.js';
import type { ClientRequest } from './requestHead.js';
import { proxiedAddresses } from './requestHead.js';
import { answerFault, createWebSocketServer, handleUpgrade, type ClientSockets } from './wsProxy.js';


type FrontServer = HttpServer | Http2SecureServer;

export default function serve(task: ServeTask): Promise<ServeResult> {
  return serveWorker(task, nativeEngine);
}

/** node:http (or node:http2 over TLS) on the listen address, `ws` for upgrades. */
function nativeEngine(context: WorkerContext, logger: Logger): Engine {
  const { config } = context;
  const clients: ClientSockets = new Set();
  const webSockets = createWebSocketServer(context);
  const certificates = config.tls ? new Certificates(config.tls) : undefined;

  const onRequest = (req: ClientRequest, res: ClientResponse) => {
    try {
      handleHttp(context, req, res);
    } catch (err) {
      logger.error({ err }, 'error in HTTP handler');
      if (!res.headersSent) writeFault(res, FAULTS.internal, false);
      else res.destroy();
    }
  };
  const server: FrontServer = config.tls && certificates
    ? createSecureServer(
        { allowHTTP1: true, minVersion: 'TLSv1.2', cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key), SNICallback: certificates.select },
        onRequest,
      )
    : createHttpServer(
        {
          requestTimeout: 0,
          // A request head must arrive within timeouts.request_head (else 408), checked each second.
          headersTimeout: config.timeouts.requestHead,
          connectionsCheckingInterval: Math.min(1000, config.timeouts.requestHead / 2),
          // The request line and the headers are checked one by one (414, 431) in the shared layer.
          maxHeaderSize: config.limits.maxRequestLine + config.limits.maxRequestHead,
        },
        onRequest,
      );
  // Long uploads and downloads are bounded by the idle timeouts, not by a whole-request limit.
  if ('requestTimeout' in server) server.requestTimeout = 0;
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) => answerClientError(err, socket, config.limits.maxRequestLine, context.table));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, early: Buffer) => {
    try {
      handleUpgrade(context, webSockets, clients, req, socket, early);
    } catch (err) {
      logger.error({ err }, 'error in WebSocket upgrade handler');
      socket.destroy();
    }
  });
  // Connections the primary counts on: kept so that shutdown can end them.
  const connections = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });

  const listeners: (NetServer | FrontServer)[] = [];
  const redirect = config.tls?.redirect ? createHttpServer((req, res) => redirectToHttps(req, res, config.listen.port)) : undefined;
  const stopListening = () => {
    for (const listener of listeners) listener.close();
  };

  return {
    async listen() {
      const reusePort = netReusePort();
      if (config.proxyProtocol) listeners.push(await listen(proxyProtocolFront(server, logger), config.listen, reusePort));
      else listeners.push(await listen(server, config.listen, reusePort));
      if (redirect && config.tls?.redirect) listeners.push(await listen(redirect, config.tls.redirect, reusePort));
      return {
        stopListening,
        configApplied(next) {
          if (certificates && next.tls) certificates.reload(next.tls, server as Http2SecureServer, logger);
        },
        keepalive() {
          for (const client of clients) client.keepalive();
        },
        closeConnections() {
          for (const socket of connections) socket.destroy();
          redirect?.closeAllConnections();
        },
      };
    },
    discard: stopListening,
  };
}

/**
 * Answers what node:http could not read as a request, as HAProxy does: 408 for a head that did not
 * arrive in time, 414 or 431 for one too large, 400 for the rest; then closes the connection.
 * Counted in fairway_errors_total like every answer the gate gives.
 */
function answerClientError(err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket, maxRequestLine: number, table: StateTable): void {
  const inResponse = (socket as Socket & { _httpMessage?: { headersSent: boolean } })._httpMessage?.headersSent === true;
  if (err.code !== 'ECONNRESET' && socket.writable && !inResponse) {
    let fault: ProxyFault = FAULTS.badRequest;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') fault = FAULTS.headTimeout;
    else if (err.code === 'HPE_HEADER_OVERFLOW') {
      // The read node stopped in: when it holds the start of the request and the request line
      // has not ended within the limit, the line is what is too long; else the headers are.
      const packet = err.rawPacket;
      const lineEnd = packet && /^[A-Z]+ /.test(packet.toString('latin1', 0, 16)) ? packet.indexOf('\r\n') : 0;
      fault = lineEnd < 0 || lineEnd > maxRequestLine ? FAULTS.uriTooLong : FAULTS.headTooLarge;
    }
    table.countFault(fault.code);
    answerFault(socket, fault);
    // Closed once the answer is out, whatever the client still sends.
    socket.destroySoon();
  } else socket.destroy();
}

function listen(server: NetServer | FrontServer, at: { host: string; port: number }, reusePort: boolean): Promise<NetServer | FrontServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: at.host, port: at.port, reusePort }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * A TCP listener that reads each connection's PROXY header (v1 or v2), remembers its source as
 * the client address, and hands the rest of the connection to the HTTP server.
 */
function proxyProtocolFront(server: FrontServer, logger: Logger): NetServer {
  return createNetServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    readProxyHeader(socket, (parsed, received) => {
      // No header: the TCP peer is the client (as on the uWS engine).
      const length = parsed.kind === 'complete' ? parsed.length : 0;
      if (parsed.kind === 'complete' && parsed.addresses) proxiedAddresses.set(socket, parsed.addresses.source);
      if (parsed.kind === 'invalid') logger.trace({ reason: parsed.reason }, 'connection without a PROXY header');
      const rest = received.subarray(length);
      if (rest.length > 0) socket.unshift(rest);
      server.emit('connection', socket);
      socket.resume();
    });
  });
}

/** Answers every request with a 308 to the same URL over HTTPS. */
function redirectToHttps(req: IncomingMessage, res: ServerResponse, httpsPort: number): void {
  const host = (req.headers.host ?? '127.0.0.1').replace(/:\d+$/, '');
  res.writeHead(308, { location: `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${req.url ?? '/'}` });
  res.end();
}

/** The listener's certificates: the default one and those chosen by SNI, reloadable in place. */
class Certificates {
  private byName = new Map<string, SecureContext>();
  private fallback!: SecureContext;

  constructor(tls: NonNullable<Config['tls']>) {
    this.load(tls);
  }

  private load(tls: NonNullable<Config['tls']>): void {
    const byName = new Map<string, SecureContext>();
    for (const entry of tls.certs) {
      const secure = createSecureContext({ cert: readFileSync(entry.cert), key: readFileSync(entry.key), minVersion: 'TLSv1.2' });
      for (const name of entry.names) byName.set(name, secure);
    }
    this.fallback = createSecureContext({ cert: readFileSync(tls.cert), key: readFileSync(tls.key), minVersion: 'TLSv1.2' });
    this.byName = byName;
  }

  /** SNI: the certificate for the name asked for; the default one for an unknown name. */
  readonly select = (servername: string, callback: (err: Error | null, ctx?: SecureContext) => void): void => {
    const name = servername.toLowerCase();
    const wildcard = name.includes('.') ? `*${name.slice(name.indexOf('.'))}` : '';
    callback(null, this.byName.get(name) ?? this.byName.get(wildcard) ?? this.fallback);
  };

  /** Re-reads the files (reload): new connections get the new certificates, open ones keep theirs. */
  reload(tls: NonNullable<Config['tls']>, server: Http2SecureServer, logger: Logger): void {
    try {
      this.load(tls);
      server.setSecureContext({ cert: readFileSync(tls.cert), key: readFileSync(tls.key), minVersion: 'TLSv1.2' });
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'new certificates could not be loaded: keeping the current ones');
    }
  }
}
