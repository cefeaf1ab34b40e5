// The HTTP/1.1 client leg toward backends, against raw TCP backends that write exact bytes:
// response framing (chunked with extensions and trailers, split anywhere; 1xx; close-delimited),
// connection reuse and when it must not happen, malformed answers, resets before any byte.

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import { Readable } from 'node:stream';
import { MALFORMED_HEADS, rawExchange, startBackend, startProxy, startTap, waitFor } from './helpers.js';

interface RawBackend {
  address: string;
  /** Connections accepted so far. */
  connections: number;
  /** Request heads received, in order, with the index of the connection each came on. */
  requests: { head: string; connection: number }[];
}

/**
 * A backend on a raw TCP server: `answer` is called with each request head (up to the blank line)
 * and writes whatever bytes the test wants on the socket.
 */
async function rawBackend(t: ExecutionContext, answer: (socket: Socket, head: string, backend: RawBackend) => void): Promise<RawBackend> {
  const sockets = new Set<Socket>();
  const backend: RawBackend = { address: '', connections: 0, requests: [] };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const connection = backend.connections++;
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        backend.requests.push({ head, connection });
        answer(socket, head, backend);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  backend.address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return backend;
}

const pathOf = (head: string) => head.split(' ')[1];

async function get(port: number, path: string, method = 'GET') {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method, headers: { connection: 'close' } });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** Writes `bytes` a few at a time, each piece in its own TCP segment, so the parser sees every split. */
async function trickle(socket: Socket, bytes: string, piece = 3): Promise<void> {
  for (let at = 0; at < bytes.length; at += piece) {
    socket.write(bytes.slice(at, at + piece), 'latin1');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

test('chunked responses split anywhere, with extensions and trailers, arrive whole; the connection is kept', async (t) => {
  const body = 'hello, chunked world';
  const backend = await rawBackend(t, (socket) => {
    const wire = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5;name=value\r\n${body.slice(0, 5)}\r\n${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\nx-checksum: 1\r\n\r\n`;
    void trickle(socket, wire);
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  for (let i = 0; i < 3; i++) {
    const res = await get(proxy.port, `/c${i}`);
    t.is(res.status, 200);
    t.is(res.body, body);
    t.is(res.headers['content-type'], 'text/plain');
  }
  t.is(backend.connections, 1, 'one keep-alive connection carried all three');
});

test('1xx answers before the final one are skipped; close-delimited bodies are read to the end and not reused', async (t) => {
  const backend = await rawBackend(t, (socket, head) => {
    if (pathOf(head) === '/hints') {
      socket.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n');
      socket.write('HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated');
    } else {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
      socket.end();
    }
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  const hinted = await get(proxy.port, '/hints');
  t.is(hinted.status, 201);
  t.is(hinted.body, 'created');
  t.is(hinted.headers.link, undefined);
  const first = await get(proxy.port, '/eof');
  t.is(first.status, 200);
  t.is(first.body, 'until the end');
  const second = await get(proxy.port, '/eof');
  t.is(second.body, 'until the end');
  t.deepEqual(
    backend.requests.map((r) => r.connection),
    [0, 0, 1],
    'the keep-alive connection carried /hints and the first /eof; a close-delimited body ends its connection',
  );
});

test('Connection: close from the backend is honoured, HTTP/1.0 is not kept alive, and HEAD reads no body', async (t) => {
  const backend = await rawBackend(t, (socket, head) => {
    const path = pathOf(head);
    if (path === '/close') socket.write('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok');
    else if (path === '/old') socket.write('HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold');
    // A HEAD answer announces a length it does not send.
    else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n');
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  t.is((await get(proxy.port, '/close')).body, 'ok');
  t.is((await get(proxy.port, '/old')).body, 'old');
  const head = await get(proxy.port, '/head', 'HEAD');
  t.is(head.status, 200);
  t.is(head.headers['content-length'], '1000');
  t.is(head.body, '');
  const again = await get(proxy.port, '/head', 'HEAD');
  t.is(again.status, 200);
  t.deepEqual(
    backend.requests.map((r) => r.connection),
    [0, 1, 2, 2],
    'close and HTTP/1.0 end their connections; the HEAD answer leaves its connection usable',
  );
});

test('a malformed answer is a 502 for that request only; the next request is served', async (t) => {
  const backend = await rawBackend(t, (socket, head) => {
    const path = pathOf(head);
    if (path === '/status') socket.write('HTTP/1.1 2OO OK\r\n\r\n');
    else if (path === '/length') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello');
    else if (path === '/chunk') socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n');
    else if (path === '/fold') socket.write('HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 0\r\n\r\n');
    else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine');
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  for (const path of ['/status', '/length', '/fold']) {
    const res = await get(proxy.port, path);
    t.is(res.status, 502, path);
    t.is(res.headers['x-fairway-error'], 'upstream-error', path);
    t.is((await get(proxy.port, '/')).body, 'fine');
  }
  // A chunked body that goes wrong after the head: a 502 while nothing reached the client, else a cut.
  const chunk = await get(proxy.port, '/chunk').catch(() => null);
  t.true(chunk === null || chunk.status === 502);
  t.is((await get(proxy.port, '/')).body, 'fine');
});

/** The raw bytes of the answer to `GET path`, on a connection of its own. */
async function rawGet(port: number, path: string): Promise<string> {
  return (await rawExchange(port, `GET ${path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n`, 5000)).reply;
}

test('a response head reaches the client byte for byte, names lower-cased and values trimmed; control characters or a bad name in it are a 502 and the worker keeps serving', async (t) => {
  const heads: Record<string, string> = {
    '/reason': 'HTTP/1.1 299 Quite Fine\r\nX-Mixed-Case: \t spaced  value \t\r\nx-latin1: caf\xe9 \xa0\xff\r\ncontent-length: 2\r\n\r\nok',
    '/ctl-in-value': 'HTTP/1.1 200 OK\r\nx-a: 1\x01\r\ncontent-length: 0\r\n\r\n',
    '/del-in-value': 'HTTP/1.1 200 OK\r\nx-a: 1\x7f\r\ncontent-length: 0\r\n\r\n',
    '/ctl-in-reason': 'HTTP/1.1 200 O\x1bK\r\ncontent-length: 0\r\n\r\n',
    '/space-in-name': 'HTTP/1.1 200 OK\r\nx a: 1\r\ncontent-length: 0\r\n\r\n',
    '/no-reason': 'HTTP/1.0 200\r\ncontent-length: 2\r\n\r\nok',
    '/lf-in-status': 'HTTP/1.1 200 OK\nx-injected: yes\r\ncontent-length: 0\r\n\r\n',
    '/lf-in-value': 'HTTP/1.1 200 OK\r\nx-a: 1\nx-injected: yes\r\ncontent-length: 0\r\n\r\n',
    '/cr-in-value': 'HTTP/1.1 200 OK\r\nx-a: 1\rx-injected: yes\r\ncontent-length: 0\r\n\r\n',
    '/nul-in-value': 'HTTP/1.1 200 OK\r\nx-a: 1\0\r\ncontent-length: 0\r\n\r\n',
    '/cr-ends-head': 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-a: 1\r\r\n\r\n',
  };
  const backend = await rawBackend(t, (socket, head) => socket.write(heads[pathOf(head)] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n', 'latin1'));
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });

  const reason = await rawGet(proxy.port, '/reason');
  t.true(reason.startsWith('HTTP/1.1 299 Quite Fine\r\n'), reason);
  t.true(reason.includes('\r\nx-mixed-case: spaced  value\r\n'), reason);
  // Bytes above 0x7f (obs-text) pass as they are, not re-encoded.
  t.true(reason.includes('\r\nx-latin1: caf\xe9 \xa0\xff\r\n'), JSON.stringify(reason));
  t.true(reason.endsWith('\r\n\r\nok'), reason);
  const noReason = await rawGet(proxy.port, '/no-reason');
  t.regex(noReason, /^HTTP\/1\.1 200[ \r]/);
  t.true(noReason.endsWith('\r\n\r\nok'), noReason);

  for (const path of ['/lf-in-status', '/lf-in-value', '/cr-in-value', '/nul-in-value', '/cr-ends-head', '/ctl-in-value', '/del-in-value', '/ctl-in-reason', '/space-in-name']) {
    const reply = await rawGet(proxy.port, path);
    t.true(reply.startsWith('HTTP/1.1 502 '), `${path}: ${reply}`);
    t.true(reply.includes('x-fairway-error: upstream-error'), `${path}: ${reply}`);
    t.false(reply.includes('x-injected'), `${path}: ${reply}`);
  }
  t.is((await get(proxy.port, '/reason')).body, 'ok');
  t.is(proxy.supervisor.restarts, 0);
});

test('a reset before any response byte: an idempotent request goes to another backend, a POST gets 502', async (t) => {
  const resetting = await rawBackend(t, (socket) => socket.resetAndDestroy());
  const good = await rawBackend(t, (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ngood'));
  const proxy = await startProxy(t, { workers: 1, pools: { main: { algorithm: 'round-robin', backends: [resetting.address, good.address] } } });
  // Round robin sends one of every two requests to the resetting backend first.
  for (let i = 0; i < 4; i++) t.is((await get(proxy.port, `/get${i}`)).body, 'good');
  t.true(resetting.requests.length >= 2);
  const statuses: number[] = [];
  for (let i = 0; i < 2; i++) statuses.push((await get(proxy.port, `/post${i}`, 'POST')).status);
  t.true(statuses.includes(502), `POST statuses ${statuses.join(',')}`);
  t.true(statuses.includes(200));
});

test('a kept-alive connection the backend closes as it is reused: GET goes again on a fresh one, POST gets 502', async (t) => {
  // Each connection answers its first request and closes, unannounced, on its second.
  const backend = await rawBackend(t, (socket, _head, raw) => {
    const connection = raw.requests.at(-1)!.connection;
    if (raw.requests.filter((r) => r.connection === connection).length === 1) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    else socket.destroy();
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  t.is((await get(proxy.port, '/a')).status, 200);
  const again = await get(proxy.port, '/b');
  t.is(again.status, 200);
  t.is(again.body, 'ok');
  const post = await get(proxy.port, '/c', 'POST');
  t.is(post.status, 502);
  t.is(post.headers['x-fairway-error'], 'upstream-reset');
  t.deepEqual(
    backend.requests.map((r) => `${pathOf(r.head)}@${r.connection}`),
    ['/a@0', '/b@0', '/b@1', '/c@1'],
  );
});

test('an answer that comes before the upload ends is relayed, and that connection is not used again', async (t) => {
  const backend = await rawBackend(t, (socket, head) => {
    if (pathOf(head) === '/upload') socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo much');
    else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  });
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  // The client sends a tenth of its body and waits: the answer comes while the upload is unfinished.
  const client = connect(proxy.port, '127.0.0.1');
  client.write(`POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: 100000\r\n\r\n${'x'.repeat(10_000)}`);
  let reply = '';
  client.on('data', (chunk) => (reply += chunk.toString('latin1')));
  await waitFor('the early answer', () => reply.includes('too much'));
  t.regex(reply, /^HTTP\/1\.1 413/);
  client.destroy();
  t.is((await get(proxy.port, '/')).body, 'ok');
  const upload = backend.requests.find((r) => pathOf(r.head) === '/upload')!;
  const after = backend.requests.at(-1)!;
  t.not(after.connection, upload.connection);
});

test('a body that does not match the length the client wrote fails its request and never runs past it on the wire', async (t) => {
  const { UpstreamHttpPool } = await import('../dist/src/dataplane/upstreamHttp.js');
  const backend = await startBackend(t, 'a');
  const tap = await startTap(t, backend);
  const pool = new UpstreamHttpPool({ host: '127.0.0.1', port: Number(tap.address.split(':')[1]), tls: undefined, connectTimeout: 5000, responseTimeout: 5000, idleTimeout: 5000, keepAliveTimeout: 4000 });
  t.teardown(() => pool.destroy());
  // The body comes once its head is on the wire, as a client's body comes after its head.
  const send = async (length: number, body: string) => {
    const stream = new Readable({ read() {} });
    const outcome = new Promise<string>((resolve) => {
      pool.dispatch(
        { path: '/hash', method: 'POST', headers: ['host', 'x'], length, body: stream },
        {
          onRequestStart() {},
          onResponseStart: () => resolve('answered'),
          onResponseData() {},
          onResponseEnd() {},
          onResponseError: (_control: unknown, err: Error & { code?: string }) => resolve(err.code ?? err.message),
        },
      );
    });
    const head = `content-length: ${length}\r\n\r\n`;
    await waitFor('the head to reach the backend', () => tap.received().endsWith(head));
    stream.push(body);
    stream.push(null);
    return { outcome: await outcome, sent: () => tap.received().slice(tap.received().lastIndexOf(head) + head.length) };
  };
  // Longer: the chunk that would run past the length is not written at all.
  const longer = await send(3, 'hello');
  t.is(longer.outcome, 'FAIRWAY_BODY_LENGTH');
  await waitFor('the connection toward the backend closed', () => tap.open() === 0);
  t.is(longer.sent(), '', 'not one body byte went out');
  // Shorter: the backend is left with an incomplete body on a closed connection, never reused.
  const shorter = await send(5, 'hel');
  t.is(shorter.outcome, 'FAIRWAY_BODY_LENGTH');
  await waitFor('the second connection closed', () => tap.open() === 0);
  t.is(shorter.sent(), 'hel');
  t.is(tap.connections(), 2);
});

test('the same malformed heads a WebSocket handshake is refused for are a 502 for HTTP; the next request is served', async (t) => {
  const cases = new Map(MALFORMED_HEADS.map(([name, answer], i) => [`/case${i}`, { name, answer }]));
  const backend = await rawBackend(t, (socket, head) => socket.write(cases.get(pathOf(head))?.answer ?? 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine'));
  const proxy = await startProxy(t, { workers: 1, pools: { main: { backends: [backend.address] } } });
  for (const [path, { name, answer }] of cases) {
    // A chunked body streams: once its first bytes reached the client, only a cut can say it broke.
    const streamed = answer.includes('chunked');
    const res = await get(proxy.port, path).catch((err: Error) => (streamed ? null : Promise.reject(err)));
    if (res) {
      t.is(res.status, 502, name);
      t.is(res.headers['x-fairway-error'], 'upstream-error', name);
    }
    t.is((await get(proxy.port, '/')).body, 'fine');
  }
});
