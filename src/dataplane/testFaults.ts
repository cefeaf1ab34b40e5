// Test-only faults (FAIRWAY_TEST_HOOKS=1 and the x-fairway-test-fault request header), off otherwise.

import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';

/**
 * Test-only faults (enabled by FAIRWAY_TEST_HOOKS=1) that exercise the real error paths: an
 * exception inside a handler, and an uncaught exception that takes the worker thread down.
 */
export function runTestFault(fault: string): void {
  if (fault === 'throw') throw new Error('test fault: thrown inside a handler');
  if (fault === 'crash') {
    setImmediate(() => {
      throw new Error('test fault: uncaught exception in a worker');
    });
  }
}

/** How long a held worker waits for another to answer before it gives up and starts anyway. */
const HOLD_LIMIT_MS = 10_000;

/**
 * FAIRWAY_TEST_HOLD_WORKER=N (with the test hooks): worker N reports ready only once another
 * worker answers an HTTP request on the listen port, and logs that one did. So a test sees that a
 * worker listens as soon as it is ready, not when every worker is; without that, nothing answers
 * and the worker starts after HOLD_LIMIT_MS, logging so, instead of holding the start up for good.
 */
export async function holdUntilAnotherAnswers(host: string, port: number, logger: Logger): Promise<void> {
  const until = performance.now() + HOLD_LIMIT_MS;
  while (performance.now() < until) {
    if (await answersHttp(host, port)) {
      logger.info('test hold: another worker answered before this one was ready');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  logger.warn('test hold: no worker answered while this one was held');
}

/** True when an HTTP response comes back on `host:port` (the primary's held port cuts connections at once). */
function answersHttp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let head = '';
    const socket = connect(port, host, () => socket.write('GET / HTTP/1.1\r\nhost: hold\r\nconnection: close\r\n\r\n'));
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => (head += data));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(head.startsWith('HTTP/1.1 ')));
  });
}
