// Servers on one port at both loopback addresses, 127.0.0.1 and ::1: two backends (or agents) on
// "two hosts" for a pool whose port is shared, as in a real deployment.

import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { ExecutionContext } from 'ava';

/** Listens on 127.0.0.1 at a free port, then on ::1 at the same one (another port if ::1 has it taken). */
async function onBothLoopbacks(t: ExecutionContext, make: (family: 4 | 6) => Server | HttpServer): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const v4 = make(4);
    await new Promise<void>((resolve) => v4.listen(0, '127.0.0.1', resolve));
    const port = (v4.address() as { port: number }).port;
    const v6 = make(6);
    const listened = await new Promise<boolean>((resolve) => {
      v6.once('error', () => resolve(false));
      v6.listen(port, '::1', () => resolve(true));
    });
    if (listened) {
      t.teardown(() => Promise.all([v4, v6].map((s) => new Promise((resolve) => s.close(resolve)))).then(() => undefined));
      return port;
    }
    await new Promise((resolve) => v4.close(resolve));
  }
  throw new Error('no port free on both 127.0.0.1 and ::1');
}

/** An HTTP server at both addresses answering `body(family)` to every request. */
export async function dualStackServer(t: ExecutionContext, body: (family: 4 | 6) => string): Promise<{ port: number }> {
  const sockets = new Set<Socket>();
  const port = await onBothLoopbacks(t, (family) => {
    const server = createHttpServer((_req, res) => res.end(body(family)));
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    return server;
  });
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
  });
  return { port };
}

/** A TCP agent (HAProxy agent-check) at both addresses: each answers its own current reply and records what it was sent. */
export interface DualAgent {
  port: number;
  reply: Record<4 | 6, string>;
  /** Connections each agent has answered. */
  asked: Record<4 | 6, number>;
  /** What the last connection that sent anything sent, per agent. */
  received: Record<4 | 6, string>;
}

export async function dualStackAgent(t: ExecutionContext): Promise<DualAgent> {
  const agent: DualAgent = { port: 0, reply: { 4: 'up\n', 6: 'up\n' }, asked: { 4: 0, 6: 0 }, received: { 4: '', 6: '' } };
  agent.port = await onBothLoopbacks(t, (family) =>
    createNetServer((socket) => {
      socket.on('error', () => undefined);
      let got = '';
      socket.on('data', (d) => {
        got += d;
        agent.received[family] = got;
      });
      // HAProxy's agents answer at once, whatever they are sent.
      setImmediate(() => {
        agent.asked[family]++;
        socket.end(agent.reply[family]);
      });
    }),
  );
  return agent;
}
