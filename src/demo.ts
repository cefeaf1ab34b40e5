// `npm start` with no arguments: three chat backends, fairway in front, the dashboard beside.

import { spawn, type ChildProcess } from 'node:child_process';
import { validateConfig } from './config/schema.js';
import { createLogger } from './log.js';
import { CHAT_BACKEND } from './paths.js';
import { startFairway } from './primary/fairway.js';

const BACKEND_PORTS = [9101, 9102, 9103];

function waitForLine(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (d) => {
      output += d;
      if (output.includes(text)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`a chat backend exited (code ${code}) before listening: is its port free?`)));
  });
}

export async function runDemo(options: { listen?: string; admin?: string } = {}): Promise<void> {
  const children = BACKEND_PORTS.map((port, i) => {
    const peers = BACKEND_PORTS.filter((p) => p !== port).map(String);
    return spawn(process.execPath, [CHAT_BACKEND, `chat-${i + 1}`, String(port), ...peers], { stdio: ['pipe', 'pipe', 'inherit'] });
  });
  const stopChildren = () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.once('exit', stopChildren);
  try {
    await Promise.all(children.map((child, i) => waitForLine(child, `chat-${i + 1} listening`)));
  } catch (err) {
    stopChildren();
    throw err;
  }
  const config = validateConfig({
    listen: options.listen ?? '127.0.0.1:8080',
    admin: { listen: options.admin ?? '127.0.0.1:9900' },
    log: { level: 'warn', access: false },
    pools: {
      chat: {
        algorithm: 'least-conn',
        health: { path: '/health', interval: '2s', timeout: '1s' },
        backends: BACKEND_PORTS.map((port, i) => ({ url: `127.0.0.1:${port}`, name: `chat-${i + 1}` })),
      },
    },
  });
  const logger = createLogger('warn', { role: 'primary' });
  let fairway;
  try {
    fairway = await startFairway(config, { logger });
  } catch (err) {
    stopChildren();
    throw err;
  }
  process.stdout.write(
    [
      '',
      '  fairway demo: 3 chat backends behind fairway (least-conn, health checks every 2 s)',
      '',
      `  chat        http://${config.listen.host}:${fairway.port}/      open it in two tabs and chat`,
      `  dashboard   http://${config.admin!.listen.host}:${fairway.adminPort}/      where every session went, live`,
      `  metrics     http://${config.admin!.listen.host}:${fairway.adminPort}/metrics`,
      '',
      '  Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  const stop = async () => {
    await fairway.stop(2000);
    const exited = children.filter((c) => c.exitCode === null).map((c) => new Promise((resolve) => c.once('exit', resolve)));
    stopChildren();
    await Promise.all(exited);
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
