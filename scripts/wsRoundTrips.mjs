// WebSocket round-trip load: N sessions each send a message and wait for its echo, for D seconds.
// Usage: node scripts/wsRoundTrips.mjs URL SESSIONS SECONDS [--on-go]  → prints JSON { roundTrips, perSecond }
// --on-go: once every session is open, print "ready" and start only when a line comes on stdin,
// so that several clients measure the same window (a client still opening its sessions while
// another is already measuring would leave that one the proxy to itself).
import { once } from 'node:events';
import WebSocket from 'ws';

const [url, sessionsArg, secondsArg, startFlag] = process.argv.slice(2);
const sessions = Number(sessionsArg ?? 100);
const seconds = Number(secondsArg ?? 10);
const payload = Buffer.alloc(64, 97);
const sockets = await Promise.all(
  Array.from({ length: sessions }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  })),
);
if (startFlag === '--on-go') {
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
}
let roundTrips = 0;
let running = true;
for (const ws of sockets) {
  ws.on('message', () => {
    roundTrips++;
    if (running) ws.send(payload);
  });
  ws.send(payload);
}
const started = performance.now();
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
running = false;
const elapsed = (performance.now() - started) / 1000;
for (const ws of sockets) ws.terminate();
process.stdout.write(`${JSON.stringify({ roundTrips, perSecond: Math.round(roundTrips / elapsed) })}\n`);
