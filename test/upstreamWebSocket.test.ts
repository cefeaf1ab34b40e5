// The upstream WebSocket leg against a backend scripted byte by byte: fragments, control frames,
// masking, handshake checks, refusals with chunked bodies, timeouts and protocol errors.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { WebSocket } from 'ws';
import { MALFORMED_HEADS, closed, nextMessage, openSocket, startProxy, waitFor } from './helpers.js';

interface ClientFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** A server frame (never masked). */
function serverFrame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = data.length < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, data.length]) : Buffer.from([(fin ? 0x80 : 0) | opcode, 126, data.length >> 8, data.length & 0xff]);
  return Buffer.concat([head, data]);
}

/** Parses the client frames in `buffer`; returns them and the bytes left over. */
function clientFrames(buffer: Buffer): { frames: ClientFrame[]; rest: Buffer } {
  const frames: ClientFrame[] = [];
  let at = 0;
  for (;;) {
    if (buffer.length - at < 2) break;
    const masked = (buffer[at + 1] & 0x80) !== 0;
    let length = buffer[at + 1] & 0x7f;
    let offset = at + 2;
    if (length === 126) {
      if (buffer.length - at < 4) break;
      length = buffer.readUInt16BE(at + 2);
      offset += 2;
    } else if (length === 127) {
      if (buffer.length - at < 10) break;
      length = Number(buffer.readBigUInt64BE(at + 2));
      offset += 8;
    }
    const maskKey = masked ? buffer.subarray(offset, offset + 4) : null;
    if (masked) offset += 4;
    if (buffer.length < offset + length) break;
    const payload = Buffer.from(buffer.subarray(offset, offset + length));
    if (maskKey) for (let i = 0; i < payload.length; i++) payload[i] ^= maskKey[i & 3];
    frames.push({ fin: (buffer[at] & 0x80) !== 0, opcode: buffer[at] & 0x0f, masked, payload });
    at = offset + length;
  }
  return { frames, rest: buffer.subarray(at) };
}

interface ScriptedConnection {
  socket: Socket;
  /** The upgrade request's head, lower-cased header names. */
  headers: Map<string, string>;
  /** The 101 with the right accept value. */
  accept(): string;
  /** Frames the proxy sent, in order. */
  frames: ClientFrame[];
}

/** A backend that hands each upgrade request to `script`, which answers it with raw bytes. */
async function scriptedBackend(t: ExecutionContext, script: (connection: ScriptedConnection) => void): Promise<{ address: string; connections: ScriptedConnection[] }> {
  const connections: ScriptedConnection[] = [];
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let connection: ScriptedConnection | null = null;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!connection) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buffered.toString('latin1', 0, end).split('\r\n');
        buffered = buffered.subarray(end + 4);
        const headers = new Map(lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
        const key = headers.get('sec-websocket-key') ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        connection = {
          socket,
          headers,
          frames: [],
          accept: () => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        };
        connections.push(connection);
        script(connection);
      }
      const { frames, rest } = clientFrames(buffered);
      buffered = rest;
      connection.frames.push(...frames);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of connections) c.socket.destroy();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, connections };
}

function proxyTo(address: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { workers: 1, pools: { main: { backends: [address] } }, ...extra };
}

test('fragments arrive whole, a ping between them is answered, a message sent with the 101 is kept, and frames split inside their heads are read', async (t) => {
  const long = 'y'.repeat(200);
  const backend = await scriptedBackend(t, (c) => {
    // The 101 and a first message in one write; then a message in three fragments around a ping;
    // then a frame cut after its first byte, and one cut inside its 16-bit length.
    c.socket.write(Buffer.concat([Buffer.from(c.accept()), serverFrame(0x1, 'welcome')]));
    const split = serverFrame(0x1, 'split');
    const longFrame = serverFrame(0x1, long);
    const writes = [
      Buffer.concat([serverFrame(0x1, 'frag', false), serverFrame(0x9, 'are you there')]),
      Buffer.concat([serverFrame(0x0, 'men', false), serverFrame(0x0, 'ted')]),
      split.subarray(0, 1),
      Buffer.concat([split.subarray(1), longFrame.subarray(0, 3)]),
      longFrame.subarray(3),
    ];
    const next = () => {
      const chunk = writes.shift();
      if (!chunk) return;
      c.socket.write(chunk);
      setTimeout(next, 50);
    };
    setTimeout(next, 100);
  });
  const proxy = await startProxy(t, proxyTo(backend.address));
  const messages: string[] = [];
  // Listening before open: the first message may come in the same read as the 101.
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
  ws.on('message', (data: Buffer) => messages.push(data.toString()));
  await waitFor('every message', () => messages.length === 4).catch((err) => t.fail(`${err.message}: got ${JSON.stringify(messages)}`));
  t.deepEqual(messages, ['welcome', 'fragmented', 'split', long]);
  const pong = backend.connections[0].frames.find((f) => f.opcode === 0xa);
  t.is(pong?.payload.toString(), 'are you there');
  t.true(pong?.masked);
  ws.close();
  await closed(ws);
});

