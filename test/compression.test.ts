// WebSocket compression (permessage-deflate, RFC 7692) through real sockets: websocket.compression
// off, shared and dedicated, each leg agreed on its own, what goes over each wire, and what a
// backend may answer.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { deflateRawSync } from 'node:zlib';
import test, { type ExecutionContext } from 'ava';
import { WebSocket, WebSocketServer } from 'ws';
import { activeTotal, closed, nextMessage, startProxy, waitFor } from './helpers.js';

/** A `ws` echo backend that agrees permessage-deflate, and what each upgrade offered. */
async function deflateBackend(t: ExecutionContext) {
  const offers: (string | undefined)[] = [];
  const agreed: string[] = [];
  /** What the backend's 101 answered to each offer. */
  const answered: string[] = [];
  const sockets: WebSocket[] = [];
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
  server.on('headers', (headers) => answered.push(headers.find((line) => /^sec-websocket-extensions:/i.test(line)) ?? ''));
  server.on('connection', (ws, req: IncomingMessage) => {
    offers.push(req.headers['sec-websocket-extensions']);
    agreed.push(ws.extensions);
    sockets.push(ws);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await once(server, 'listening');
  t.teardown(() => {
    for (const ws of server.clients) ws.terminate();
    server.close();
  });
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { address, offers, agreed, answered, sockets, pool: { pools: { main: { backends: [address] } } } };
}

/** A client offering permessage-deflate or not, and the extensions fairway's 101 agreed. */
async function open(port: number, perMessageDeflate: boolean): Promise<{ ws: WebSocket; agreed: string }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate });
  let agreed = '';
  ws.once('upgrade', (res: IncomingMessage) => (agreed = String(res.headers['sec-websocket-extensions'] ?? '')));
  await once(ws, 'open');
  return { ws, agreed };
}

/** Bytes a `ws` socket has read and written on its TCP connection. */
const wire = (ws: WebSocket) => (ws as unknown as { _socket: Socket })._socket;
const TEXT = 'the same chat line, over and over; '.repeat(3000);

for (const mode of ['shared', 'dedicated'] as const) {
  test(`compression ${mode}: each leg agrees permessage-deflate, messages go compressed both ways and arrive intact`, async (t) => {
    const backend = await deflateBackend(t);
    const proxy = await startProxy(t, { workers: 1, websocket: { compression: mode }, ...backend.pool });
    const { ws, agreed } = await open(proxy.port, true);
    t.regex(agreed, /^permessage-deflate/);
    // shared keeps no window per session: the client may not keep one either.
    if (mode === 'shared') t.regex(agreed, /client_no_context_takeover/);
    else t.notRegex(agreed, /no_context_takeover/);
    await waitFor('the backend leg', () => backend.agreed.length === 1);
    t.is(backend.offers[0], 'permessage-deflate; client_no_context_takeover; server_no_context_takeover');
    t.regex(backend.agreed[0], /^permessage-deflate/);
    t.regex(backend.answered[0], /server_no_context_takeover/);

    const clientWire = wire(ws);
    const backendWire = wire(backend.sockets[0]);
    const [clientOut, clientIn, backendIn, backendOut] = [clientWire.bytesWritten, clientWire.bytesRead, backendWire.bytesRead, backendWire.bytesWritten];
    for (let i = 0; i < 3; i++) {
      ws.send(`${i} ${TEXT}`);
      const echoed = await nextMessage(ws);
      t.is(echoed.data.toString(), `${i} ${TEXT}`);
      t.false(echoed.isBinary);
    }
    const binary = Buffer.alloc(50_000, 7);
    ws.send(binary);
    t.true((await nextMessage(ws)).data.equals(binary));
    const sent = 3 * TEXT.length + binary.length;
    // Each direction of each leg carries a small share of what the messages hold.
    for (const [name, bytes] of [
      ['client → fairway', clientWire.bytesWritten - clientOut],
      ['fairway → backend', backendWire.bytesRead - backendIn],
      ['backend → fairway', backendWire.bytesWritten - backendOut],
      ['fairway → client', clientWire.bytesRead - clientIn],
    ] as const) {
      t.true(bytes < sent / 10, `${name}: ${bytes} bytes for ${sent}`);
    }
    ws.close();
    await closed(ws);
    await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [{ address: backend.address }]) === 0);
  });
}

test('compression off (the default): neither leg agrees it, whatever the client offers', async (t) => {
  const backend = await deflateBackend(t);
  const proxy = await startProxy(t, { workers: 1, ...backend.pool });
  const { ws, agreed } = await open(proxy.port, true);
  t.is(agreed, '');
  await waitFor('the backend leg', () => backend.agreed.length === 1);
  t.is(backend.offers[0], undefined);
  t.is(backend.agreed[0], '');
  ws.send(TEXT);
  t.is((await nextMessage(ws)).data.toString(), TEXT);
  ws.close();
  await closed(ws);
});

