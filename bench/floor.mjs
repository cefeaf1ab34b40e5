// The floor of any HTTP proxy on Node and uWS, in its two parts: uWS answering requests itself (the
// client side), and a bare client on raw sockets toward the backend (the backend side: the system
// calls and little else). `npm run bench` and `npm run bench:upstream` both measure it with these.
// The same two parts for WebSocket round trips: uWS echoing messages itself (the echo backend of
// scripts/uwsEchoBackend.mjs), and the bare session client below toward that backend.
// Usage: node bench/floor.mjs uws PORT [READS]               (answers `ok` on 127.0.0.1:PORT, reading
//                                                             the client's address READS times a request)
//        node bench/floor.mjs client PORT SECONDS IN_FLIGHT  (GET / from 127.0.0.1:PORT; prints JSON)
//        node bench/floor.mjs ws PORT SECONDS SESSIONS       (64-byte round trips toward a WebSocket
//                                                             echo on 127.0.0.1:PORT; prints JSON)
//        node bench/floor.mjs address PORT                   (µs of one read of the client's address
//                                                             in a loop, and of a call uWS answers
//                                                             without the kernel; prints JSON)

import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';

/** What fairway sends a backend for `GET /` from wrk (the bare client sends the same head). */
export const forwardedHeaders = (port) => ['host', `127.0.0.1:${port}`, 'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', `127.0.0.1:${port}`];

const READ = Buffer.allocUnsafe(64 * 1024);
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Not a usable client: no chunked bodies, no errors, no timeouts. Keep-alive connections read into
 * one buffer through net's `onread` (no stream events), a response found by its Content-Length.
 * `send(done)` sends one GET / and calls done(status, body).
 */
export function bareClient(port) {
  const idle = [];
  const headers = forwardedHeaders(port);
  let text = 'GET / HTTP/1.1\r\n';
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  const head = Buffer.from(`${text}\r\n`, 'latin1');
  function connection() {
    const state = { socket: null, done: null, pending: null };
    const onRead = (length, buffer) => {
      let bytes = buffer.subarray(0, length);
      if (state.pending) bytes = Buffer.concat([state.pending, bytes]);
      state.pending = null;
      const end = bytes.indexOf(HEAD_END);
      const headText = end < 0 ? '' : bytes.toString('latin1', 0, end);
      const bodyLength = Number(/\r\ncontent-length: *(\d+)/i.exec(headText)?.[1] ?? 0);
      if (end < 0 || bytes.length < end + 4 + bodyLength) {
        state.pending = Buffer.from(bytes);
        return;
      }
      const done = state.done;
      state.done = null;
      idle.push(state);
      done(Number(headText.slice(9, 12)), bytes.toString('latin1', end + 4, end + 4 + bodyLength));
    };
    state.socket = connect({ host: '127.0.0.1', port, onread: { buffer: READ, callback: onRead } });
    state.socket.setNoDelay(true);
    return state;
  }
  return {
    send(done) {
      const state = idle.pop() ?? connection();
      state.done = done;
      state.socket.write(head);
    },
    close: () => idle.forEach((s) => s.socket.destroy()),
  };
}

/**
 * Keeps `inFlight` requests of `client` going for `seconds` after checking one answer; returns
 * requests per second and this process's CPU per request (µs).
 */
export async function drive(client, seconds, inFlight) {
  const [status, body] = await new Promise((resolve) => client.send((...answer) => resolve(answer)));
  if (status !== 200 || body !== 'ok\n') throw new Error(`wrong answer: ${status} ${JSON.stringify(body)}`);
  let completed = 0;
  let running = true;
  const deadline = performance.now() + seconds * 1000;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve, reject) => {
    let open = 0;
    const next = () => {
      open++;
      client.send((code) => {
        open--;
        if (code !== 200) return reject(new Error(`status ${code}`));
        completed++;
        if (running && performance.now() < deadline) next();
        else {
          running = false;
          if (open === 0) resolve();
        }
      });
    };
    for (let i = 0; i < inFlight; i++) next();
  });
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return { perSecond: Math.round(completed / elapsed), requests: completed, cpuMicrosPerRequest: (cpu.user + cpu.system) / completed };
}

/** A 64-byte binary frame, masked with a fixed key (a client must mask; the key's value costs nothing here). */
const FRAME = (() => {
  const frame = Buffer.alloc(2 + 4 + 64);
  frame[0] = 0x82;
  frame[1] = 0x80 | 64;
  frame.set([0x11, 0x22, 0x33, 0x44], 2);
  for (let i = 0; i < 64; i++) frame[6 + i] = 0x61 ^ frame[2 + (i % 4)];
  return frame;
})();
/** What the echo sends back: a 2-byte header and the 64 bytes, unmasked. */
const ECHO_LENGTH = 2 + 64;

