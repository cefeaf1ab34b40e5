// Runs one long-lived serve task per worker thread on piscina, and replaces a worker that dies.

import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { PrimaryMessage, ServeResult, ServeTask, WorkerMessage } from '../engine/messages.js';
import type { ClientLimits } from '../core/limits/clientLimits.js';
import type { StateTable } from '../core/state/stateTable.js';
import type { Logger } from '../log.js';
import { SERVE_TASKS } from '../paths.js';

/**
 * Young generation of each worker's V8 heap, MiB. V8 grows it to 48 MiB or so during a burst of
 * connections and keeps those pages until the sessions have been idle a while, which at 9000 idle
 * WebSocket sessions over 2 workers was half of the process's memory growth (9.2 KiB per session;
 * 4.5 with this cap); no cost to HTTP or WebSocket throughput was measurable (docs/BENCHMARKS.md).
 */
export const YOUNG_GENERATION_MB = 12;


export type RunningEngine = keyof typeof SERVE_TASKS;
const RESTART_DELAY_MIN = 100;
const RESTART_DELAY_MAX = 5_000;

export type TaskFor = (worker: number, port: MessagePort) => ServeTask;

export class Supervisor {
  private readonly pool: Piscina<ServeTask, ServeResult>;
  private readonly ports = new Map<number, MessagePort>();
  /** What each worker's port does with a message. */
  private readonly receivers = new Map<number, (message: WorkerMessage) => void>();
  private catchingUp = false;
  private readonly running = new Map<number, Promise<void>>();
  private stopping = false;
  /** Times a worker was replaced after dying, for operators and tests. */
  restarts = 0;
  /** Messages of a running worker beyond starting (the fleet's session picks). */
  onMessage: ((worker: number, message: WorkerMessage) => void) | undefined;
  /** A worker's thread has exited and its row of the table was reconciled. */
  onDied: ((worker: number) => void) | undefined;
  /** Called when a worker died and a replacement is started, for the event log. */
  onRestart: ((worker: number) => void) | undefined;

  constructor(
    engine: RunningEngine,
    private readonly count: number,
    private readonly taskFor: TaskFor,
    private readonly table: StateTable,
    private readonly limits: ClientLimits,
    private readonly logger: Logger,
  ) {
    this.pool = new Piscina({
      filename: SERVE_TASKS[engine],
      minThreads: count,
      maxThreads: count,
      // Serve tasks never finish until shutdown: no idle reaping, no Atomics.wait between tasks.
      idleTimeout: Infinity,
      concurrentTasksPerWorker: 1,
      atomics: 'disabled',
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
  }

  /**
   * Starts every worker; resolves when all listen, rejects if one cannot. Workers report ready
   * before they listen; when the first is, `beforeListen` runs (the primary lets go of the ports
   * it held), and each worker is told to listen as soon as it is ready and the ports are free: the
   * first answers while the others still load (docs/operations.md, start-up).
   */
  async start(beforeListen: () => Promise<void> | void = () => undefined): Promise<void> {
    let released: Promise<void> | undefined;
    const onReady = () => (released ??= Promise.resolve().then(beforeListen));
    const started: Promise<void>[] = [];
    for (let worker = 0; worker < this.count; worker++) started.push(this.launch(worker, RESTART_DELAY_MIN, onReady));
    await Promise.all(started);
  }

  /** Starts worker `worker`'s serve task; it listens once `onReady` resolves; resolves once it does. */
  private launch(worker: number, restartDelay: number, onReady: () => Promise<void> = () => Promise.resolve()): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    this.ports.set(worker, port1);
    let listened = false;
    const listening = new Promise<void>((resolve, reject) => {
      const receive = (message: WorkerMessage) => {
        if (message.type === 'ready') {
          void onReady().then(
            () => this.sendTo(worker, { type: 'listen' }),
            (err: Error) => reject(err),
          );
        } else if (message.type === 'listening') {
          listened = true;
          resolve();
        } else if (message.type === 'failed') reject(Object.assign(new Error(message.message), { code: message.code }));
        else this.onMessage?.(worker, message);
      };
      this.receivers.set(worker, receive);
      port1.on('message', receive);
    });
    const task = this.pool.run(this.taskFor(worker, port2), { transferList: [port2] });
    const startedAt = Date.now();
    const done = task.then(
      () => undefined,
      (err: Error) => {
        port1.close();
        // A worker that never listened failed to start: the caller hears of it, no restart loop.
        if (this.stopping || !listened) return;
        // The thread has exited, so its row of the table is final: subtract what it still held.
        const subtracted = this.table.reconcileWorker(worker);
        this.limits.forgetWorker(worker);
        this.onDied?.(worker);
        this.restarts++;
        this.onRestart?.(worker);
        this.logger.error({ worker, err: err.message, sessionsSubtracted: subtracted }, 'worker died: replacing it');
        const delay = Date.now() - startedAt > 10_000 ? RESTART_DELAY_MIN : Math.min(restartDelay * 2, RESTART_DELAY_MAX);
        setTimeout(() => {
          if (this.stopping) return;
          this.launch(worker, delay).then(
            () => this.logger.info({ worker }, 'worker replaced and listening'),
            (error: Error) => {
              if (!this.stopping) this.logger.error({ worker, err: error.message }, 'replacement worker failed to start');
            },
          );
        }, delay);
      },
    );
    this.running.set(worker, done);
    return Promise.race([listening, task.then(() => Promise.reject(new Error(`worker ${worker} stopped before listening`)))]);
  }

  /** Sends a message to one worker, if it is running. */
  /**
   * Handles at once every message the other workers have posted and the primary has not read yet.
   * The workers' ports are read in turn, so a message one worker posted may otherwise be read after
   * a later one from another: a handler of `from`'s message for which that order matters calls this first.
   */
  catchUp(from: number): void {
    if (this.catchingUp) return;
    this.catchingUp = true;
    try {
      for (const [worker, port] of this.ports) {
        if (worker === from) continue;
        const receive = this.receivers.get(worker)!;
        for (let next = receiveMessageOnPort(port); next; next = receiveMessageOnPort(port)) receive(next.message as WorkerMessage);
      }
    } finally {
      this.catchingUp = false;
    }
  }

  sendTo(worker: number, message: PrimaryMessage): void {
    try {
      this.ports.get(worker)?.postMessage(message);
    } catch {
      // The port of a worker that already died.
    }
  }

  /** Sends a message to every running worker. */
  broadcast(message: PrimaryMessage): void {
    for (const port of this.ports.values()) {
      try {
        port.postMessage(message);
      } catch {
        // The port of a worker that already died; its replacement starts with the current config.
      }
    }
  }

  /** Asks every worker to close gracefully within `grace` ms, then ends the threads. */
  async stop(grace: number): Promise<void> {
    this.stopping = true;
    this.broadcast({ type: 'shutdown', grace });
    await Promise.allSettled(this.running.values());
    await this.pool.destroy();
  }
}
