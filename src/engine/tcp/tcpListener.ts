// L4 mode: raw TCP connections balanced over a pool with the same pickers, counts, health and
// draining as HTTP and WebSocket sessions. Built on node:net, so it runs in any engine.

import { createServer, connect, type Server, type Socket } from 'node:net';
import type { TcpListenerConfig } from '../../config/types.js';
import { isConnectFailure, type ProxyFault } from '../../core/errors.js';
import { encodeProxyHeader } from '../../core/proxyProtocol.js';
import { readProxyHeader } from '../sockets.js';
import type { Admittable } from '../../dataplane/admission.js';
import { BackendLease } from '../../dataplane/backendLease.js';
import type { OpenSession, WorkerContext } from '../../dataplane/workerContext.js';

export class TcpListener {
  private readonly server: Server;

  constructor(
    private readonly context: WorkerContext,
    readonly config: TcpListenerConfig,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  listen(reusePort: boolean): Promise<void> {
    const { host, port } = this.config.listen;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, reusePort }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops accepting; open connections go on until they end, or are ended by drain or shutdown (`TcpSession.shutdown`). */
  stopAccepting(): void {
    this.server.close();
  }

  private accept(client: Socket): void {
    client.on('error', () => client.destroy());
    if (!this.config.acceptProxy) {
      this.start(client, client.remoteAddress ?? '', client.remotePort ?? 0, []);
      return;
    }
    // The PROXY header comes first; what follows it is the client's own data, kept for the backend.
    readProxyHeader(client, (parsed, received) => {
      if (parsed.kind !== 'complete') {
        this.context.logger.debug({ client: client.remoteAddress, reason: parsed.reason }, 'TCP connection without a valid PROXY header');
        client.destroy();
        return;
      }
      const rest = received.subarray(parsed.length);
      const source = parsed.addresses;
      this.start(client, source?.source ?? client.remoteAddress ?? '', source?.sourcePort ?? client.remotePort ?? 0, rest.length > 0 ? [rest] : []);
    });
  }

  private start(client: Socket, address: string, port: number, early: Buffer[]): void {
    const pool = this.context.pools.get(this.config.pool);
    if (!pool || this.context.shuttingDown) {
      client.destroy();
      return;
    }
    const clientAddress = address.startsWith('::ffff:') ? address.slice(7) : address;
    const key = pool.hashKey(undefined, clientAddress);
    const session = new TcpSession(this.context, this, new BackendLease(this.context.table, this.context.worker, pool, key, this.context.sessionFleet), client, clientAddress, port, early);
    this.context.tcpSessions.add(session);
    session.cancelWait = session.find();
  }
}

/** One proxied TCP connection; holds one session on its backend until both sides are closed. */
class TcpSession implements Admittable, OpenSession {
  cancelWait: (() => void) | undefined;
  private upstream: Socket | null = null;
  private connected = false;
  private finished = false;
  private bytesIn = 0;
  private bytesOut = 0;
  readonly startedAt = performance.now();

  constructor(
    private readonly context: WorkerContext,
    private readonly listener: TcpListener,
    private readonly lease: BackendLease,
    private readonly client: Socket,
    readonly clientAddress: string,
    private readonly clientPort: number,
    private readonly early: Buffer[],
  ) {
    client.on('close', () => this.onClientClose());
  }

  get backendSlot(): number {
    return this.lease.slot;
  }

  private get slot(): number {
    return this.lease.slot;
  }

  get isOpen(): boolean {
    return this.connected;
  }

  refuse(_fault: ProxyFault): void {
    // TCP has no way to say why: the connection is closed.
    this.cancelWait = undefined;
    this.client.destroy();
    this.finish();
  }

  /** Asks for a backend (now, or after the fleet's answer or a wait in the pool's queue). */
  find(): (() => void) | undefined {
    return this.lease.find(this, -1);
  }

  admit(slot: number): void {
    this.cancelWait = undefined;
    if (this.lease.admit(slot, this.client.destroyed)) this.connect();
  }

