// The pino logger used by the primary and by every worker thread.

import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; writes are buffered off the hot path and flushed on exit. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const destination = pino.destination({ dest: 1, sync: false, });
  return pino({ level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
