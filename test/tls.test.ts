// TLS termination: certificates made by the test (openssl), real TLS clients, SNI, wss, the
// HTTP-to-HTTPS redirect, and bad input (garbage handshakes, unreadable files).

import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import { connect as connectHttp2 } from 'node:http2';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { WebSocket, WebSocketServer } from 'ws';
import { BACKEND_UP, ConfigError, createLogger, loadConfigFile, startFairway, validateConfig } from '../dist/src/index.js';
import { ENGINE, onePool, openSocket, nextMessage, startBackend, startProxy, waitFor } from './helpers.js';

const CLI = new URL('../dist/bundle/cli.js', import.meta.url).pathname;

/** A CA and two leaf certificates signed by it (a.test, b.test), in a temporary folder. */
function makeCertificates(): { dir: string; ca: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-tls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=fairway test CA');
  for (const name of ['a.test', 'b.test']) {
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\n`);
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
  return { dir, ca: readFileSync(join(dir, 'ca.crt')) };
}

const certs = makeCertificates();
const tlsConfig = (extra: Record<string, unknown> = {}) => ({
  cert: join(certs.dir, 'a.test.crt'),
  key: join(certs.dir, 'a.test.key'),
  certs: [{ names: ['b.test'], cert: join(certs.dir, 'b.test.crt'), key: join(certs.dir, 'b.test.key') }],
  ...extra,
});

/** The certificate subject the proxy presents for an SNI name. */
async function presented(port: number, servername: string): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca: certs.ca, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const subject = socket.getPeerCertificate().subject.CN;
  socket.destroy();
  return subject;
}

test('HTTPS and wss through the proxy, with X-Forwarded-Proto: https; the certificate is chosen by SNI', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { tls: tlsConfig(), ...onePool([backend]) });
  const agent = new Agent({ connect: { ca: certs.ca, servername: 'a.test' } });
  t.teardown(() => agent.close());
  const res = await request(`https://127.0.0.1:${proxy.port}/hello`, { dispatcher: agent, headers: { host: 'a.test' } });
  t.is(res.statusCode, 200);
  t.is(await res.body.text(), 'a');
  t.is(backend.lastHeaders['x-forwarded-proto'], 'https');

  t.is(await presented(proxy.port, 'a.test'), 'a.test');
  t.is(await presented(proxy.port, 'b.test'), 'b.test');
  // An unknown name gets the default certificate (a client that checks names will refuse it).
  t.is(await presented(proxy.port, 'unknown.test'), 'a.test');
  const viaB = new Agent({ connect: { ca: certs.ca, servername: 'b.test' } });
  t.teardown(() => viaB.close());
  t.is(await (await request(`https://127.0.0.1:${proxy.port}/`, { dispatcher: viaB, headers: { host: 'b.test' } })).body.text(), 'a');

  const ws = new WebSocket(`wss://127.0.0.1:${proxy.port}/chat`, { ca: certs.ca, servername: 'b.test' });
  await once(ws, 'open');
  const echoed = once(ws, 'message');
  ws.send('over tls');
  t.is(String((await echoed)[0]), 'over tls');
  t.is(backend.lastHeaders['x-forwarded-proto'], 'https');
  ws.close();
  await once(ws, 'close');
});

test('garbage instead of a TLS handshake, or an old protocol, is refused; the worker keeps serving', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { workers: 1, tls: tlsConfig(), ...onePool([backend]) });
  const garbage = tcpConnect(proxy.port, '127.0.0.1', () => garbage.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02'));
  garbage.on('error', () => {});
  garbage.resume();
  await once(garbage, 'close');
  const old = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: 'a.test', ca: certs.ca, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
  const [error] = await once(old, 'error');
  t.regex(String((error as Error).message), /protocol|version|handshake|alert/i);
  const agent = new Agent({ connect: { ca: certs.ca, servername: 'a.test' } });
  t.teardown(() => agent.close());
  t.is(await (await request(`https://127.0.0.1:${proxy.port}/`, { dispatcher: agent })).body.text(), 'a');
  t.is(backend.hits, 1);
});

