// The admin listener in the primary thread: JSON API, Prometheus metrics, live dashboard (SSE).

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AdminConfig } from '../config/types.js';
import type { StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import { ControlError, type ControlPlane } from './controlPlane.js';
import { DASHBOARD_HTML } from './dashboard.js';
import type { History } from './history.js';
import { LiveStats } from './liveStats.js';
import { renderMetrics } from './metrics.js';
import type { FleetAgent } from './fleet.js';
import type { ClientLimits } from '../core/limits/clientLimits.js';

const BODY_LIMIT = 64 * 1024;

const PUBLIC_ASSETS = new Set(['/assets/uPlot.iife.min.js', '/assets/uPlot.min.css']);

/** The dashboard's charting library (uPlot), served from the package: no build step, no CDN. */
const assets = new Map<string, Buffer>();
function readAsset(file: string): Buffer {
  let asset = assets.get(file);
  if (!asset) assets.set(file, (asset = readFileSync(createRequire(import.meta.url).resolve(`uplot/dist/${file}`))));
  return asset;
}
const EVENT_INTERVAL_MS = 500;

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: message });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new ControlError(400, `body: larger than ${BODY_LIMIT} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new ControlError(400, 'body: not valid JSON');
  }
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * What a web page the operator visits could send: a request for another host name (DNS
 * rebinding: a page's own name resolved to this listener), one from another origin, or a write
 * a page can send cross-origin without a preflight (a form's text/plain). Only the listener's
 * own names are answered (IP literals, localhost, admin.hosts), a request with an Origin must
 * come from the listener itself, and every write must be JSON.
 */
function refusedRequest(req: IncomingMessage, hosts: string[]): { status: 403 | 415; message: string } | undefined {
  const host = req.headers.host;
  if (host !== undefined && !ownHost(host, hosts)) return { status: 403, message: `host: ${host} is not a name of this admin listener (add it to admin.hosts)` };
  const origin = req.headers.origin;
  if (origin !== undefined && (host === undefined || (origin !== `http://${host}` && origin !== `https://${host}`))) {
    return { status: 403, message: `origin: ${origin} may not use the admin API; only pages it serves may` };
  }
  if (WRITES.has(req.method ?? '') && mediaType(req.headers['content-type']) !== 'application/json') {
    return { status: 415, message: 'content-type: send application/json with every POST, PUT, PATCH and DELETE' };
  }
  return undefined;
}

/** Whether a Host header names this listener: an IP literal, localhost, or one of `hosts`. */
function ownHost(host: string, hosts: string[]): boolean {
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase();
  return isIP(name) !== 0 || name === 'localhost' || hosts.includes(name);
}

function mediaType(value: string | undefined): string {
  return (value ?? '').split(';')[0].trim().toLowerCase();
}

