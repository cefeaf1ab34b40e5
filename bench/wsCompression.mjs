// What websocket.compression costs per session: fairway (1 worker) with compression off, shared
// and dedicated, on each engine; N clients that offer permessage-deflate open a session, send one
// 4 KB text message and get its echo, then stay idle. RSS growth of fairway per session, and the
// bytes one such message takes on the client's wire. Prints a Markdown table.
//
// Usage: npm run bench:compression [-- --sessions 2000]

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket, WebSocketServer } from 'ws';

const at = process.argv.indexOf('--sessions');
const SESSIONS = at > 0 ? Number(process.argv[at + 1]) : 2000;
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fairway-compression-'));
const MESSAGE = JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ user: `user-${i % 7}`, room: 'lobby', text: 'hello there, how is it going today?' })));

const backend = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true });
backend.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
await new Promise((resolve) => backend.once('listening', resolve));

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function measure(engine, compression) {
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const file = join(dir, `${engine}-${compression}.yaml`);
  writeFileSync(file, `listen: 127.0.0.1:${port}\nworkers: 1\nengine: ${engine}\nlog: { level: warn, access: false }\nwebsocket: { compression: ${compression}, ping_interval: 0s }\npools:\n  main:\n    backends: [127.0.0.1:${backend.address().port}]\n`);
  const child = spawn(process.execPath, [join(root, 'dist/bundle/cli.js'), '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  for (let i = 0; i < 300 && !output.includes('fairway is listening'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  const base = rss(child.pid);
  const clients = [];
  let wireBytes = 0;
  for (let i = 0; i < SESSIONS; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, SESSIONS - i) }, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: true });
        await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
        const before = ws._socket.bytesRead;
        ws.send(MESSAGE);
        await new Promise((resolve) => ws.once('message', resolve));
        wireBytes = ws._socket.bytesRead - before;
        clients.push(ws);
      }),
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const grown = rss(child.pid) - base;
  for (const ws of clients) ws.terminate();
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  return { perSession: (grown * 1024) / SESSIONS, wireBytes };
}

const rows = [];
for (const engine of ['uws', 'native-free']) {
  for (const compression of ['off', 'shared', 'dedicated']) rows.push([engine, compression, await measure(engine, compression)]);
}
backend.close();
console.log(`\n${SESSIONS} idle sessions after one ${MESSAGE.length}-byte text message each, fairway 1 worker:\n`);
console.log('| engine | websocket.compression | RSS KiB per session | bytes of the echoed message on the client wire |');
console.log('| --- | --- | ---: | ---: |');
for (const [engine, compression, r] of rows) console.log(`| ${engine} | ${compression} | ${r.perSession.toFixed(1)} | ${r.wireBytes} |`);
