// One entry per protocol, the same for every engine: gate → lease → exchange (HTTP) or session
// (WebSocket). An engine supplies only what reads and writes its sockets.

import type { Readable } from 'node:stream';
import type { RequestHead } from '../core/forwarding.js';
import type { MatchedRoute, RequestFacts } from '../core/routing.js';
import { HttpExchange, type ClientReply } from './httpExchange.js';
import { gateRequest, type Refusal } from './requestGate.js';
import { serveCached } from './responseCache.js';
import { runTestFault } from './testFaults.js';
import { WebSocketSession, type ClientHandshake } from './webSocketSession.js';
import type { WorkerContext } from './workerContext.js';

/** What the shared layer needs of one request or upgrade, while the engine's handler runs. */
export interface IncomingRequest {
  readonly head: RequestHead;
  /** What routing, limits and hashing may read of the request; valid during the call only. */
  facts(): RequestFacts;
  /** The x-fairway-test-fault header (read only when test hooks are on). */
  testFault(): string;
  /** Answers the gate's refusal. */
  refuse(refusal: Refusal): void;
}

/** What is told once if the client leaves before its response is complete. */
export interface ClientWatcher {
  onClientGone(): void;
}

/** An HTTP request as an engine hands it over. */
export interface IncomingHttp extends IncomingRequest {
  /** The reply the exchange writes its response with (asked once, after the gate passed). */
  reply(): ClientReply;
  /** Tells `watcher` once if the client leaves before its response is complete (after reply()). */
  watch(watcher: ClientWatcher): void;
  /** The request body as a stream, cut at the route's max_body (`onTooLarge` then). */
  body(route: MatchedRoute, onTooLarge: () => void): Readable;
}

/** A WebSocket upgrade as an engine hands it over. */
export interface IncomingUpgrade extends IncomingRequest {
  /** The client's handshake, answered once the backend's is done. */
  handshake(): ClientHandshake;
  /** Tells the session if the client leaves before its upgrade is answered. */
  watch(session: WebSocketSession): void;
}

export function serveHttp(context: WorkerContext, request: IncomingHttp): void {
  const { head } = request;
  if (context.testHooks) runTestFault(request.testFault());
  context.requestsRead++;
  // The cache key is the target as the client sent it, before the route rewrites it.
  const target = head.path;
  const gate = gateRequest(context, head, () => request.facts(), false);
  if ('fault' in gate) return refused(context, gate, () => request.refuse(gate));
  if (gate.route.cache) return serveCached(context, request, gate, target);
  const exchange = new HttpExchange(context, request.reply(), head, gate);
  request.watch(exchange);
  // Reading the body starts now, so that a request waiting in the queue keeps its body (paused).
  if (head.contentLength > 0 || head.chunked) exchange.body = request.body(gate.route, () => exchange.onBodyTooLarge());
  exchange.start(gate);
}

export function serveUpgrade(context: WorkerContext, upgrade: IncomingUpgrade): void {
  if (context.testHooks) runTestFault(upgrade.testFault());
  context.requestsRead++;
  const gate = gateRequest(context, upgrade.head, () => upgrade.facts(), true);
  if ('fault' in gate) return refused(context, gate, () => upgrade.refuse(gate));
  const session = new WebSocketSession(context, upgrade.head, gate, upgrade.handshake());
  upgrade.watch(session);
  session.start(gate);
}

/** A request the gate turned away: counted by its code, then answered. */
function refused(context: WorkerContext, refusal: Refusal, answer: () => void): void {
  context.table.countFault(refusal.fault.code);
  answer();
}