test('compression on, a client that does not offer it: that leg runs uncompressed, the backend leg compressed', async (t) => {
  const backend = await deflateBackend(t);
  const proxy = await startProxy(t, { workers: 1, websocket: { compression: 'shared' }, ...backend.pool });
  const { ws, agreed } = await open(proxy.port, false);
  t.is(agreed, '');
  await waitFor('the backend leg', () => backend.agreed.length === 1);
  t.regex(backend.agreed[0], /^permessage-deflate/);
  ws.send(TEXT);
  t.is((await nextMessage(ws)).data.toString(), TEXT);
  ws.close();
  await closed(ws);
});

/** A raw backend: answers each upgrade with a 101 carrying `extensions`, then sends `after` (if any). */
async function rawBackend(t: ExecutionContext, extensions: (which: string) => string, after?: Buffer) {
  const closeCodes: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (chunk) => {
      if (!head.includes('\r\n\r\n')) {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const key = /sec-websocket-key: (\S+)/i.exec(head)![1];
        const which = /x-case: (\S+)/i.exec(head)?.[1] ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: ${extensions(which)}\r\n\r\n`);
        if (after) socket.write(after);
        return;
      }
      // A masked close frame from fairway: its code, unmasked.
      if ((chunk[0] & 0x0f) === 0x8 && chunk.length >= 8) closeCodes.push(((chunk[6] ^ chunk[2]) << 8) | (chunk[7] ^ chunk[3]));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, closeCodes };
}

test('a backend that answers permessage-deflate with context takeover, or with what was not offered, gets its upgrade refused with 502', async (t) => {
  const answers: Record<string, string> = {
    takeover: 'permessage-deflate',
    'client-window': 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10',
    twice: 'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    other: 'x-webkit-deflate-frame',
    two: 'permessage-deflate; server_no_context_takeover, permessage-deflate',
  };
  const backend = await rawBackend(t, (which) => answers[which]);
  const proxy = await startProxy(t, { workers: 1, websocket: { compression: 'shared' }, pools: { main: { backends: [backend.address] } } });
  for (const which of Object.keys(answers)) {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { headers: { 'x-case': which } });
    const error = await new Promise<Error>((resolve) => ws.once('error', resolve));
    t.regex(error.message, /502/, which);
  }
  await waitFor('counter back to zero', () => activeTotal(proxy, 'main', [{ address: backend.address }]) === 0);
});

test('a compressed message from the backend that inflates past max_message, or does not inflate, ends the session (1009 / 1007 to the backend, 1014 to the client)', async (t) => {
  const bomb = deflateRawSync(Buffer.alloc(2 * 1024 * 1024), { finishFlush: 2 });
  const frameOf = (payload: Buffer) => Buffer.concat([Buffer.from([0xc1, 126, payload.length >> 8, payload.length & 0xff]), payload]);
  for (const [name, payload, code] of [
    ['past max_message', bomb.subarray(0, bomb.length - 4), 1009],
    ['not deflate data', Buffer.from('this is not deflate data at all, no'), 1007],
  ] as const) {
    const backend = await rawBackend(t, () => 'permessage-deflate; server_no_context_takeover; client_no_context_takeover', frameOf(payload));
    const proxy = await startProxy(t, { workers: 1, websocket: { compression: 'shared', max_message: '1mb' }, pools: { main: { backends: [backend.address] } } });
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { perMessageDeflate: true });
    t.is((await closed(ws)).code, 1014, name);
    await waitFor(`${name}: the close frame at the backend`, () => backend.closeCodes.length === 1);
    t.is(backend.closeCodes[0], code, name);
  }
});

test('a compressed message from the backend in fragments arrives whole; RSV1 on a continuation or a ping breaks the protocol (1002); a smaller server window is accepted', async (t) => {
  const text = 'fragmented and compressed, '.repeat(200);
  const packed = deflateRawSync(Buffer.from(text), { finishFlush: 2 });
  const body = packed.subarray(0, packed.length - 4);
  const half = body.length >> 1;
  const frameOf = (first: number, payload: Buffer) => Buffer.concat([Buffer.from([first, 126, payload.length >> 8, payload.length & 0xff]), payload]);
  const cases = [
    // RSV1 and text on the first frame (no FIN), FIN on the continuation.
    ['fragments', Buffer.concat([frameOf(0x41, body.subarray(0, half)), frameOf(0x80, body.subarray(half))]), 0],
    ['RSV1 on a continuation', Buffer.concat([frameOf(0x41, body.subarray(0, half)), frameOf(0xc0, body.subarray(half))]), 1002],
    ['RSV1 on a ping', Buffer.from([0xc9, 0x00]), 1002],
  ] as const;
  for (const [name, after, code] of cases) {
    const backend = await rawBackend(t, () => 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10', after);
    const proxy = await startProxy(t, { workers: 1, websocket: { compression: 'shared' }, pools: { main: { backends: [backend.address] } } });
    // Listening before the open: the backend's message may come with it.
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`, { perMessageDeflate: true });
    const first = nextMessage(ws);
    const end = closed(ws);
    if (code === 0) {
      t.is((await first).data.toString(), text, name);
      ws.close();
      await end;
      continue;
    }
    t.is((await end).code, 1014, name);
    await waitFor(`${name}: the close frame at the backend`, () => backend.closeCodes.length === 1);
    t.is(backend.closeCodes[0], code, name);
  }
});