export async function startAdminServer(config: AdminConfig, control: ControlPlane, table: StateTable, limits: ClientLimits, history: History, restarts: () => number, logger: Logger, fleet?: FleetAgent): Promise<AdminServer> {
  const stats = new LiveStats(control, table);
  const streams = new Set<ServerResponse>();
  const expected = config.token ? Buffer.from(`Bearer ${config.token}`) : undefined;

  const authorized = (req: IncomingMessage, url: URL): boolean => {
    if (!expected) return true;
    // Browsers cannot set headers on EventSource or on the page itself: the token may come in the query.
    const given = Buffer.from(req.headers.authorization ?? (url.searchParams.has('token') ? `Bearer ${url.searchParams.get('token')}` : ''));
    return given.length === expected.length && timingSafeEqual(given, expected);
  };

  // One frame of backends, and with a fleet one `fleet` event with the fleet's view.
  const frames = () => `data: ${JSON.stringify(stats.snapshot())}\n\n${fleet ? `event: fleet\ndata: ${JSON.stringify(fleet.snapshot())}\n\n` : ''}`;

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const refused = refusedRequest(req, config.hosts);
    if (refused) return sendError(res, refused.status, refused.message);
    // The page and its charting library hold no data: they are served to anyone who reaches the
    // listener, and the page asks for the token that every data and action route needs.
    const open = req.method === 'GET' && (url.pathname === '/' || PUBLIC_ASSETS.has(url.pathname));
    if (!open && !authorized(req, url)) {
      res.setHeader('www-authenticate', 'Bearer');
      return sendError(res, 401, 'missing or wrong token: send Authorization: Bearer <token>');
    }
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    // /api/backends/{id}/… and /api/pools/{name}/…: the third segment is the variable one.
    const isId = (i: number) => i === 2 && parts[0] === 'api' && (parts[1] === 'backends' || parts[1] === 'pools');
    const key = `${method} /${parts.map((part, i) => (isId(i) ? ':id' : part)).join('/')}`;
    switch (key) {
      case 'GET /': {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        return void res.end(DASHBOARD_HTML);
      }
      case 'GET /metrics': {
        const text = await renderMetrics(control, table, limits, restarts(), fleet);
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        return void res.end(text);
      }
      case 'GET /api/events': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(frames());
        streams.add(res);
        req.on('close', () => streams.delete(res));
        return;
      }
      case 'GET /api/backends':
        return sendJson(res, 200, control.backends());
      case 'GET /api/fleet':
        if (!fleet) throw new ControlError(404, 'no fleet is configured: see the `fleet` section in docs/fleet.md');
        return sendJson(res, 200, fleet.snapshot());
      case 'GET /api/pools':
        return sendJson(res, 200, control.pools());
      case 'GET /api/history': {
        const since = Number(url.searchParams.get('since') ?? 0);
        return sendJson(res, 200, { workers: control.config.workers, ...history.since(Number.isFinite(since) ? since : 0) });
      }
      case 'GET /assets/uPlot.iife.min.js':
      case 'GET /assets/uPlot.min.css': {
        const file = parts[1];
        res.writeHead(200, { 'content-type': file.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8', 'cache-control': 'max-age=86400' });
        return void res.end(readAsset(file));
      }
      case 'GET /api/discovery':
        return sendJson(res, 200, control.sources());
      case 'POST /api/pools/:id/backends':
        return sendJson(res, 201, control.addBackend(parts[2], await readJson(req)));
      case 'GET /api/backends/:id':
        return sendJson(res, 200, control.view(control.find(parts[2])));
      case 'PATCH /api/backends/:id':
        return sendJson(res, 200, control.setWeight(parts[2], await readJson(req)));
      case 'POST /api/backends/:id/drain':
        return sendJson(res, 200, control.drain(parts[2]));
      case 'POST /api/backends/:id/undrain':
        return sendJson(res, 200, control.undrain(parts[2]));
      case 'DELETE /api/backends/:id':
        return sendJson(res, 202, control.remove(parts[2]));
      case 'GET /api/cache':
        return sendJson(res, 200, control.caches.stats());
      case 'POST /api/cache/purge': {
        const body = await readJson(req);
        const prefix = (body as { prefix?: unknown } | null)?.prefix;
        if (typeof prefix !== 'string') throw new ControlError(400, 'expected {"prefix": "..."}: the start of the keys to purge ("" purges everything), e.g. "GET api.example.com /catalog"');
        if (!control.caches.enabled) throw new ControlError(404, 'no route caches: see routes[].cache in docs/cache.md');
        return sendJson(res, 200, { purged: control.caches.purge(prefix) });
      }
      case 'POST /api/reload':
        control.reload();
        return sendJson(res, 200, { reloaded: true, pools: control.pools() });
      default:
        return sendError(res, 404, `no route ${method} ${url.pathname}`);
    }
  };

  const server: Server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      if (err instanceof ControlError) return sendError(res, err.status, err.message);
      logger.error({ err }, 'admin request failed');
      if (!res.headersSent) sendError(res, 500, 'internal error');
      else res.destroy();
    });
  });
  const ticker = setInterval(() => {
    if (streams.size === 0) return;
    const frame = frames();
    for (const stream of streams) stream.write(frame);
  }, EVENT_INTERVAL_MS);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  logger.info({ admin: `http://${config.listen.host}:${port}/` }, 'admin API, metrics and dashboard listening');
  return {
    port,
    async close() {
      clearInterval(ticker);
      stats.close();
      for (const stream of streams) stream.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
