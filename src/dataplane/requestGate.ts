// What every request and upgrade passes before a backend is chosen, the same for every engine:
// its body framing, its route, the route's access list and per-client limits, the body limit,
// then the pool's hash key and sticky backend.

import { FAULTS, type ProxyFault } from '../core/errors.js';
import type { RequestHead } from '../core/forwarding.js';
import { editHeaders, rewritePath, type MatchedRoute, type RequestFacts, type RouteLimit } from '../core/routing.js';
import type { Bucket, LimitReason } from '../core/limits/clientLimits.js';
import type { PoolRuntime } from './admission.js';
import type { WorkerContext } from './workerContext.js';

export interface Admission {
  route: MatchedRoute;
  pool: PoolRuntime;
  /** Hash key for the pool's picker, if it hashes and the request has the key. */
  key: string | undefined;
  /** The backend the sticky cookie names (already taken), or -1. */
  stickySlot: number;
  /** The client's slot in the shared limits when an upgrade's session is counted there, else -1. */
  limitSlot: number;
  /** The route's buckets the fleet counts, to be checked in Redis before a backend is chosen. */
  fleetLimit?: FleetLimit;
}

/** Buckets of a route with scope: fleet, for one client. */
export interface FleetLimit {
  key: string;
  requests?: Bucket;
  sessions?: Bucket;
  upgrade: boolean;
  head: RequestHead;
}

export interface Refusal {
  fault: ProxyFault;
  /** Seconds for Retry-After (429), else 0. */
  retryAfter: number;
  /** Close the connection after answering (the request body was not read). */
  closeConnection: boolean;
}

/**
 * Runs the checks in order and returns either what admission needs or why the request is
 * refused. `facts` is called only when something must read the request (routes, limits keyed
 * by header, hashing, stickiness); `head` gets the route's path rewrite and header edits.
 */
export function gateRequest(context: WorkerContext, head: RequestHead, facts: () => RequestFacts, upgrade: boolean): Admission | Refusal {
  // The head first: a request that two parsers could read two ways (its framing, its Host) goes
  // nowhere, and its connection is closed, since where its body ends is not known.
  if (head.headFault) return refusal(head.headFault, 0, true);
  if (upgrade && (head.contentLength > 0 || head.chunked)) return refusal(FAULTS.upgradeWithBody, 0, true);
  const { router } = context;
  let read: RequestFacts | undefined;
  const request = () => (read ??= facts());
  const route = router.single ?? router.route(request());
  if (route === undefined) return refusal(FAULTS.noRoute);
  if (route.access && !route.access.permits(head.client)) return refusal(FAULTS.forbidden);
  if (upgrade && !route.websocket) return refusal(FAULTS.websocketNotAllowed);
  if (upgrade && context.shuttingDown) return refusal(FAULTS.noBackend, 0, true);
  let limitSlot = -1;
  let fleetLimit: FleetLimit | undefined;
  if (route.limit) {
    const limited = checkLimit(context, head, route.limit, request, upgrade);
    if ('fault' in limited) return limited;
    limitSlot = limited.slot;
    fleetLimit = limited.fleetLimit;
  }
  // A declared length over the limit is refused before anything is read or sent upstream.
  if (!upgrade && route.maxBody > 0 && head.contentLength > route.maxBody) return refusal(FAULTS.bodyTooLarge, 0, true);
  const pool = context.pools.get(route.pool)!;
  // The hash key is read before the path is rewritten: clients name rooms by what they send.
  const key = pool.config.hash ? pool.hashKey(request(), head.client) : undefined;
  const stickySlot = pool.config.sticky ? pool.stickySlot(request().header('cookie')) : -1;
  if (route.upstreamEdit) {
    const edit = route.upstreamEdit;
    if (edit.stripPrefix || edit.addPrefix) head.path = rewritePath(head.path, edit.stripPrefix, edit.addPrefix);
    if (edit.headers) editHeaders(head.headers, edit.headers);
  }
  return { route, pool, key, stickySlot, limitSlot, fleetLimit };
}

function refusal(fault: ProxyFault, retryAfter = 0, closeConnection = false): Refusal {
  return { fault, retryAfter, closeConnection };
}

