// A small chat server for the demo: WebSocket rooms, /health, and the chat page at /.
// Messages are relayed to the peer servers, so that clients on different backends chat together;
// each message says which server delivered it.
// Usage: node scripts/chatBackend.mjs NAME PORT [PEER_PORT …]

import { createServer, request } from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const [name, portText, ...peerPorts] = process.argv.slice(2);
const port = Number(portText);

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>fairway chat</title>
<style>body{font:15px system-ui,sans-serif;margin:24px;max-width:640px}#log{border:1px solid #ddd;height:320px;overflow:auto;padding:8px;margin:8px 0}
.via{color:#888;font-size:12px}input{font:inherit;padding:4px}#who{color:#3b7ddd}</style></head><body>
<h2>fairway chat</h2><div>Your session is on <b id="who">…</b>. Open this page in another tab and chat.</div>
<div id="log"></div><form id="f"><input id="text" size="50" autocomplete="off" placeholder="say something"> <button>Send</button></form>
<script>
const room = new URLSearchParams(location.search).get('room') || 'lobby';
const user = 'guest-' + Math.floor(Math.random() * 1000);
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/chat?room=' + encodeURIComponent(room));
const log = document.getElementById('log');
function line(text, via) { const d = document.createElement('div'); d.textContent = text; if (via) { const s = document.createElement('span'); s.className = 'via'; s.textContent = '  via ' + via; d.append(s); } log.append(d); log.scrollTop = log.scrollHeight; }
ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'hello') document.getElementById('who').textContent = m.server; else line(m.user + ': ' + m.text, m.server); };
ws.onclose = (e) => line('(disconnected: ' + e.code + ')');
document.getElementById('f').onsubmit = (e) => { e.preventDefault(); const t = document.getElementById('text'); if (t.value) ws.send(JSON.stringify({ user, text: t.value })); t.value = ''; };
</script></body></html>`;

const rooms = new Map();
function deliver(room, message) {
  const frame = JSON.stringify({ ...message, server: name });
  for (const socket of rooms.get(room) ?? []) if (socket.readyState === WebSocket.OPEN) socket.send(frame);
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/health') return res.end('ok');
  if (url.pathname === '/relay' && req.method === 'POST') {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const { room, message } = JSON.parse(body);
      deliver(room, message);
      res.end();
    });
    return;
  }
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('x-backend', name);
  res.end(PAGE);
});
const wss = new WebSocketServer({ server, path: '/chat' });
wss.on('connection', (socket, req) => {
  const room = new URL(req.url, 'http://x').searchParams.get('room') || 'lobby';
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(socket);
  socket.send(JSON.stringify({ type: 'hello', server: name }));
  socket.on('message', (data) => {
    let message;
    try {
      const parsed = JSON.parse(String(data));
      message = { user: String(parsed.user).slice(0, 40), text: String(parsed.text).slice(0, 500) };
    } catch {
      return;
    }
    deliver(room, message);
    for (const peer of peerPorts) {
      const relay = request({ host: '127.0.0.1', port: Number(peer), path: '/relay', method: 'POST' });
      relay.on('error', () => {});
      relay.end(JSON.stringify({ room, message: { ...message, server: undefined } }));
    }
  });
  socket.on('close', () => rooms.get(room)?.delete(socket));
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`${name} listening on 127.0.0.1:${port}\n`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
// Started by the demo with a pipe on stdin: when the demo goes, however it goes, so do we.
if (!process.stdin.isTTY) process.stdin.on('end', () => process.exit(0)).resume();
