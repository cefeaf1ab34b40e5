// A 1 GiB upload and a 1 GiB download through the proxy must not grow its memory.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
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
