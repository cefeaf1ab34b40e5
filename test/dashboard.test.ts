// The dashboard in real headless Chromium, and the demo started as `npm start` runs it.

import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import test from 'ava';
import { chromium } from 'playwright-core';
import { WebSocket } from 'ws';
import { startDnsServer } from './dnsServer.js';
import { closed, openSocket, runCli, START_DEADLINE, startBackend, startProxy, waitFor } from './helpers.js';

// `npm run screenshot` sets this to docs/dashboard.png; a plain test run writes no file.
const SCREENSHOT = process.env.FAIRWAY_SCREENSHOT;

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

test('dashboard: bars follow sessions opened through the balancer; the drain button drains', async (t) => {
  const backends = [await startBackend(t, 'a'), await startBackend(t, 'b'), await startBackend(t, 'c')];
  const proxy = await startProxy(t, {
    admin: { listen: '127.0.0.1:0', token: 'dash' },
    pools: { chat: { backends: backends.map((b, i) => ({ url: b.address, name: `chat-${i + 1}` })) } },
  });
  const browser = await launch();
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1100, height: 330 } });
  // Every action asks for a confirmation first.
  page.on('dialog', (dialog) => void dialog.accept());
  await page.goto(`http://127.0.0.1:${proxy.adminPort}/?token=dash`);
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 3);
  const actives = () => page.$$eval('#rows tr td.active', (cells) => cells.map((c) => Number(c.textContent)));
  t.deepEqual(await actives(), [0, 0, 0]);

  const sockets = await Promise.all(Array.from({ length: 6 }, () => openSocket(`ws://127.0.0.1:${proxy.port}/`)));
  await page.waitForFunction(() => [...document.querySelectorAll('#rows tr td.active')].map((c) => c.textContent).join() === '2,2,2', undefined, { timeout: 20_000 });
  const widths = await page.$$eval('#rows .fill', (bars) => bars.map((b) => (b as HTMLElement).style.width));
  t.deepEqual(widths, ['100%', '100%', '100%']);

  // More sessions on one backend: its bar is the longest.
  sockets.slice(0, 2).forEach((ws) => ws.close());
  await page.waitForFunction(() => [...document.querySelectorAll('#rows tr td.active')].map((c) => Number(c.textContent)).reduce((a, b) => a + b) === 4, undefined, { timeout: 20_000 });
  const uneven = await page.$$eval('#rows .fill', (bars) => bars.map((b) => parseFloat((b as HTMLElement).style.width)));
  t.true(uneven.some((w) => w < 100) && uneven.includes(100), `bars ${uneven}`);

  // Drain the first backend from the page.
  await page.click('#rows tr:first-child button[data-action="drain"]');
  await page.waitForFunction(() => document.querySelector('#rows tr:first-child .state')?.textContent === 'draining', undefined, { timeout: 20_000 });
  const first = proxy.control.backends()[0];
  t.is(first.state, 'draining');
  const before = first.active;
  const more = await Promise.all(Array.from({ length: 4 }, () => openSocket(`ws://127.0.0.1:${proxy.port}/`)));
  await waitFor('new sessions counted', () => proxy.control.backends().reduce((n, b) => n + b.active, 0) === 8);
  t.is(proxy.control.backends()[0].active, before, 'a draining backend takes no new session');
  await page.waitForFunction(() => [...document.querySelectorAll('#rows tr td.active')].map((c) => Number(c.textContent)).reduce((a, b) => a + b) === 8, undefined, { timeout: 20_000 });
  await page.click('#rows tr:first-child button[data-action="undrain"]');
  await waitFor('undrained', () => proxy.control.backends()[0].state === 'up');
  for (const ws of [...sockets, ...more]) ws.terminate();
});

