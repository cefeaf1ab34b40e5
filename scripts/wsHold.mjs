// Opens COUNT idle WebSocket sessions to URL and holds them until stdin closes.
// Usage: node scripts/wsHold.mjs URL COUNT   (prints "held N" once all are open)
import WebSocket from 'ws';

const [url, countText] = process.argv.slice(2);
const count = Number(countText);
const sockets = [];
let failed = 0;
for (let start = 0; start < count; start += 200) {
  const batch = Array.from({ length: Math.min(200, count - start) }, () => new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(sockets.push(ws)));
    ws.once('error', () => resolve(failed++));
  }));
  await Promise.all(batch);
}
process.stdout.write(`held ${sockets.length} failed ${failed}\n`);
process.stdin.on('end', () => process.exit(0)).resume();
