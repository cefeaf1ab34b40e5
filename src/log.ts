// The pino logger used by the primary and by every worker thread.

import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger };

/** Whether logs go to a terminal: decided once in the primary (workers' stdout is not the TTY). */
export const PRETTY_LOGS = Boolean(process.stdout.isTTY);

/** Whether log.format asks for pretty lines: `auto` means when stdout is a terminal. */
export function prettyFor(format: 'auto' | 'json' | 'pretty'): boolean {
  return format === 'pretty' || (format === 'auto' && PRETTY_LOGS);
}

/**
 * JSON lines on stdout, written off the hot path and flushed on exit; human-readable lines when
 * stdout is a terminal.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, pretty = PRETTY_LOGS): Logger {
  const options = { level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime };
  if (pretty) {
    // Loaded only for a terminal: every worker thread would load it for nothing otherwise.
    const { PinoPretty } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino(options, PinoPretty({ colorize: true, destination: 1, sync: false }));
  }
  return pino(options, pino.destination({ dest: 1, sync: false }));
}
