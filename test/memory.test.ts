// A 1 GiB upload and a 1 GiB download through the proxy must not grow its memory, nor must clients
// that stop reading their downloads.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import test from 'ava';
import { request } from 'undici';
import { freePort, patternChunk, runCli, START_DEADLINE, startBackend, waitFor } from './helpers.js';

const GIB = 1024 ** 3;

/** Peak resident memory of a process so far, in bytes (VmHWM). */
function peakRss(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

test('1 GiB each way streams through in bounded memory', async (t) => {
  const backend = await startBackend(t, 'a');
  const port = await freePort();
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', backend.address, '--workers', '1']);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  // Warm up so that the baseline includes the worker's buffers and one upstream connection.
  await (await request(`http://127.0.0.1:${port}/download?bytes=${1024 * 1024}`)).body.arrayBuffer();
  const baseline = peakRss(child.pid!);

  const download = await request(`http://127.0.0.1:${port}/download?bytes=${GIB}`);
  let received = 0;
  for await (const chunk of download.body) received += chunk.length;
  t.is(received, GIB);

  const block = patternChunk(0, 1024 * 1024);
  async function* body() {
    for (let sent = 0; sent < GIB; sent += block.length) yield block;
  }
  // Chunked: uWS 20.30 refuses a content-length of ten digits or more (1e9 bytes and up).
  const upload = await request(`http://127.0.0.1:${port}/hash`, { method: 'POST', body: Readable.from(body()) });
  const expected = createHash('sha256');
  for (let i = 0; i < GIB / block.length; i++) expected.update(block);
  t.deepEqual(await upload.body.json(), { sha256: expected.digest('hex'), length: GIB });

  const growth = peakRss(child.pid!) - baseline;
  t.log(`peak RSS grew by ${(growth / 1024 / 1024).toFixed(1)} MiB over a ${(baseline / 1024 / 1024).toFixed(1)} MiB baseline`);
  t.true(growth < 128 * 1024 * 1024, `peak RSS grew by ${growth} bytes`);
  child.kill('SIGTERM');
  t.is((await once(child, 'exit'))[0], 0);
});

test('50 clients that stop reading 20 MiB downloads hold bounded memory, and every other request is served', async (t) => {
  // A backend that counts what it has written: once fairway stops taking bytes, the count stops.
  // Few readers: each stalled download parks about 8 MiB in kernel buffers, which other tests share.
  const READERS = 50;
  let written = 0;
  const block = Buffer.alloc(64 * 1024, 0x61);
  const backend = createServer((req, res) => {
    if (!req.url?.startsWith('/download')) return void res.end('ok');
    let left = 20 * 1024 * 1024;
    res.writeHead(200, { 'content-length': left });
    const pump = () => {
      while (left > 0) {
        left -= block.length;
        written += block.length;
        if (!res.write(block)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.teardown(() => {
    backend.closeAllConnections();
    backend.close();
  });
  const port = await freePort();
  const { child, output } = await runCli(t, ['--listen', `127.0.0.1:${port}`, '--to', `127.0.0.1:${(backend.address() as { port: number }).port}`, '--workers', '2']);
  await waitFor('fairway to listen', () => output().includes('fairway is listening'), START_DEADLINE);
  for (let i = 0; i < 20; i++) await (await request(`http://127.0.0.1:${port}/`)).body.text();
  const baseline = peakRss(child.pid!);

  const readers: Socket[] = [];
  t.teardown(() => readers.forEach((socket) => socket.destroy()));
  let started = 0;
  for (let i = 0; i < READERS; i++) {
    const socket = connect(port, '127.0.0.1', () => socket.write('GET /download HTTP/1.1\r\nHost: x\r\n\r\n'));
    socket.on('error', () => {});
    socket.once('data', () => {
      started++;
      socket.pause();
    });
    readers.push(socket);
  }
  await waitFor('every reader to get its first bytes', () => started === READERS, 60_000);
  // Once every buffer on the way is full, the backend can write no more.
  const deadline = Date.now() + 120_000;
  for (let last = -1; written !== last; ) {
    if (Date.now() > deadline) throw new Error('the backend never stopped writing');
    last = written;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  for (let i = 0; i < 100; i++) t.is((await request(`http://127.0.0.1:${port}/`)).statusCode, 200);
  const growth = peakRss(child.pid!) - baseline;
  t.log(`peak RSS grew by ${(growth / 1024 / 1024).toFixed(1)} MiB for ${READERS} stalled 20 MiB downloads (${(growth / READERS / 1024).toFixed(0)} KiB each); the backend wrote ${(written / 1024 / 1024).toFixed(0)} MiB`);
  // Unbounded, fairway would hold the rest of every download (about 600 MiB here: the kernel's
  // buffers hold about 8 MiB of each on loopback). Bounded, it grows by a fixed part (the heap's
  // young generation, buffers) and a few hundred KiB per reader: about 75 MiB here.
  t.true(growth < 200 * 1024 * 1024, `peak RSS grew by ${growth} bytes`);
  t.true(written < READERS * 20 * 1024 * 1024, 'the downloads did not run to their end');
});