/**
 * A route's per-client limits, shared by all workers: a request token for every request and
 * upgrade; for an upgrade, a new-session token and room under the concurrent-session limit,
 * counted until the session ends (release with context.limits.release).
 */
function checkLimit(context: WorkerContext, head: RequestHead, limit: RouteLimit, request: () => RequestFacts, upgrade: boolean): { slot: number; fleetLimit?: FleetLimit } | Refusal {
  const who = (limit.header && request().header(limit.header)) || head.client;
  const key = limit.prefix + who;
  const countSession = upgrade && limit.maxSessions > 0;
  const sessions = upgrade ? limit.sessions : undefined;
  // scope: fleet while Redis answers: the buckets are taken in Redis next, the session count stays here.
  const inFleet = limit.fleet && context.fleet?.answering === true && (limit.requests !== undefined || sessions !== undefined);
  if (inFleet && !countSession) return { slot: -1, fleetLimit: { key, requests: limit.requests, sessions, upgrade, head } };
  const verdict = context.limits.admit(key, Date.now(), context.worker, {
    requests: inFleet ? undefined : limit.requests,
    sessions: inFleet ? undefined : sessions,
    maxSessions: upgrade ? limit.maxSessions : 0,
    countSession,
  });
  if (verdict.allowed) return { slot: countSession ? verdict.slot : -1, fleetLimit: inFleet ? { key, requests: limit.requests, sessions, upgrade, head } : undefined };
  return limitRefusal(context, head, upgrade, verdict.reason, verdict.retryAfterMs);
}

function limitRefusal(context: WorkerContext, head: RequestHead, upgrade: boolean, reason: LimitReason, retryAfterMs: number): Refusal {
  if (context.accessLog) context.logger.info({ type: upgrade ? 'websocket' : 'http', method: head.method, path: head.path, status: 429, error: reason === 'concurrent-sessions' ? FAULTS.tooManySessions.code : FAULTS.rateLimited.code, reason, client: head.client });
  const fault = reason === 'concurrent-sessions' ? FAULTS.tooManySessions : FAULTS.rateLimited;
  return refusal(fault, Math.max(1, Math.ceil(retryAfterMs / 1000)));
}

/** A request or upgrade waiting to be admitted: it keeps how to leave the wait, and can be refused. */
export interface Starting {
  cancelWait: (() => void) | undefined;
  start(gate: Admission): void;
  refuse(fault: ProxyFault, retryAfterSeconds?: number): void;
}

/**
 * The fleet's rate limit before `starting` asks for a backend: once Redis (or the local buckets)
 * let it through, it starts again without the limit if `waiting()` still holds; else its 429.
 * Returns what cancels the wait.
 */
export function startAfterFleetLimit(context: WorkerContext, gate: Admission, starting: Starting, waiting: () => boolean): () => void {
  return checkFleetLimit(
    context,
    gate.fleetLimit!,
    () => {
      starting.cancelWait = undefined;
      if (waiting()) starting.start({ ...gate, fleetLimit: undefined });
    },
    (refusal) => starting.refuse(refusal.fault, refusal.retryAfter),
  );
}

/**
 * Takes the client's tokens of a scope: fleet route in Redis (through the primary), then calls
 * `pass`, or `refuse` with the 429 and its Retry-After. When Redis cannot answer in time, the
 * buckets are taken here instead, as for scope: instance. Returns what to call if the client
 * leaves meanwhile.
 */
function checkFleetLimit(context: WorkerContext, limit: FleetLimit, pass: () => void, refuse: (refusal: Refusal) => void): () => void {
  let gone = false;
  void context.fleet!.limit(limit.key, limit.requests, limit.sessions).then((verdict) => {
    if (gone) return;
    if (verdict === null) {
      const local = context.limits.admit(limit.key, Date.now(), context.worker, { requests: limit.requests, sessions: limit.sessions, maxSessions: 0, countSession: false });
      if (local.allowed) pass();
      else refuse(limitRefusal(context, limit.head, limit.upgrade, local.reason, local.retryAfterMs));
    } else if (verdict.allowed) pass();
    else {
      context.limits.countRefusal(verdict.reason);
      refuse(limitRefusal(context, limit.head, limit.upgrade, verdict.reason, verdict.retryAfterMs));
    }
  });
  return () => {
    gone = true;
  };
}