test('the HTTP listener redirects to HTTPS with 308, keeping path and query', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { tls: tlsConfig({ redirect: '127.0.0.1:0' }), ...onePool([backend]) });
  const res = await request(`http://127.0.0.1:${proxy.redirectPort}/path/x?room=1`, { headers: { host: 'a.test' } });
  t.is(res.statusCode, 308);
  t.is(res.headers.location, `https://a.test:${proxy.port}/path/x?room=1`);
  await res.body.text();
  t.is(backend.hits, 0);
});

test('unreadable certificate files are config errors naming the field', (t) => {
  const file = join(certs.dir, 'bad.yaml');
  writeFileSync(file, `tls: { cert: ${join(certs.dir, 'missing.crt')}, key: ${join(certs.dir, 'a.test.key')}, certs: [{ names: [], cert: x, key: y }] }\npools: { a: { backends: [127.0.0.1:1] } }\n`);
  const run = spawnSync(process.execPath, [CLI, '--config', file, '--check'], { encoding: 'utf8' });
  t.is(run.status, 2);
  t.regex(run.stderr, /config: tls\.cert: cannot read .*missing\.crt \(ENOENT\)/);
  t.regex(run.stderr, /config: tls\.certs\[0\]\.names: expected a non-empty list of host names/);
  t.regex(run.stderr, /config: tls\.certs\[0\]\.cert: cannot read x \(ENOENT\)/);
});

/** An HTTPS backend with the a.test certificate: answers "secure <path>", echoes WebSocket messages. */
async function startHttpsBackend(t: ExecutionContext): Promise<{ address: string; checks: () => number }> {
  let checks = 0;
  const server = createHttpsServer({ cert: readFileSync(join(certs.dir, 'a.test.crt')), key: readFileSync(join(certs.dir, 'a.test.key')) }, (req, res) => {
    if (req.url === '/health') checks++;
    res.end(`secure ${req.url}`);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket) => socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary })));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const client of wss.clients) client.terminate();
    server.closeAllConnections();
    server.close();
  });
  return { address: `https://127.0.0.1:${(server.address() as { port: number }).port}`, checks: () => checks };
}

test('https and wss backends: verified against the pool CA and server name', async (t) => {
  const backend = await startHttpsBackend(t);
  const proxy = await startProxy(t, {
    pools: {
      main: {
        backends: [backend.address],
        tls: { ca: join(certs.dir, 'ca.crt'), server_name: 'a.test' },
        health: { path: '/health', interval: '1s', timeout: '1s' },
      },
    },
  });
  const res = await request(`http://127.0.0.1:${proxy.port}/hello?x=1`);
  t.is(res.statusCode, 200);
  t.is(await res.body.text(), 'secure /hello?x=1');
  const ws = await openSocket(`ws://127.0.0.1:${proxy.port}/chat`);
  ws.send('over wss');
  t.is((await nextMessage(ws)).data.toString(), 'over wss');
  ws.close();
  await waitFor('a health check over TLS', () => backend.checks() > 0);
  t.is(proxy.table.state(proxy.plan.backendSlots[`main/${backend.address.slice(8)}`]), BACKEND_UP);
});

test('https backends: verification is on by default; a bad certificate is a 502 upstream-tls', async (t) => {
  const backend = await startHttpsBackend(t);
  const status = async (tls: Record<string, unknown> | undefined) => {
    const proxy = await startProxy(t, { pools: { main: { backends: [backend.address], ...(tls && { tls }), retries: { count: 0 } } } });
    const res = await request(`http://127.0.0.1:${proxy.port}/`);
    await res.body.text();
    const upgrade = await openSocket(`ws://127.0.0.1:${proxy.port}/`).then(
      (ws) => (ws.close(), 101),
      (err: Error) => Number(/unexpected response (\d+)/.exec(err.message)?.[1] ?? 0),
    );
    await proxy.stop(0);
    return [res.statusCode, res.headers['x-fairway-error'] ?? '', upgrade];
  };
  // No CA: the test CA is not among Node's.
  t.deepEqual(await status(undefined), [502, 'upstream-tls', 502]);
  // The right CA, but the certificate names a.test, not 127.0.0.1.
  t.deepEqual(await status({ ca: join(certs.dir, 'ca.crt') }), [502, 'upstream-tls', 502]);
  t.deepEqual(await status({ verify: false }), [200, '', 101]);
});