  private connect(): void {
    const { context } = this;
    const backend = context.backends[this.slot];
    const upstream = connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    this.upstream = upstream;
    const timer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), context.config.timeouts.connect);
    upstream.once('connect', () => {
      clearTimeout(timer);
      if (upstream !== this.upstream) return;
      this.onConnected(upstream);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (upstream !== this.upstream) return;
      context.table.countFailure(this.slot);
      context.table.recordOutcome(this.slot, true, 0);
      if (!this.connected && this.retry(err)) return;
      context.logger.debug({ backend: backend.origin, err: { code: err.code, message: err.message } }, 'TCP backend connection failed');
      this.client.destroy();
    });
    upstream.on('close', (hadError) => {
      if (upstream !== this.upstream) return;
      // A clean close means both directions ended through the pipes: the client side follows on
      // its own. A reset, or a backend never reached, ends the client's connection now.
      if (hadError || !this.connected) this.client.destroy();
      this.finishIfClosed();
    });
  }

  private onConnected(upstream: Socket): void {
    const { context, client } = this;
    this.connected = true;
    context.table.recordOutcome(this.slot, false, 0);
    const listenerConfig = this.listener.config;
    if (listenerConfig.sendProxy) {
      upstream.write(
        encodeProxyHeader(listenerConfig.sendProxy, {
          source: this.clientAddress,
          sourcePort: this.clientPort,
          destination: client.localAddress ?? '0.0.0.0',
          destinationPort: client.localPort ?? 0,
        }),
      );
    }
    for (const chunk of this.early) upstream.write(chunk);
    this.bytesIn += this.early.reduce((sum, chunk) => sum + chunk.length, 0);
    client.on('data', (chunk: Buffer) => (this.bytesIn += chunk.length));
    upstream.on('data', (chunk: Buffer) => (this.bytesOut += chunk.length));
    // pipe() keeps backpressure both ways and passes each side's end (half-close) to the other.
    client.pipe(upstream);
    upstream.pipe(client);
    if (listenerConfig.idleTimeout > 0) {
      const idle = () => this.shutdown();
      client.setTimeout(listenerConfig.idleTimeout, idle);
      upstream.setTimeout(listenerConfig.idleTimeout, idle);
    }
  }

  /** A backend that could not be reached is swapped for another before any byte went to it. */
  private retry(err: NodeJS.ErrnoException): boolean {
    const { lease, context } = this;
    const unreachable = isConnectFailure(err) || err.code === 'ETIMEDOUT';
    if (!unreachable || this.client.destroyed) return false;
    const from = lease.slot;
    if (!lease.switch()) return false;
    context.logger.debug({ from: context.backends[from].origin, to: context.backends[lease.slot].origin }, 'TCP connection retried on another backend');
    this.connect();
    return true;
  }

  private onClientClose(): void {
    if (this.cancelWait) {
      this.cancelWait();
      this.cancelWait = undefined;
      this.finish();
      return;
    }
    const upstream = this.upstream;
    // A client that vanished (reset, timeout) takes its backend connection with it; a clean
    // close already passed its end through the pipe.
    if (upstream && !this.client.readableEnded) upstream.destroy();
    this.finishIfClosed();
  }

  private finishIfClosed(): void {
    if (this.client.closed && (this.upstream === null || this.upstream.closed)) this.finish();
  }

  /** Drain, idle timeout or shutdown: both sides are closed now. */
  shutdown(): void {
    this.upstream?.destroy();
    this.client.destroy();
  }

  keepalive(): void {
    // TCP keeps no application-level keepalive: the idle timeout ends silent connections.
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const { context } = this;
    context.tcpSessions.delete(this);
    if (this.connected) context.table.recordSession(this.slot, performance.now() - this.startedAt);
    this.lease.release();
    if (context.accessLog) {
      context.logger.info({
        type: 'tcp',
        listen: `${this.listener.config.listen.host}:${this.listener.config.listen.port}`,
        backend: this.slot >= 0 ? context.backends[this.slot].origin : '',
        duration_ms: Math.round(performance.now() - this.startedAt),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        client: this.clientAddress,
      });
    }
  }
}
