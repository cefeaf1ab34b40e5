// A small backend for trying fairway by hand: answers HTTP with its name and echoes WebSocket messages.
// Usage: node scripts/backend.mjs PORT [NAME]

import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 9001);
const name = process.argv[3] ?? `backend-${port}`;

const server = createServer((req, res) => {
  res.setHeader('x-backend', name);
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from ${name}: ${req.method} ${req.url}\n`);
});
const wss = new WebSocketServer({ server });
wss.on('connection', (socket) => {
  socket.send(`connected to ${name}`);
  socket.on('message', (data, isBinary) => socket.send(isBinary ? data : `${name}: ${data}`, { binary: isBinary }));
});
server.listen(port, '127.0.0.1', () => console.log(`${name} listening on 127.0.0.1:${port}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
