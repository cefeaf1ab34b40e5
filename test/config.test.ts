// Config validation: `--check` exit codes and messages, short forms, defaults, and units.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CONFIG_KEYS, ConfigError, parseDuration, parseSize, validateConfig } from '../dist/src/index.js';
import { DEFAULTS } from '../dist/src/config/defaults.js';

const CLI = new URL('../dist/bundle/cli.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'fairway-config-'));

function check(name: string, text: string) {
  const file = join(dir, name);
  writeFileSync(file, text);
  const run = spawnSync(process.execPath, [CLI, '--config', file, '--check'], { encoding: 'utf8' });
  return { code: run.status, out: run.stdout, err: run.stderr };
}

test('a valid YAML config passes --check with exit 0', (t) => {
  const { code, out } = check(
    'ok.yaml',
    `listen: 127.0.0.1:8080
workers: auto
engine: auto
log: { level: info, access: true }
pools:
  chat:
    algorithm: least-conn
    backends:
      - url: http://127.0.0.1:9001
        weight: 1
      - 127.0.0.1:9002
  api:
    algorithm: round-robin
    backends: [127.0.0.1:9003]
routes:
  - match: { path: /ws }
    pool: chat
  - match: { host: api.example, headers: { x-version: "2" } }
    pool: api
`,
  );
  t.is(code, 0);
  t.regex(out, /config ok: 2 pool\(s\), 3 backend\(s\)/);
});

test('JSON configs are read too', (t) => {
  const { code } = check('ok.json', JSON.stringify({ listen: '127.0.0.1:8080', pools: { a: { backends: ['127.0.0.1:9001'] } } }));
  t.is(code, 0);
});

const INVALID: [string, string, RegExp][] = [
  ['unknown key', 'listen: 127.0.0.1:8080\nworkrs: 2\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: workrs: unknown key \(allowed here: listen, tls, workers/],
  ['bad url', 'pools:\n  chat:\n    backends:\n      - url: htp://x\n', /config: pools\.chat\.backends\[0\]\.url: expected an http\(s\) URL with no path, or host:port, got "htp:\/\/x"/],
  ['bad algorithm', 'pools: { a: { algorithm: fastest, backends: [127.0.0.1:1] } }\n', /config: pools\.a\.algorithm: expected one of round-robin, weighted-round-robin, least-conn, random, p2c, least-time, hash, got "fastest"/],
  ['bad duration', 'timeouts: { connect: 5 }\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: timeouts\.connect: expected a duration with a unit such as "500ms" or "5s", got 5/],
  ['bad listen', 'listen: 8080\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: listen: expected host:port such as "127\.0\.0\.1:8080", got 8080/],
  ['route to unknown pool', 'pools: { a: { backends: [127.0.0.1:1] } }\nroutes: [{ match: { path: /x }, pool: b }]\n', /config: routes\[0\]\.pool: expected the name of a pool \(a\), got "b"/],
  ['no pools', 'listen: 127.0.0.1:8080\n', /config: pools: expected a mapping, got nothing/],
  ['bad weight', 'pools: { a: { backends: [{ url: 127.0.0.1:1, weight: -1 }] } }\n', /config: pools\.a\.backends\[0\]\.weight: expected a whole number from 1 to 1000, got -1/],
  ['duplicate backend', 'pools: { a: { backends: [127.0.0.1:1, "http://127.0.0.1:1"] } }\n', /config: pools\.a\.backends\[1\]: duplicate backend http:\/\/127\.0\.0\.1:1 in pool a/],
  ['two pools without routes', 'pools: { a: { backends: [127.0.0.1:1] }, b: { backends: [127.0.0.1:2] } }\n', /config: routes: expected a list of routes when more than one pool serves HTTP/],
  ['not YAML', 'pools: [unclosed\n', /not valid YAML or JSON/],
  ['a blank admin token', 'admin: { listen: 0.0.0.0:9900, token: "  " }\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: admin\.token: expected a token that neither is blank nor starts or ends with a space, got " {2}"/],
  ['a tiny request head limit', 'limits: { max_request_head: 100b }\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: limits\.max_request_head: expected a size from "1kb" to "1mb", got "100b"/],
  ['a dns backend without a port', 'pools: { a: { backends: [{ dns: chat.internal }] } }\n', /config: pools\.a\.backends\[0\]\.port: expected a whole number from 1 to 65535, got nothing/],
  ['a port beside srv', 'pools: { a: { backends: [{ srv: _chat._tcp.internal, port: 80 }] } }\n', /config: pools\.a\.backends\[0\]\.port: expected no port beside srv \(SRV records carry the ports\), got 80/],
  ['a url beside dns', 'pools: { a: { backends: [{ dns: chat.internal, port: 80, url: 127.0.0.1:1 }] } }\n', /config: pools\.a\.backends\[0\]\.url: expected no url beside dns/],
  ['a bad dns name', 'pools: { a: { backends: [{ dns: "chat internal", port: 80 }] } }\n', /config: pools\.a\.backends\[0\]\.dns: expected a DNS name such as chat\.internal, got "chat internal"/],
  ['a dns interval under a second', 'pools: { a: { backends: [{ dns: chat.internal, port: 80, interval: 10ms }] } }\n', /config: pools\.a\.backends\[0\]\.interval: expected at least "1s", got "10ms"/],
  ['a resolver that is not an address', 'resolver: { servers: [dns.example] }\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: resolver\.servers\[0\]: expected an IP address with an optional port, such as 127\.0\.0\.1:53, got "dns\.example"/],
  ['a health threshold that is not a number', 'pools: { a: { health: { json: { unhealthy: { cpu: "> lots" } } }, backends: [127.0.0.1:1] } }\n', /config: pools\.a\.health\.json\.unhealthy\.cpu: expected a number after >, such as "> 90", got "> lots"/],
  ['a bad expect_body', 'pools: { a: { health: { expect_body: "(" }, backends: [127.0.0.1:1] } }\n', /config: pools\.a\.health\.expect_body: expected a regular expression/],
  ['a degraded weight above 1', 'pools: { a: { health: { degraded_weight: 2 }, backends: [127.0.0.1:1] } }\n', /config: pools\.a\.health\.degraded_weight: expected a share of the weight above 0 and at most 1, such as 0\.5, got 2/],
  ['an agent without a port', 'pools: { a: { health: { agent: { interval: 2s } }, backends: [127.0.0.1:1] } }\n', /config: pools\.a\.health\.agent\.port: expected a whole number from 1 to 65535, got nothing/],
  ['a request head timeout under a second', 'timeouts: { request_head: 10ms }\npools: { a: { backends: [127.0.0.1:1] } }\n', /config: timeouts\.request_head: expected at least "1s", got "10ms"/],
];

for (const [name, text, message] of INVALID) {
  test(`--check rejects ${name} with exit 2 and a message naming the field`, (t) => {
    const { code, err } = check(`${name.replace(/ /g, '-')}.yaml`, text);
    t.is(code, 2);
    t.regex(err, message);
  });
}

test('every problem is reported at once', (t) => {
  const error = t.throws(() => validateConfig({ workers: 0, engine: 'fast', pools: { a: { backends: ['127.0.0.1:1'] } } }), { instanceOf: ConfigError });
  t.is(error!.problems.length, 2);
});

test('a missing config file is named', (t) => {
  const run = spawnSync(process.execPath, [CLI, '--config', join(dir, 'absent.yaml'), '--check'], { encoding: 'utf8' });
  t.is(run.status, 2);
  t.regex(run.stderr, /absent\.yaml: cannot read the file \(ENOENT\)/);
});

test('quick-mode flags build the same config; bad flags exit 2', (t) => {
  const ok = spawnSync(process.execPath, [CLI, '--listen', '127.0.0.1:8080', '--to', '127.0.0.1:9001', '--to', 'http://127.0.0.1:9002', '--algorithm', 'round-robin', '--check'], { encoding: 'utf8' });
  t.is(ok.status, 0);
  t.regex(ok.stdout, /1 pool\(s\), 2 backend\(s\)/);
  const bad = spawnSync(process.execPath, [CLI, '--to', '127.0.0.1:9001', '--algorithm', 'random-ish', '--check'], { encoding: 'utf8' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /pools\.default\.algorithm: expected one of/);
  const unknown = spawnSync(process.execPath, [CLI, '--frobnicate'], { encoding: 'utf8' });
  t.is(unknown.status, 2);
});

test('short backend forms and defaults normalise', (t) => {
  const config = validateConfig({ pools: { a: { backends: ['127.0.0.1:9001', { url: 'http://[::1]:9002', weight: 3 }] } } });
  t.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
  t.is(config.pools.a.algorithm, 'least-conn');
  t.deepEqual(
    config.pools.a.backends.map((b) => [b.id, b.host, b.port, b.weight]),
    [
      ['a/127.0.0.1:9001', '127.0.0.1', 9001, 1],
      ['a/[::1]:9002', '::1', 9002, 3],
    ],
  );
  t.is(config.shutdown.grace, 10_000);
  t.is(config.websocket.maxMessage, 16 * 1024 * 1024);
});

test('durations and sizes take units', (t) => {
  t.is(parseDuration('250ms'), 250);
  t.is(parseDuration('5s'), 5000);
  t.is(parseDuration('1.5m'), 90_000);
  t.is(parseDuration('2h'), 7_200_000);
  t.is(parseDuration('5'), undefined);
  t.is(parseDuration('5 parsecs'), undefined);
  t.is(parseSize('16mb'), 16 * 1024 * 1024);
  t.is(parseSize('64KB'), 64 * 1024);
  t.is(parseSize('lots'), undefined);
});

test('docs/configuration.md describes every key the schema accepts', (t) => {
  const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  const rows = doc.split('\n').filter((line) => line.startsWith('| `'));
  const missing: string[] = [];
  for (const [where, keys] of Object.entries(CONFIG_KEYS)) {
    for (const key of keys) {
      const full = where ? `${where}.${key}` : key;
      // A section (tls, pools.NAME, routes[]...) is described through its own keys.
      if ([full, `${full}[]`, `${full}.NAME`].some((section) => section in CONFIG_KEYS)) continue;
      // A row of its own (`full`, or `full[]` for a list), or its parent's row naming it.
      const own = doc.includes(`\`${full}\``) || doc.includes(`\`${full}[]\``);
      const inParent = rows.some((row) => row.split('|')[1].includes(`\`${where}\``) && new RegExp(`\\b${key}\\b`).test(row));
      if (!own && !inParent) missing.push(full);
    }
  }
  t.deepEqual(missing, []);
});

test('the chat example config passes --check once its certificate files exist', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fairway-example-'));
  for (const name of ['chat.example.com', 'api.example.com']) for (const ext of ['crt', 'key']) writeFileSync(join(dir, `${name}.${ext}`), 'placeholder');
  const example = readFileSync(new URL('../examples/chat.yaml', import.meta.url), 'utf8');
  const file = join(dir, 'chat.yaml');
  writeFileSync(file, example.replaceAll('/etc/fairway/tls/', `${dir}/`));
  const run = spawnSync(process.execPath, [CLI, '--config', file, '--check'], { encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  // As shipped, the certificate paths are the operator's to fill in: named if they are missing.
  const shipped = spawnSync(process.execPath, [CLI, '--config', new URL('../examples/chat.yaml', import.meta.url).pathname, '--check'], { encoding: 'utf8' });
  t.is(shipped.status, 2);
  t.regex(shipped.stderr, /tls\.cert: cannot read/);
});

test('docs/configuration.md shows every default of the DEFAULTS table the parsers use', (t) => {
  const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  const rows = doc
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split('|').map((cell) => cell.trim()))
    .map(([, keys, shown, meaning]) => ({ keys: keys.split(/,\s*/), shown, meaning }));
  for (const [key, value] of Object.entries(DEFAULTS)) {
    const own = rows.find((row) => row.keys.includes(`\`${key}\``));
    if (own) {
      t.is(own.shown, `\`${value}\``, key);
      continue;
    }
    // A key of a section described in one row, as `{ name: value, ... }`.
    const section = key.slice(0, key.lastIndexOf('.'));
    const name = key.slice(key.lastIndexOf('.') + 1);
    const row = rows.find((r) => r.keys.includes(`\`${section}\``));
    t.true(row !== undefined && `${row.shown} ${row.meaning}`.includes(`${name}: ${value}`), key);
  }
  // And the defaults are what a config without those keys gets.
  const config = validateConfig({ pools: { a: { health: {}, rebalance: {}, backends: ['127.0.0.1:1'] } } });
  t.like(config, { listen: { host: '127.0.0.1', port: 8080 }, engine: 'native-free', log: { level: 'info', access: true }, timeouts: { connect: 5000, response: 60_000, idle: 60_000 } });
  t.like(config.websocket, { maxMessage: 16 * 1024 * 1024, pingInterval: 30_000, maxBuffered: 16 * 1024 * 1024 });
  t.like(config.pools.a, { algorithm: 'least-conn', decay: 10_000, queue: { size: 0, timeout: 5000 }, retries: { count: 2, budget: 0.2 } });
  t.deepEqual(config.pools.a.health, { type: 'http', path: '/health', interval: 5000, timeout: 2000, rise: 2, fall: 3, expectStatus: [200, 399], degradedWeight: 0.5 });
  t.deepEqual(config.resolver, { servers: [], timeout: 2000 });
  const found = validateConfig({ pools: { a: { health: { agent: { port: 9 } }, backends: [{ dns: 'Chat.Internal.', port: 80 }, { srv: '_c._tcp.internal' }] } } });
  t.deepEqual(found.pools.a.discovery, [
    { kind: 'dns', name: 'chat.internal', port: 80, interval: 5000, weight: 1, maxConns: 0 },
    { kind: 'srv', name: '_c._tcp.internal', port: 0, interval: 5000, weight: 1, maxConns: 0 },
  ]);
  t.deepEqual(found.pools.a.health?.agent, { port: 9, interval: 2000, timeout: 1000, send: '' });
  t.deepEqual(config.pools.a.outlier, { consecutiveFailures: 5, consecutive5xx: 0, baseEjection: 30_000, maxEjectedShare: 0.5 });
  t.deepEqual(config.pools.a.drain, { timeout: 30_000, window: 10_000, rate: 100, code: 1001 });
  t.deepEqual(config.pools.a.rebalance, { maxSkew: 1.25, rate: 20, order: 'newest' });
});