test('client messages reach the backend masked and intact, at every length encoding', async (t) => {
  const backend = await scriptedBackend(t, (c) => c.socket.write(c.accept()));
  const proxy = await startProxy(t, proxyTo(backend.address));
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('backend connection', () => backend.connections.length === 1);
  const sizes = [0, 5, 125, 126, 200, 65535, 70_000];
  const sent = sizes.map((size) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + size) % 251)));
  for (const data of sent) ws.send(data);
  ws.send('text ünïcode');
  const frames = backend.connections[0].frames;
  await waitFor('every frame at the backend', () => frames.length === sent.length + 1);
  t.true(frames.every((f) => f.masked && f.fin));
  t.deepEqual(frames.map((f) => f.opcode), [...sizes.map(() => 0x2), 0x1]);
  sent.forEach((data, i) => t.true(frames[i].payload.equals(data), `size ${sizes[i]}`));
  t.is(frames.at(-1)!.payload.toString(), 'text ünïcode');
  ws.close(4001, 'done');
  await waitFor('close frame', () => frames.length === sent.length + 2);
  t.is(frames.at(-1)!.opcode, 0x8);
  t.is(frames.at(-1)!.payload.readUInt16BE(0), 4001);
  t.is(frames.at(-1)!.payload.subarray(2).toString(), 'done');
});

/** Sends an upgrade with `x-case: which` and reads the answer; rejects if it upgrades. */
function upgradeVia(port: number, which: string): Promise<{ status: number; type: string | undefined; body: string; injected?: string | string[]; error?: string | string[] }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path: '/',
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'x-case': which },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body, injected: res.headers['x-injected'], error: res.headers['x-fairway-error'] }));
    });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject);
    req.end();
  });
}

test('a refusal with a chunked body is relayed whole; a 101 with a wrong accept value, or a head with a bare LF, is a 502', async (t) => {
  const backend = await scriptedBackend(t, (c) => {
    if (c.headers.get('x-case') === 'bare-lf') {
      c.socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\nx-injected: yes\r\nContent-Length: 2\r\n\r\nno');
    } else if (c.headers.get('x-case') === 'chunked') {
      c.socket.write('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n');
      setTimeout(() => c.socket.write('7\r\nallowed\r\n0\r\n\r\n'), 50);
    } else {
      c.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCB2YWx1ZQ==\r\n\r\n');
    }
  });
  const proxy = await startProxy(t, proxyTo(backend.address));
  const upgrade = (which: string) => upgradeVia(proxy.port, which);
  t.like(await upgrade('chunked'), { status: 401, type: 'text/plain', body: 'not allowed', injected: undefined });
  const wrong = await upgrade('wrong-accept');
  t.is(wrong.status, 502);
  const bareLf = await upgrade('bare-lf');
  t.is(bareLf.status, 502);
  t.is(bareLf.injected, undefined);
  await waitFor('counter back to zero', () => proxy.table.active(proxy.plan.backendSlots[`main/${backend.address}`]) === 0);
});

test('a backend that never answers the upgrade gets a 504 after the route timeout', async (t) => {
  const backend = await scriptedBackend(t, () => {});
  const proxy = await startProxy(t, proxyTo(backend.address, { timeouts: { response: '300ms' } }));
  const refused = await t.throwsAsync(openSocket(`ws://127.0.0.1:${proxy.port}/`));
  t.regex(refused!.message, /unexpected response 504/);
  await waitFor('the upstream connection to be dropped', () => backend.connections[0]?.socket.destroyed || backend.connections[0]?.socket.readableEnded);
});

test('a backend breaking the protocol (invalid UTF-8 text, masked frame) ends only that session with 1014', async (t) => {
  const backend = await scriptedBackend(t, (c) => c.socket.write(c.accept()));
  const proxy = await startProxy(t, proxyTo(backend.address));
  const slot = proxy.plan.backendSlots[`main/${backend.address}`];
  const first = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  const second = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  const third = await openSocket(`ws://127.0.0.1:${proxy.port}/`);
  await waitFor('three backend connections', () => backend.connections.length === 3);
  const ends = [closed(first), closed(second)];
  backend.connections[0].socket.write(serverFrame(0x1, Buffer.from([0xc3, 0x28])));
  backend.connections[1].socket.write(Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x61 ^ 1, 0x62 ^ 2]));
  t.deepEqual((await Promise.all(ends)).map((e) => e.code), [1014, 1014]);
  const reasons = await waitForCloseFrames(backend.connections.slice(0, 2));
  t.deepEqual(reasons, [1007, 1002]);
  backend.connections[2].socket.write(serverFrame(0x1, 'still fine'));
  t.is((await nextMessage(third)).data.toString(), 'still fine');
  third.terminate();
  await waitFor('counter back to zero', () => proxy.table.active(slot) === 0);
});

async function waitForCloseFrames(connections: ScriptedConnection[]): Promise<number[]> {
  await waitFor('close frames at the backend', () => connections.every((c) => c.frames.some((f) => f.opcode === 0x8)));
  return connections.map((c) => c.frames.find((f) => f.opcode === 0x8)!.payload.readUInt16BE(0));
}

test('the same malformed heads the HTTP client refuses are a 502 for an upgrade, never relayed', async (t) => {
  const backend = await scriptedBackend(t, (c) => c.socket.write(MALFORMED_HEADS[Number(c.headers.get('x-case'))][1]));
  const proxy = await startProxy(t, proxyTo(backend.address));
  for (const [i, [name]] of MALFORMED_HEADS.entries()) {
    const answer = await upgradeVia(proxy.port, String(i));
    t.is(answer.status, 502, name);
    t.is(answer.error, 'upstream-handshake', name);
  }
  await waitFor('counter back to zero', () => proxy.table.active(proxy.plan.backendSlots[`main/${backend.address}`]) === 0);
});
