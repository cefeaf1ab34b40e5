// What a worker does to its open sessions when the primary asks, the same for every engine:
// spread closes of a drained backend's sessions, and rebalancing sheds.

import type { WorkerContext } from './workerContext.js';

/**
 * Closes the sessions on a slot at random moments over the window (jitter), never closer together
 * than the rate allows, so their clients do not all reconnect at once.
 */
export function closeSpread(context: WorkerContext, message: { slot: number; window: number; rate: number; code: number; reason: string }): void {
  const sessions = [...context.webSockets, ...context.tcpSessions].filter((s) => s.backendSlot === message.slot);
  const times = sessions.map(() => Math.random() * message.window).sort((a, b) => a - b);
  const gap = 1000 / message.rate;
  for (let i = 1; i < times.length; i++) times[i] = Math.max(times[i], times[i - 1] + gap);
  sessions.forEach((session, i) => setTimeout(() => session.shutdown(message.code, message.reason), times[i]));
  context.logger.info({ slot: message.slot, sessions: sessions.length, lastAtMs: Math.round(times.at(-1) ?? 0) }, 'closing sessions of a drained backend');
}

const CLOSE_SERVICE_RESTART = 1012;

export function shed(context: WorkerContext, slot: number, count: number, order: 'newest' | 'oldest'): void {
  const sessions = [...context.webSockets].filter((s) => s.backendSlot === slot && s.isOpen).sort((a, b) => a.startedAt - b.startedAt);
  if (order === 'newest') sessions.reverse();
  for (const session of sessions.slice(0, count)) {
    context.logger.info({ backend: context.backends[slot]?.origin, client: session.clientAddress }, 'session shed to rebalance the pool');
    session.shutdown(CLOSE_SERVICE_RESTART, 'rebalancing, please reconnect');
  }
}