test('dashboard: a backend found in DNS shows the name it came from; a degraded one its share of the weight and why', async (t) => {
  const dns = await startDnsServer(t);
  const server = createServer((req, res) => res.end(req.url === '/health' ? JSON.stringify({ status: 'degraded' }) : 'found'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  dns.setAddresses('found.fairway.test', ['127.0.0.1']);
  const proxy = await startProxy(t, {
    admin: { listen: '127.0.0.1:0' },
    resolver: { servers: [dns.address] },
    pools: { api: { health: { interval: '200ms', json: { degraded: { status: 'degraded' } } }, backends: [{ dns: 'found.fairway.test', port: (server.address() as { port: number }).port, weight: 4 }] } },
  });
  const browser = await launch();
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${proxy.adminPort}/`);
  await page.waitForFunction(() => document.querySelector('#rows tr td.weight')?.textContent === '2 of 4', undefined, { timeout: 20_000 });
  t.is(await page.textContent('#rows tr .source'), 'from dns found.fairway.test');
  t.regex((await page.textContent('#rows tr .note.check')) ?? '', /degraded: status == "degraded"/);
});

type Point = { at: number; backends: Record<string, { active: number }>; workers: { active: number[] } };
type Charts = Record<string, { plot: { series: { label?: string }[]; data: (number | null)[][] } } | undefined>;
declare const window: { fairway: { history: { points: Point[] }; charts: Charts } };

test('dashboard charts: real data over time; a drain confirmed on the page shows the backend\'s line falling and marks the timeline; the token is asked once; a bad weight shows its error and changes nothing', async (t) => {
  const [a, b] = [await startBackend(t, 'a'), await startBackend(t, 'b')];
  const proxy = await startProxy(t, {
    admin: { listen: '127.0.0.1:0', token: 'charts' },
    pools: { chat: { drain: { timeout: '1s', window: '1s' }, backends: [a.address, b.address] } },
  });
  const [idA, idB] = [`chat/${a.address}`, `chat/${b.address}`];
  const browser = await launch();
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 1500 } });
  const prompts: string[] = [];
  page.on('dialog', (dialog) => {
    if (dialog.type() !== 'prompt') return void dialog.accept();
    prompts.push(dialog.message());
    void dialog.accept(dialog.message() === 'Admin token' ? 'charts' : 'heavy');
  });
  // No token in the address: the page asks for it once.
  await page.goto(`http://127.0.0.1:${proxy.adminPort}/`);
  const sockets = await Promise.all(Array.from({ length: 6 }, () => openSocket(`ws://127.0.0.1:${proxy.port}/`)));
  t.teardown(() => sockets.forEach((ws) => ws.terminate()));
  await waitFor('the backends to hold the sessions', () => a.openSessions() + b.openSessions() === 6);
  const onA = a.openSessions();
  // The chart of a comes to show its sessions (a point a second: the first may have caught fewer).
  await page.waitForFunction(
    ({ id, count }) => {
      const chart = window.fairway.charts.active;
      return chart !== undefined && (chart.plot.data[chart.plot.series.findIndex((s) => s.label === id)] ?? []).includes(count);
    },
    { id: idA, count: onA },
    { timeout: 30_000 },
  );
  t.deepEqual(prompts, ['Admin token'], 'the token is asked once');
  t.true((await page.$$eval('#charts .uplot canvas', (canvases) => canvases.length)) >= 5, 'five charts drawn');
  const activeSeries = (id: string) =>
    page.evaluate((backend) => {
      const { plot } = window.fairway.charts.active!;
      return plot.data[plot.series.findIndex((s) => s.label === backend)];
    }, id);
  // One row per worker thread (native-free on Node 20 runs one).
  await page.waitForFunction((workers) => document.querySelectorAll('#workers tr').length === workers, proxy.config.workers, { timeout: 30_000 });

  // Drain a from the page: confirmed, its result shown; after drain.timeout its sessions close and its line falls.
  await page.click(`#rows tr[data-id="${idA}"] button[data-action="drain"]`);
  await page.waitForFunction(() => /drain done, now draining/.test(document.getElementById('result')?.textContent ?? ''), undefined, { timeout: 30_000 });
  await waitFor('a to lose its sessions', () => a.openSessions() === 0, 30_000);
  await page.waitForFunction((id) => window.fairway.history.points.at(-1)?.backends[id]?.active === 0, idA, { timeout: 30_000 });
  const line = (await activeSeries(idA)).filter((v): v is number => v !== null);
  t.true(line.includes(onA) && line.at(-1) === 0, `a's line fell from ${onA} to 0: ${line.join(',')}`);
  await page.waitForFunction((id) => [...document.querySelectorAll('#events li')].some((li) => li.textContent?.includes(`${id} is draining`)), idA, { timeout: 30_000 });
  if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // A weight that is not a number: the API's error on the page, the weight unchanged.
  await page.click(`#rows tr[data-id="${idB}"] button[data-action="weight"]`);
  await page.waitForFunction(() => document.getElementById('result')?.className === 'error', undefined, { timeout: 30_000 });
  t.regex((await page.textContent('#result')) ?? '', /weight failed: weight: expected a whole number from 1 to 1000, got "heavy"/);
  t.is(proxy.control.find(idB).weight, 1);

  // The token is kept for the tab: a reload does not ask again.
  await page.reload();
  await page.waitForFunction(() => window.fairway.history.points.length > 0, undefined, { timeout: 30_000 });
  t.is(prompts.filter((p) => p === 'Admin token').length, 1);
});

/** A client that queues every message from the first one on (the server greets on connect). */
async function chatClient(url: string) {
  const ws = new WebSocket(url);
  const queue: unknown[] = [];
  const waiters: ((m: unknown) => void)[] = [];
  ws.on('message', (data) => {
    const message = JSON.parse(String(data));
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  await once(ws, 'open');
  const next = () => (queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve) => waiters.push(resolve)));
  return { ws, next: next as () => Promise<{ server: string; user?: string; text?: string }> };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

test('the demo starts, carries a chat message between backends through the balancer, and stops cleanly', async (t) => {
  const { child, output } = await runCli(t, []);
  await waitFor('the demo URLs', () => output().includes('Ctrl-C stops everything'), START_DEADLINE);
  t.regex(output(), /chat {8}http:\/\/127\.0\.0\.1:8080\//);
  t.regex(output(), /dashboard {3}http:\/\/127\.0\.0\.1:9900\//);

  const page = await (await fetch('http://127.0.0.1:8080/')).text();
  t.regex(page, /fairway chat/);
  const alice = await chatClient('ws://127.0.0.1:8080/chat?room=test');
  const bob = await chatClient('ws://127.0.0.1:8080/chat?room=test');
  const [aliceHello, bobHello] = [await alice.next(), await bob.next()];
  t.not(aliceHello.server, bobHello.server, 'least-conn put the two sessions on different backends');
  alice.ws.send(JSON.stringify({ user: 'alice', text: 'hi bob' }));
  t.like(await bob.next(), { user: 'alice', text: 'hi bob', server: bobHello.server });
  const dashboard = await (await fetch('http://127.0.0.1:9900/api/backends')).json();
  t.is((dashboard as { active: number }[]).reduce((n, b) => n + b.active, 0), 2);

  const aliceEnd = closed(alice.ws);
  child.kill('SIGINT');
  t.is((await aliceEnd).code, 1001);
  t.is((await once(child, 'exit'))[0], 0);
  for (const port of [8080, 9900, 9101, 9102, 9103]) t.false(await portOpen(port), `port ${port} is closed`);
  t.not(bob.ws.readyState, WebSocket.OPEN);
});
