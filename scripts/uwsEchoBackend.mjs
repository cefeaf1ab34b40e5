// A fast WebSocket echo backend on uWS for benchmarks. Usage: node scripts/uwsEchoBackend.mjs PORT
import uWS from 'uWebSockets.js';

const port = Number(process.argv[2] ?? 9101);
uWS
  .App()
  .ws('/*', { idleTimeout: 0, maxPayloadLength: 1024 * 1024, message: (ws, message, isBinary) => ws.send(message, isBinary) })
  .any('/*', (res) => res.end('ok'))
  .listen('127.0.0.1', port, (socket) => {
    if (!socket) process.exit(1);
    process.stdout.write(`echo backend on 127.0.0.1:${port}\n`);
  });
