// Socket helpers of node:net that the primary and every engine use: whether net listeners can share
// a port between threads, and reading a PROXY protocol header off a connection.

import type { Socket } from 'node:net';
import { parseProxyHeader, type ParsedProxyHeader } from '../core/proxyProtocol.js';

/** How long a client of an accept_proxy listener has to send its PROXY header. */
const PROXY_HEADER_TIMEOUT = 5_000;

/** `reusePort` for net listeners arrived in Node 23.1 and 22.12: with it every worker accepts. */
export function netReusePort(): boolean {
  const [major, minor] = process.versions.node.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * Reads the PROXY header (v1 or v2) a paused connection starts with, then pauses it again and
 * calls `done` with the result and every byte read so far. A connection that sends no complete
 * header within PROXY_HEADER_TIMEOUT is destroyed.
 */
export function readProxyHeader(socket: Socket, done: (parsed: Exclude<ParsedProxyHeader, { kind: 'incomplete' }>, received: Buffer) => void): void {
  let received = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), PROXY_HEADER_TIMEOUT);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const parsed = parseProxyHeader(received);
    if (parsed.kind === 'incomplete') return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    done(parsed, received);
  };
  socket.on('data', onData);
  socket.resume();
}
