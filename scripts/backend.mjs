// A small backend for trying fairway by hand (and for tests that kill it): answers HTTP with its
// name, echoes WebSocket messages, and has a /health whose answer can be changed.
// Usage: node scripts/backend.mjs PORT [NAME]

import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 9001);
const name = process.argv[3] ?? `backend-${port}`;

// GET /health answers this status; POST /control/health?status=N changes it, /control/errors?status=N
// makes every other request answer N (0 = normal again).
let healthStatus = 200;
let errorStatus = 0;

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/health') {
    res.statusCode = healthStatus;
    return res.end(healthStatus === 200 ? 'ok' : 'unhealthy');
  }
  if (req.method === 'POST' && url.pathname.startsWith('/control/')) {
    const status = Number(url.searchParams.get('status'));
    if (url.pathname === '/control/health') healthStatus = status;
    if (url.pathname === '/control/errors') errorStatus = status;
    return res.end('ok');
  }
  if (url.pathname === '/sessions') return res.end(String(wss.clients.size));
  res.setHeader('x-backend', name);
  if (errorStatus) {
    res.statusCode = errorStatus;
    return res.end(`${name} failing on purpose`);
  }
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from ${name}: ${req.method} ${req.url}\n`);
});
const wss = new WebSocketServer({ server, verifyClient: (_info, accept) => (errorStatus ? accept(false, errorStatus) : accept(true)) });
wss.on('connection', (socket) => {
  socket.send(`connected to ${name}`);
  socket.on('message', (data, isBinary) => socket.send(isBinary ? data : `${name}: ${data}`, { binary: isBinary }));
});
server.listen(port, '127.0.0.1', () => console.log(`${name} listening on 127.0.0.1:${port}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
