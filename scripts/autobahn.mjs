// WebSocket conformance: runs the Autobahn|Testsuite fuzzing client against a `ws` echo server
// directly and through fairway on each engine (permessage-deflate on), then prints the summary
// table of docs/operations.md. The testsuite is not on npm or Debian: it runs where it is
// installed, named by WSTEST (a command line, e.g. "wstest" or "python3 /opt/abpy3/run.py").
//
// Usage: WSTEST="wstest" node scripts/autobahn.mjs [--quick] [--cases 1.*,2.*] [--agents LIST] [--out DIR]
//   --quick   leaves out the 9.* performance cases (minutes instead of a quarter of an hour)
//   --agents  which of direct,fairway-uws,fairway-native-free to test (default: all three)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const wstest = process.env.WSTEST;
if (!wstest) {
  console.error('WSTEST is not set: name the Autobahn|Testsuite command, e.g. WSTEST=wstest or WSTEST="python3 /path/run.py"');
  process.exit(2);
}
const cases = (option('--cases') ?? '*').split(',');
const exclude = args.includes('--quick') ? ['9.*'] : [];
const agents = (option('--agents') ?? 'direct,fairway-uws,fairway-native-free').split(',');
const out = option('--out') ?? mkdtempSync(join(tmpdir(), 'fairway-autobahn-'));
mkdirSync(out, { recursive: true });

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function answersHttp(port, deadline = Date.now() + 60_000) {
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`nothing answered on ${port}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

const echo = new WebSocketServer({ host: '127.0.0.1', port: await freePort(), perMessageDeflate: true, maxPayload: 64 * 1024 * 1024 });
echo.on('connection', (socket) => {
  socket.on('error', () => {});
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
await new Promise((resolve) => echo.once('listening', resolve));
const echoPort = echo.address().port;

const children = [];
const servers = agents.includes('direct') ? [{ agent: 'direct', url: `ws://127.0.0.1:${echoPort}` }] : [];
for (const engine of ['uws', 'native-free'].filter((name) => agents.includes(`fairway-${name}`))) {
  const port = await freePort();
  const file = join(out, `fairway-${engine}.json`);
  writeFileSync(file, JSON.stringify({
    listen: `127.0.0.1:${port}`,
    engine,
    workers: 2,
    log: { level: 'warn', access: false },
    websocket: { compression: 'shared' },
    pools: { echo: { backends: [`127.0.0.1:${echoPort}`] } },
    routes: [{ match: { path: '/' }, pool: 'echo' }],
  }));
  const child = spawn(process.execPath, ['dist/bundle/cli.js', '--config', file], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  await answersHttp(port);
  servers.push({ agent: `fairway-${engine}`, url: `ws://127.0.0.1:${port}` });
}

const spec = join(out, 'fuzzingclient.json');
writeFileSync(spec, JSON.stringify({ outdir: join(out, 'reports'), servers, cases, 'exclude-cases': exclude, 'exclude-agent-cases': {} }));
const started = Date.now();
const [command, ...commandArgs] = wstest.split(' ');
// Not spawnSync: the echo server answers from this process's event loop.
const run = spawn(command, [...commandArgs, '-m', 'fuzzingclient', '-s', spec], { cwd: out, stdio: ['ignore', 'ignore', 'inherit'] });
const [status, signal] = await once(run, 'exit');
const seconds = Math.round((Date.now() - started) / 1000);
for (const child of children) child.kill('SIGTERM');
echo.close();
const indexFile = join(out, 'reports', 'index.json');
if (status !== 0 || !existsSync(indexFile)) {
  console.error(`wstest exited with ${status ?? signal}, without ${indexFile}`);
  process.exit(1);
}

const index = JSON.parse(readFileSync(indexFile, 'utf8'));
const behaviors = ['OK', 'NON-STRICT', 'INFORMATIONAL', 'FAILED', 'UNIMPLEMENTED'];
console.log(`Autobahn|Testsuite fuzzingclient, cases ${cases.join(',')}${exclude.length ? ` without ${exclude.join(',')}` : ''}, ${seconds} s; reports in ${join(out, 'reports')}\n`);
console.log(`| agent | cases | ${behaviors.join(' | ')} | other than OK |`);
console.log(`| --- | --- | ${behaviors.map(() => '---').join(' | ')} | --- |`);
for (const { agent } of servers) {
  const results = Object.entries(index[agent] ?? {});
  const count = (behavior) => results.filter(([, r]) => r.behavior === behavior).length;
  const others = results.filter(([, r]) => r.behavior !== 'OK').map(([id, r]) => `${id} ${r.behavior}`);
  const shown = others.length > 12 ? [...others.slice(0, 12), `… ${others.length - 12} more`] : others;
  console.log(`| ${agent} | ${results.length} | ${behaviors.map(count).join(' | ')} | ${shown.join(', ')} |`);
}
