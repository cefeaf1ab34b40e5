// Test helpers: real backends on ephemeral ports that tag replies with their name, and a proxy.

import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer } from 'node:net';
import type { Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import type { ExecutionContext } from 'ava';
import { lock } from 'proper-lockfile';
import { WebSocket, WebSocketServer } from 'ws';
import { startFairway, validateConfig, type Fairway } from '../dist/src/index.js';
import { createLogger } from '../dist/src/log.js';

export interface TestBackend {
  name: string;
  port: number;
  address: string;
  /** Server-side count of open WebSocket sessions. */
  openSessions(): number;
  /** Every WebSocket connection the backend accepted, open or closed. */
  sessions: WebSocket[];
  /** Close code and reason of each session that ended, in order. */
  closes: string[];
  /** Headers and path (with query) of the last HTTP request or upgrade seen. */
  lastHeaders: IncomingMessage['headers'];
  lastPath: string;
  /** Requests seen, by path. */
  hits: number;
  /** Answers every request to `/hold` still waiting (they wait for this, not for a time). */
  releaseHeld(): void;
  /** Cuts every connection at once and stops listening, like a process killed with -9. */
  kill(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Routes: any path answers `name` in an x-backend header and the body; `/hash` answers the sha256
 * and length of the request body; `/download?bytes=N` streams N deterministic bytes; `/slow?ms=N`
 * answers after N ms; `/hold` answers when the test calls releaseHeld(); `/die` sends headers and part of a body, then cuts the connection.
 * WebSocket: echoes every message (text and binary) and picks the first offered subprotocol;
 * answers `whoami` with its name and `close:CODE:REASON` by closing; refuses upgrades to `/refuse`.
 */
export async function startBackend(t: ExecutionContext, name: string, options: { delay?: number; greet?: boolean } = {}): Promise<TestBackend> {
  const sockets = new Set<Socket>();
  const sessions: WebSocket[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    if (req.url?.endsWith('/hold')) {
      backend.hits++;
      res.setHeader('x-backend', name);
      held.push(res);
      return;
    }
    if (options.delay) setTimeout(() => handle(backend, req, res), options.delay);
    else handle(backend, req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const wss = new WebSocketServer({
    server,
    maxPayload: 64 * 1024 * 1024,
    handleProtocols: (protocols) => [...protocols][0] ?? false,
    verifyClient: (info, accept) => (info.req.url?.endsWith('/refuse') ? accept(false, 403, 'Forbidden') : accept(true)),
  });
  wss.on('connection', (socket, req) => {
    backend.lastHeaders = req.headers;
    backend.lastPath = req.url ?? '';
    sessions.push(socket);
    socket.on('close', (code, reason) => backend.closes.push(`${code} ${reason}`));
    if (options.greet) socket.send(`hello from ${name}`);
    socket.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      if (text.startsWith('close:')) {
        const [, code, reason] = text.split(':');
        socket.close(Number(code), reason);
      } else if (text === 'whoami') socket.send(name);
      else socket.send(data, { binary: isBinary });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const client of wss.clients) client.terminate();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  const backend: TestBackend = {
    name,
    port,
    address: `127.0.0.1:${port}`,
    openSessions: () => [...wss.clients].filter((c) => c.readyState === WebSocket.OPEN).length,
    sessions,
    closes: [],
    lastHeaders: {},
    lastPath: '',
    hits: 0,
    releaseHeld: () => {
      for (const res of held.splice(0)) res.end(name);
    },
    kill: close,
    close,
  };
  t.teardown(close);
  return backend;
}

function handle(backend: TestBackend, req: IncomingMessage, res: ServerResponse): void {
  backend.hits++;
  backend.lastHeaders = req.headers;
  backend.lastPath = req.url ?? '';
  const url = new URL(req.url ?? '/', 'http://x');
  // Routes match on the last path segment, so that tests may put a routing prefix before them.
  const route = url.pathname.slice(url.pathname.lastIndexOf('/'));
  res.setHeader('x-backend', backend.name);
  res.setHeader('x-powered-by', 'test-backend');
  if (route === '/hash') {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    req.on('end', () => res.end(JSON.stringify({ sha256: hash.digest('hex'), length })));
    return;
  }
  if (route === '/download') {
    const total = Number(url.searchParams.get('bytes'));
    const chunked = url.searchParams.has('chunked');
    if (!chunked) res.setHeader('content-length', total);
    let sent = 0;
    const write = () => {
      while (sent < total) {
        const size = Math.min(64 * 1024, total - sent);
        const ok = res.write(patternChunk(sent, size));
        sent += size;
        if (!ok) return void res.once('drain', write);
      }
      res.end();
    };
    write();
    return;
  }
  if (route === '/slow') {
    setTimeout(() => res.end(backend.name), Number(url.searchParams.get('ms')));
    return;
  }
  if (route === '/die') {
    res.setHeader('content-length', 1000);
    res.write('partial');
    setTimeout(() => req.socket.destroy(), 50);
    return;
  }
  req.resume();
  req.on('end', () => res.end(backend.name));
}

/** Deterministic bytes: byte i of a stream is (i * 31 + 7) mod 251. */
export function patternChunk(offset: number, size: number): Buffer {
  const chunk = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) chunk[i] = ((offset + i) * 31 + 7) % 251;
  return chunk;
}

export function patternHash(total: number): string {
  const hash = createHash('sha256');
  for (let offset = 0; offset < total; offset += 1024 * 1024) hash.update(patternChunk(offset, Math.min(1024 * 1024, total - offset)));
  return hash.digest('hex');
}

/**
 * The engine the behaviour tests run on: `npm test` runs the suite once on each
 * (FAIRWAY_TEST_ENGINE=native-free for the second run).
 */
export const ENGINE: 'uws' | 'native-free' = process.env.FAIRWAY_TEST_ENGINE === 'native-free' ? 'native-free' : 'uws';

/**
 * How many heavy tests (a fairway with its worker threads, a child fairway process, a browser)
 * run at once on this machine, across test files (each a process of its own) and across suites:
 * on 2 cores, more than this made starts that take 0.5-2 s alone take over 10 s. Cheap tests are
 * not held back. Each slot is a lock file (proper-lockfile: a holder that dies without letting go
 * loses its slot once the lock goes stale, 10 s).
 */
const HEAVY_SLOTS = Number(process.env.FAIRWAY_TEST_HEAVY_SLOTS) || 2;
const SLOT_DIR = join(tmpdir(), 'fairway-test-slots');
const holding = new WeakMap<ExecutionContext, Promise<void>>();

async function takeHeavySlot(): Promise<() => Promise<void>> {
  mkdirSync(SLOT_DIR, { recursive: true });
  for (;;) {
    for (let slot = 0; slot < HEAVY_SLOTS; slot++) {
      try {
        return await lock(join(SLOT_DIR, `slot-${slot}`), { realpath: false, retries: 0 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Waits for one of the suite's heavy slots and holds it until the test's teardown (teardowns run
 * last-registered first, so whatever the test starts after this is stopped before the slot is
 * given back). A test takes at most one slot, however many heavy things it starts.
 */
export function heavy(t: ExecutionContext): Promise<void> {
  let slot = holding.get(t);
  if (!slot) {
    slot = takeHeavySlot().then((release) => t.teardown(release));
    holding.set(t, slot);
  }
  return slot;
}

/**
 * Safety net for a fairway start (in this process or as a child) on a loaded 2-core machine; a
 * start takes 0.4-2 s alone. A deadline, not the expected duration.
 */
export const START_DEADLINE = 60_000;

/**
 * Starts fairway in this process (workers are threads of it) with a quiet logger, on the suite's
 * engine, or with `engine: null` on the one a config without `engine` gets.
 */
export async function startProxy(t: ExecutionContext, raw: Record<string, unknown>, engine: typeof ENGINE | null = ENGINE): Promise<Fairway> {
  await heavy(t);
  const config = validateConfig({ listen: '127.0.0.1:0', workers: 2, ...(engine && { engine }), log: { level: 'warn', access: false }, ...raw });
  const fairway = await startFairway(config, { logger: createLogger('warn', { role: 'primary' }), testHooks: true });
  t.teardown(() => fairway.stop(1000));
  return fairway;
}

export function onePool(backends: TestBackend[], algorithm = 'least-conn'): Record<string, unknown> {
  return { pools: { main: { algorithm, backends: backends.map((b) => b.address) } } };
}

/** Sum of active counts over the given backends, as the shared table says. */
export function activeTotal(fairway: Fairway, pool: string, backends: Pick<TestBackend, 'address'>[]): number {
  return backends.reduce((sum, b) => sum + activeOf(fairway, pool, b), 0);
}

export function activeOf(fairway: Fairway, pool: string, backend: Pick<TestBackend, 'address'>): number {
  return fairway.table.active(fairway.plan.backendSlots[`${pool}/${backend.address}`]);
}

export async function openSocket(url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { headers, maxPayload: 64 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
  });
  return ws;
}

export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: Buffer, isBinary: boolean) => resolve({ data, isBinary })));
}

export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}

/**
 * Polls until `check` holds; fails with `what` after `timeout` ms. Bounded in count and time. The
 * timeout is a safety net for a loaded machine, never the expected duration.
 */
export async function waitFor(what: string, check: () => boolean, timeout = 20_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Ports handed out by freePort, across the suite's processes: a port is only bound when the
 * fairway it is for starts, which may wait for a heavy slot, so "free when asked" is not enough.
 * Each port handed out is a file made with O_EXCL; a process removes its own at exit, and a file
 * left by a process that died is taken over once it is older than any test file runs.
 */
const PORT_DIR = join(tmpdir(), 'fairway-test-ports');
const PORT_STALE_MS = 30 * 60_000;
const reserved: string[] = [];
process.once('exit', () => {
  for (const file of reserved) rmSync(file, { force: true });
});

function reservePort(port: number): boolean {
  const file = join(PORT_DIR, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
  } catch {
    try {
      if (Date.now() - statSync(file).mtimeMs < PORT_STALE_MS) return false;
      rmSync(file, { force: true });
      writeFileSync(file, String(process.pid), { flag: 'wx' });
    } catch {
      return false;
    }
  }
  reserved.push(file);
  return true;
}

/**
 * A port that was free a moment ago (for processes that must be told their port up front), and
 * that no other test process is given while this one runs. Drawn below the kernel's ephemeral
 * range (32768 and up here), where port-0 listeners of other tests and client sockets take theirs,
 * so that none of them can take it before it is used.
 */
export async function freePort(): Promise<number> {
  mkdirSync(PORT_DIR, { recursive: true });
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (!reservePort(port)) continue;
    const server = createTcpServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!free) continue;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
}

/**
 * A port nobody can take and that refuses every connection: bound by a socket that never listens,
 * held by a small python3 process until the test's teardown (or until this process exits and its
 * stdin closes). Node's own sockets set SO_REUSEADDR, so a bound Node socket would let another
 * listener share the port; this one sets neither SO_REUSEADDR nor SO_REUSEPORT.
 */
export async function deadPort(t: ExecutionContext): Promise<number> {
  const holder = spawn('python3', ['-c', 'import socket, sys\ns = socket.socket()\ns.bind(("127.0.0.1", 0))\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => void holder.kill());
  const [chunk] = (await Promise.race([once(holder.stdout!, 'data'), once(holder, 'exit').then(() => Promise.reject(new Error('python3 could not hold a port')))])) as [Buffer];
  return Number(chunk.toString().trim());
}

const CLI = new URL('../dist/bundle/cli.js', import.meta.url).pathname;

/**
 * The real CLI in a child process, killed at teardown if still running; `output()` is what it
 * printed. A CLI that starts fairway (not `--check`) holds a heavy slot: call it with `await`.
 */
export async function runCli(t: ExecutionContext, args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; output(): string }> {
  if (!args.includes('--check')) await heavy(t);
  const proxies = (args.includes('--config') || args.includes('--to')) && !args.includes('--engine') && !args.includes('--check');
  const child = spawn(process.execPath, [CLI, ...args, ...(proxies ? ['--engine', ENGINE] : [])], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let text = '';
  child.stdout!.on('data', (d) => (text += d));
  child.stderr!.on('data', (d) => (text += d));
  return { child, output: () => text };
}

/**
 * Threads that each post 'ready', wait on `gate`, then post one number: opens the gate once every
 * thread is ready, so that all of them start at once, and returns their numbers.
 */
export async function openGate(gate: SharedArrayBuffer, threads: Worker[]): Promise<number[]> {
  const next = (w: Worker) => new Promise<unknown>((resolve, reject) => w.once('message', resolve).once('error', reject));
  await Promise.all(threads.map(next));
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  return Promise.all(threads.map(next)) as Promise<number[]>;
}

/** What reached a backend through a tap: every byte fairway sent toward it, and the connections. */
export interface Tap {
  address: string;
  received(): string;
  /** Connections fairway made toward the backend, and how many of them are still open. */
  connections(): number;
  open(): number;
}

/**
 * A TCP relay in front of `target` that records, byte for byte, what fairway sends toward it,
 * so that a test checks what a backend is given, not only what it answered.
 */
export async function startTap(t: ExecutionContext, target: { port: number }): Promise<Tap> {
  let received = '';
  let connections = 0;
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  const server = createTcpServer((client) => {
    connections++;
    clients.add(client);
    client.on('close', () => clients.delete(client));
    const upstream = connect(target.port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    received: () => received,
    connections: () => connections,
    open: () => clients.size,
  };
}

/**
 * Backend answer heads that both upstream clients (HTTP and WebSocket) refuse the same way, each
 * with a refusal status so that an upgrade would otherwise relay it: [case, raw answer].
 */
export const MALFORMED_HEADS: [string, string][] = [
  ['a status that is not digits', 'HTTP/1.1 4O3 Forbidden\r\ncontent-length: 0\r\n\r\n'],
  ['two different Content-Lengths', 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nno!'],
  ['a Content-Length that is not digits', 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2x\r\n\r\nno'],
  ['a folded header line', 'HTTP/1.1 403 Forbidden\r\nx-a: 1\r\n folded\r\ncontent-length: 0\r\n\r\n'],
  ['a line without a colon', 'HTTP/1.1 403 Forbidden\r\nno colon here\r\ncontent-length: 0\r\n\r\n'],
  ['a header name that is not a token', 'HTTP/1.1 403 Forbidden\r\nbad name: 1\r\ncontent-length: 0\r\n\r\n'],
  ['a chunk size that is not hex', 'HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\n\r\n2zz\r\nno\r\n0\r\n\r\n'],
  ['chunk data without its CRLF', 'HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\n\r\n2\r\nnoXX0\r\n\r\n'],
];

/**
 * Sends raw bytes and collects what comes back until the proxy closes, `until` holds for the reply
 * so far, or `ms` pass. With `segment`, the bytes go out in pieces of that size, each in a TCP
 * segment of its own (as a head larger than one segment arrives over a real network).
 */
export function rawExchange(
  port: number,
  payload: string | Buffer,
  ms: number,
  options: { segment?: number; until?: (reply: string) => boolean } = {},
): Promise<{ reply: string; closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const socket = connect(port, '127.0.0.1', async () => {
      if (!options.segment) return void socket.write(bytes);
      socket.setNoDelay(true);
      for (let at = 0; at < bytes.length && !socket.destroyed; at += options.segment) {
        socket.write(bytes.subarray(at, at + options.segment));
        // A pause between writes, so that the kernel does not merge them into one segment.
        await new Promise((next) => setTimeout(next, 5));
      }
    });
    let reply = '';
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply, closedByPeer: false });
    }, ms);
    socket.on('data', (d) => {
      reply += d.toString('latin1');
      if (options.until?.(reply)) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ reply, closedByPeer: false });
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply, closedByPeer: true });
    });
  });
}

export interface TestRedis {
  url: string;
  port: number;
  /** Kills redis-server with SIGKILL (its data is in memory only: a restart starts empty). */
  kill(): Promise<void>;
  /** Starts a new, empty redis-server on the same port. */
  restart(): Promise<void>;
}

/**
 * A real redis-server on 127.0.0.1, on a free port, without persistence; stopped at teardown.
 * Resolves once it accepts connections.
 */
export async function startRedis(t: ExecutionContext, options: { port?: number } = {}): Promise<TestRedis> {
  let child: ChildProcess | undefined;
  let port = options.port ?? 0;
  const launch = async (): Promise<boolean> => {
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = server;
    let text = '';
    return new Promise<boolean>((resolve) => {
      server.stdout!.on('data', (d) => {
        text += d;
        if (text.includes('Ready to accept connections')) resolve(true);
      });
      server.once('exit', () => resolve(false));
    });
  };
  for (let attempt = 0; ; attempt++) {
    if (!options.port) port = await freePort();
    if (await launch()) break;
    if (attempt >= 5) throw new Error(`redis-server did not start on port ${port}`);
  }
  const running = (server: ChildProcess) => server.exitCode === null && server.signalCode === null;
  t.teardown(() => {
    if (child && running(child)) child.kill('SIGKILL');
  });
  const stop = async () => {
    const server = child!;
    if (!running(server)) return;
    const exited = once(server, 'exit');
    server.kill('SIGKILL');
    await exited;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: stop,
    async restart() {
      await stop();
      for (let attempt = 0; !(await launch()); attempt++) {
        if (attempt >= 50) throw new Error(`redis-server could not start again on port ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

/** Resolves once `ws` has answered a ping, or has closed. */
export function pinged(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      ws.off('pong', done).off('close', done);
      resolve();
    };
    ws.on('pong', done).on('close', done);
    ws.ping();
  });
}

/**
 * Opens `count` sessions, 100 at a time, and waits until the backends hold `total`. A session the uws
 * engine cuts a millisecond after its upgrade (1006: uWS 20.30's cork, docs/engines.md) is logged
 * and opened again, so that what the test checks is where sessions land, not that engine fault.
 */
export async function openHeld(t: ExecutionContext, port: number, count: number, backends: Pick<TestBackend, 'openSessions'>[], total: number, path = ''): Promise<WebSocket[]> {
  const held: WebSocket[] = [];
  const onBackends = () => backends.reduce((n, b) => n + b.openSessions(), 0);
  for (let attempt = 0; attempt < 5; attempt++) {
    // Sessions cut since the last round (1006) are dropped and opened again.
    const cut = held.filter((ws) => ws.readyState !== WebSocket.OPEN);
    if (cut.length > 0) t.log(`${cut.length} session(s) cut by the engine right after the upgrade (1006): opened again`);
    for (const ws of cut) held.splice(held.indexOf(ws), 1);
    // At most 100 handshakes at a time.
    while (held.length < count) held.push(...(await Promise.all(Array.from({ length: Math.min(100, count - held.length) }, () => openSocket(`ws://127.0.0.1:${port}/${path}`)))));
    await waitFor('the backends to hold the sessions, or one to be cut', () => onBackends() === total || held.some((ws) => ws.readyState !== WebSocket.OPEN));
    // A session cut as it opened may not have reached its client yet: a ping answered, or the
    // close, shows that each client has read everything fairway sent it.
    await Promise.all(held.filter((ws) => ws.readyState === WebSocket.OPEN).map(pinged));
    if (onBackends() === total && held.every((ws) => ws.readyState === WebSocket.OPEN)) return held;
  }
  throw new Error(`the backends hold ${onBackends()} sessions, not ${total}, after sessions kept being cut`);
}
