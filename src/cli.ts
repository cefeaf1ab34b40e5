#!/usr/bin/env node
// Command line: quick mode (--listen/--to), a config file (--config), validation only (--check).

import { parseArgs } from 'node:util';
import { readConfigFile } from './config/load.js';
import { ConfigError, validateConfig } from './config/schema.js';
import { readFileSync } from 'node:fs';
import { createLogger, prettyFor } from './log.js';
import { PACKAGE_JSON } from './paths.js';
import { runDemo } from './demo.js';
import { startFairway, StartupError } from './primary/fairway.js';

const USAGE = `Usage:
  fairway             the demo: 3 chat backends behind fairway, dashboard on 127.0.0.1:9900
  fairway --listen 127.0.0.1:8080 --to 127.0.0.1:9001 --to 127.0.0.1:9002 [--algorithm least-conn]
  fairway --config fairway.yaml [--check]

Options:
  --config FILE       YAML or JSON config file
  --check             validate the config and exit (0 valid, 2 invalid)
  --listen HOST:PORT  address to accept clients on (default 127.0.0.1:8080)
  --to ADDRESS        a backend, host:port or http://host:port (repeat for more)
  --algorithm NAME    round-robin, weighted-round-robin, least-conn, random, p2c,
                      least-time (default least-conn); hash needs a config file
  --workers N|auto    worker threads (default auto = available cores)
  --engine NAME       native-free, uws or auto (default native-free)
  --admin HOST:PORT   admin API, /metrics and dashboard (off unless given)
  -v, --version       the version of fairway
  -h, --help          this text
`;

const EXIT_INVALID = 2;

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function parseCommandLine() {
  try {
    return parseArgs({
      options: {
        config: { type: 'string' },
        check: { type: 'boolean' },
        listen: { type: 'string' },
        to: { type: 'string', multiple: true },
        algorithm: { type: 'string' },
        workers: { type: 'string' },
        engine: { type: 'string' },
        admin: { type: 'string' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return fail(`fairway: ${(err as Error).message}\n\n${USAGE}`, EXIT_INVALID);
  }
}

/** Builds the raw config from a file and/or flags; flags override what the file says. */
function rawConfig(flags: ReturnType<typeof parseCommandLine>): Record<string, unknown> {
  if (!flags.config && !flags.to) fail(`fairway: give --config FILE, or --to for each backend\n\n${USAGE}`, EXIT_INVALID);
  if (flags.config && flags.to) fail('fairway: --to builds its own pool and cannot be combined with --config', EXIT_INVALID);
  const raw: Record<string, unknown> = flags.config ? (readConfigFile(flags.config) as Record<string, unknown>) : {};
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  if (flags.listen !== undefined) raw.listen = flags.listen;
  if (flags.engine !== undefined) raw.engine = flags.engine;
  if (flags.admin !== undefined) raw.admin = { ...(raw.admin as object), listen: flags.admin };
  if (flags.workers !== undefined) raw.workers = /^\d+$/.test(flags.workers) ? Number(flags.workers) : flags.workers;
  if (flags.to) {
    raw.pools = { default: { algorithm: flags.algorithm ?? 'least-conn', backends: flags.to } };
  } else if (flags.algorithm !== undefined && raw.pools && typeof raw.pools === 'object') {
    for (const pool of Object.values(raw.pools as Record<string, Record<string, unknown>>)) {
      if (pool && typeof pool === 'object') pool.algorithm = flags.algorithm;
    }
  }
  return raw;
}

async function main(): Promise<void> {
  const flags = parseCommandLine();
  if (flags.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (flags.version) {
    const pkg = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
    process.stdout.write(`fairway ${pkg.version}\n`);
    return;
  }
  if (process.argv.length <= 2) {
    await runDemo().catch((err: Error) => fail(`fairway demo: ${err.message}`, 1));
    return;
  }
  let config;
  try {
    config = validateConfig(rawConfig(flags));
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT_INVALID);
    throw err;
  }
  if (flags.check) {
    process.stdout.write(`config ok: ${Object.keys(config.pools).length} pool(s), ${Object.values(config.pools).reduce((n, p) => n + p.backends.length, 0)} backend(s)\n`);
    return;
  }

  const logger = createLogger(config.log.level, { role: 'primary' }, prettyFor(config.log.format));
  let fairway;
  try {
    fairway = await startFairway(config, { logger, configPath: flags.config });
  } catch (err) {
    if (err instanceof StartupError) {
      logger.flush();
      fail(`fairway: ${err.message}`, 1);
    }
    throw err;
  }
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down: closing WebSockets with 1001, finishing requests in flight');
    fairway.stop().then(
      () => logger.flush(() => process.exit(0)),
      (err: Error) => {
        logger.error({ err }, 'shutdown failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  process.on('SIGHUP', () => {
    try {
      fairway.control.reload();
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'reload refused: the running config stays');
    }
  });
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: Error) => fail(`fairway: ${err.stack ?? err.message}`, 1));