test('upstream TLS options are validated', (t) => {
  const error = t.throws(
    () => validateConfig({ pools: { main: { backends: ['https://127.0.0.1:1'], tls: { ca: '/nonexistent/ca.pem', verify: 'no', sni: 'x' } } } }),
    { instanceOf: ConfigError },
  );
  for (const field of ['pools.main.tls.ca', 'pools.main.tls.verify', 'pools.main.tls.sni']) t.true(error!.problems.some((p) => p.startsWith(`${field}:`)), field);
  t.is(validateConfig({ pools: { main: { backends: ['https://backend.internal'] } } }).pools.main.backends[0].port, 443);
});

test('a reload re-reads certificate files: new connections get the new certificate, open sessions stay', async (t) => {
  const backend = await startBackend(t, 'a');
  const dir = mkdtempSync(join(tmpdir(), 'fairway-reload-'));
  copyFileSync(join(certs.dir, 'a.test.crt'), join(dir, 'site.crt'));
  copyFileSync(join(certs.dir, 'a.test.key'), join(dir, 'site.key'));
  const file = join(dir, 'fairway.json');
  writeFileSync(
    file,
    JSON.stringify({
      listen: '127.0.0.1:0',
      workers: 2,
      engine: ENGINE,
      log: { level: 'warn', access: false },
      tls: { cert: join(dir, 'site.crt'), key: join(dir, 'site.key') },
      pools: { main: { backends: [backend.address] } },
    }),
  );
  const proxy = await startFairway(loadConfigFile(file), { configPath: file, logger: createLogger('warn', { role: 'primary' }) });
  t.teardown(() => proxy.stop(1000));
  t.is(await presented(proxy.port, 'a.test'), 'a.test');
  const session = new WebSocket(`wss://127.0.0.1:${proxy.port}/`, { ca: certs.ca, servername: 'a.test' });
  await once(session, 'open');

  // A renewal at the same paths, then a reload.
  copyFileSync(join(certs.dir, 'b.test.crt'), join(dir, 'site.crt'));
  copyFileSync(join(certs.dir, 'b.test.key'), join(dir, 'site.key'));
  proxy.control.reload();
  const deadline = Date.now() + 20_000;
  let subjects: string[] = [];
  while (Date.now() < deadline) {
    // New connections spread over both workers: all of them must present the new one. One that
    // lands in an old listener's queue at the instant it closes is reset (documented); it counts
    // as not yet switched, and the round is tried again.
    subjects = await Promise.all(Array.from({ length: 8 }, () => presented(proxy.port, 'a.test').catch((err: NodeJS.ErrnoException) => err.code ?? 'error')));
    if (subjects.every((s) => s === 'b.test')) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.deepEqual(subjects, Array(8).fill('b.test'));
  session.send('still here');
  const [echo] = (await once(session, 'message')) as [Buffer];
  t.is(echo.toString(), 'still here');
  session.close();
  const res = await request(`https://127.0.0.1:${proxy.port}/`, { dispatcher: new Agent({ connect: { ca: certs.ca, servername: 'b.test' } }) });
  t.is(await res.body.text(), 'a');
});

test('HTTP/2 for clients (ALPN h2) on the native-free engine, HTTP/1.1 on the same listener; uWS offers HTTP/1.1 only', async (t) => {
  const backend = await startBackend(t, 'a');
  const proxy = await startProxy(t, { tls: tlsConfig(), ...onePool([backend]) });
  const alpn = tlsConnect({ host: '127.0.0.1', port: proxy.port, servername: 'a.test', ca: certs.ca, ALPNProtocols: ['h2', 'http/1.1'] });
  await once(alpn, 'secureConnect');
  const negotiated = alpn.alpnProtocol;
  alpn.destroy();
  if (ENGINE === 'uws') {
    t.not(negotiated, 'h2');
    return;
  }
  t.is(negotiated, 'h2');
  const session = connectHttp2(`https://127.0.0.1:${proxy.port}`, { ca: certs.ca, servername: 'a.test' });
  t.teardown(() => session.close());
  const ask = (path: string, extra: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string; bytes: number }>((resolve, reject) => {
      const stream = session.request({ ':path': path, ':authority': 'a.test', ...extra });
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString(), bytes: Buffer.concat(chunks).length }));
      stream.on('error', reject);
      stream.end();
    });
  // Several streams on one connection, at once.
  const answers = await Promise.all(['/one', '/two', '/three'].map(ask));
  t.deepEqual(answers, Array(3).fill({ status: 200, body: 'a', bytes: 1 }));
  t.is(backend.lastHeaders.host, 'a.test');
  t.is(backend.lastHeaders['x-forwarded-proto'], 'https');
  // A host header besides :authority: the backend gets the :authority that routing read.
  t.is((await ask('/host', { host: 'evil.example' })).status, 200);
  t.is(backend.lastHeaders.host, 'a.test');
  const download = await ask(`/download?bytes=${300 * 1024}`);
  t.is(download.bytes, 300 * 1024);
});