/**
 * Not a usable WebSocket client: no handshake check beyond the status, no fragments, no control
 * frames, no close. `sessions` connections upgraded on raw sockets read through net's `onread`;
 * each sends one frame and waits for the 66 bytes of its echo before the next. For `seconds` after
 * a second of warm-up; returns round trips per second and this process's CPU per round trip (µs).
 */
export async function bareWebSocketRoundTrips(port, seconds, sessions) {
  let roundTrips = 0;
  let phase = 'warm-up';
  const upgrade = Buffer.from(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    'latin1',
  );
  const opened = Array.from({ length: sessions }, () => new Promise((resolve, reject) => {
    let upgraded = false;
    let head = '';
    let due = ECHO_LENGTH;
    const onRead = (length, buffer) => {
      if (!upgraded) {
        head += buffer.toString('latin1', 0, length);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head.slice(0, 40)}`));
        upgraded = true;
        resolve(socket);
        return;
      }
      // One frame in flight per session: the bytes that come are its echo, in one read or several.
      due -= length;
      while (due <= 0) {
        due += ECHO_LENGTH;
        if (phase === 'done') return;
        if (phase === 'measure') roundTrips++;
        socket.write(FRAME);
      }
    };
    const socket = connect({ host: '127.0.0.1', port, onread: { buffer: READ, callback: onRead } });
    socket.setNoDelay(true);
    socket.once('error', reject);
    socket.write(upgrade);
  }));
  const sockets = await Promise.all(opened);
  for (const socket of sockets) socket.write(FRAME);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  phase = 'measure';
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  phase = 'done';
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  for (const socket of sockets) socket.destroy();
  if (roundTrips === 0) throw new Error('no echo came back');
  return { perSecond: Math.round(roundTrips / elapsed), roundTrips, cpuMicrosPerRoundTrip: (cpu.user + cpu.system) / roundTrips };
}

/**
 * Inside one request's handler, CPU µs of a call of `getRemoteAddress` (uWS asks the kernel:
 * getpeername, then an ArrayBuffer) and of `getProxiedRemoteAddress` (an ArrayBuffer of what
 * uWS keeps itself, no system call), each timed over 20 000 calls.
 */
function addressReads(port) {
  const uWS = createRequire(import.meta.url)('uWebSockets.js');
  const CALLS = 20_000;
  const perCall = (res, method) => {
    const before = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) res[method]();
    const cpu = process.cpuUsage(before);
    return (cpu.user + cpu.system) / CALLS;
  };
  return new Promise((resolve, reject) => {
    uWS
      .App()
      .any('/*', (res) => {
        perCall(res, 'getRemoteAddress'); // warm-up
        resolve({ getRemoteAddress: perCall(res, 'getRemoteAddress'), getProxiedRemoteAddress: perCall(res, 'getProxiedRemoteAddress') });
        res.end('ok\n');
      })
      .listen('127.0.0.1', port, (token) => {
        if (!token) return reject(new Error(`cannot listen on ${port}`));
        const socket = connect({ host: '127.0.0.1', port }, () => socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n'));
        socket.on('error', reject);
      });
  });
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const [mode, port, seconds = '4', inFlight = '50'] = process.argv.slice(2);
  if (mode === 'uws') {
    const uWS = createRequire(import.meta.url)('uWebSockets.js');
    // READS > 0: what reading the client's address costs (fairway reads it once a request, for
    // X-Forwarded-For; uWS asks the kernel each time: one getpeername).
    const reads = Number(process.argv[4] ?? 0);
    uWS
      .App()
      .any('/*', (res) => {
        for (let i = 0; i < reads; i++) res.getRemoteAddress();
        res.cork(() => res.end('ok\n'));
      })
      .listen('127.0.0.1', Number(port), (token) => {
        if (!token) process.exit(1);
        console.log(`uws answering on ${port}`);
      });
  } else if (mode === 'client') {
    // A second of warm-up (JIT, connections), then the measured run.
    const client = bareClient(Number(port));
    await drive(client, 1, Number(inFlight));
    console.log(JSON.stringify(await drive(client, Number(seconds), Number(inFlight))));
    client.close();
    process.exit(0);
  } else if (mode === 'address') {
    console.log(JSON.stringify(await addressReads(Number(port))));
    process.exit(0);
  } else if (mode === 'ws') {
    console.log(JSON.stringify(await bareWebSocketRoundTrips(Number(port), Number(seconds), Number(inFlight))));
    process.exit(0);
  } else {
    console.error('usage: node bench/floor.mjs uws PORT | client PORT SECONDS IN_FLIGHT | ws PORT SECONDS SESSIONS');
    process.exit(2);
  }
}
