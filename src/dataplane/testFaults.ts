// Test-only faults (FAIRWAY_TEST_HOOKS=1 and the x-fairway-test-fault request header), off otherwise.

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