test('HTTP/2 clients: HTTP/1.1 connection headers of a backend are dropped; a head HTTP/2 cannot carry is a 502; the worker keeps serving', async (t) => {
  if (ENGINE === 'uws') return t.pass('uWS offers HTTP/1.1 only');
  const backend = createHttpServer((req, res) => {
    // HTTP2-Settings belongs to one HTTP/1.1 connection (RFC 9113 3.2.1) and may not go out on HTTP/2.
    res.setHeader('http2-settings', 'AAMAAABkAARAAAAAAAIAAAAA');
    res.setHeader('x-kept', 'yes');
    // Two Content-Types: HTTP/1.1 carries them, node:http2 refuses a second value.
    if (req.url?.startsWith('/two-types')) res.setHeader('content-type', ['text/plain', 'text/html']);
    // Without a body the head goes out with the end of the response, not with its first bytes.
    if (req.url === '/two-types-empty') res.statusCode = 204;
    res.end(res.statusCode === 204 ? undefined : 'h2');
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.teardown(() => backend.close());
  const address = `127.0.0.1:${(backend.address() as { port: number }).port}`;
  const proxy = await startProxy(t, { tls: tlsConfig(), pools: { main: { backends: [address] } } });
  const session = connectHttp2(`https://127.0.0.1:${proxy.port}`, { ca: certs.ca, servername: 'a.test' });
  t.teardown(() => session.close());
  const ask = async (path: string) => {
    const stream = session.request({ ':path': path, ':authority': 'a.test' });
    const [headers] = (await once(stream, 'response')) as [Record<string, string>];
    let body = '';
    for await (const chunk of stream) body += chunk;
    return { headers, body };
  };
  const plain = await ask('/');
  t.is(plain.headers[':status'], 200);
  t.is(plain.headers['x-kept'], 'yes');
  t.is(plain.headers['http2-settings'], undefined);
  t.is(plain.body, 'h2');
  for (const path of ['/two-types', '/two-types-empty']) {
    const twoTypes = await ask(path);
    t.is(twoTypes.headers[':status'], 502, path);
    t.is(twoTypes.headers['x-fairway-error'], 'upstream-error', path);
    t.is(twoTypes.headers['x-kept'], undefined, path);
  }
  await waitFor('counter back to zero', () => proxy.table.active(proxy.plan.backendSlots[`main/${address}`]) === 0);
  t.is((await ask('/')).body, 'h2');
  t.is(proxy.supervisor.restarts, 0);
});
