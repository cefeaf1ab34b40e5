// The Node way, as a benchmark peer: http-proxy on node:cluster workers, a keep-alive agent toward
// the backends, WebSocket upgrades proxied. Not part of fairway; `npm run bench` runs it beside the
// other proxies.
// Usage: node scripts/nodeHttpProxy.mjs PORT WORKERS HTTP_BACKEND_PORT WS_BACKEND_PORT

import cluster from 'node:cluster';
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const [port, workers, httpBackend, wsBackend] = process.argv.slice(2).map(Number);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === workers) console.log(`node-http-proxy listening on ${port} with ${workers} workers`);
  });
  let stopping = false;
  // A worker that dies is not replaced: the benchmark would be measuring something else.
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`node-http-proxy worker ${worker.process.pid} exited (${code ?? signal})`);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      stopping = true;
      for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
      setTimeout(() => process.exit(0), 200).unref();
    });
  }
} else {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const proxy = httpProxy.createProxyServer({ agent, xfwd: true });
  proxy.on('error', (_err, _req, res) => {
    // res is a ServerResponse for HTTP and a socket for upgrades.
    if ('writeHead' in res && !res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  const server = createServer((req, res) => proxy.web(req, res, { target: `http://127.0.0.1:${httpBackend}` }));
  server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head, { target: `http://127.0.0.1:${wsBackend}` }));
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');
}
