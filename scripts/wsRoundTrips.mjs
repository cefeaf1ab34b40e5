// WebSocket round-trip load: N sessions each send a message and wait for its echo, for D seconds.
// Usage: node scripts/wsRoundTrips.mjs URL SESSIONS SECONDS  → prints JSON { roundTrips, perSecond }
import WebSocket from 'ws';

const [url, sessionsArg, secondsArg] = process.argv.slice(2);
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
