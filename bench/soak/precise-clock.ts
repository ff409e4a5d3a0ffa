/**
 * Callbacks at sub-millisecond times without spinning. Node's timers fire on whole milliseconds of a cached loop
 * clock (a 0.5 ms delay becomes 1–2 ms); a helper thread here sleeps in `Atomics.wait` (a futex: microsecond
 * precision) until the earliest requested time and wakes the main thread with a message (tens of microseconds).
 */
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

/** The helper thread: sleeps until the shared deadline (or a change of it), then posts one message. */
const HELPER = `
const { workerData, parentPort } = require('node:worker_threads');
const signal = new Int32Array(workerData, 0, 1);
const deadline = new Float64Array(workerData, 8, 1);
const now = () => performance.timeOrigin + performance.now();
for (;;) {
  const seen = Atomics.load(signal, 0);
  if (seen === -1) break;
  const wait = deadline[0] - now();
  if (wait <= 0) {
    deadline[0] = Infinity;
    parentPort.postMessage(0);
    continue;
  }
  Atomics.wait(signal, 0, seen, Number.isFinite(wait) ? wait : undefined);
}
`;

/** Milliseconds since the epoch, with the fraction (comparable across threads). */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** One clock per user (a proxy); {@link close} it. */
export class PreciseClock {
  private readonly shared = new SharedArrayBuffer(16);
  private readonly signal = new Int32Array(this.shared, 0, 1);
  private readonly deadline = new Float64Array(this.shared, 8, 1);
  private readonly pending = new Map<object, { at: number; callback: () => void }>();
  private armedAt = Infinity;
  private helper: Worker | undefined;
  private closed = false;

  constructor() {
    this.deadline[0] = Infinity;
  }

  private start(): Worker {
    const helper = new Worker(HELPER, { eval: true, workerData: this.shared });
    helper.unref();
    helper.on('message', () => {
      this.armedAt = Infinity;
      this.fire();
    });
    helper.on('error', (error) => {
      throw error;
    });
    return helper;
  }

  /** Calls `callback` once at `at` ({@link preciseNow} time) or just after; a later call for `key` replaces it. */
  schedule(key: object, at: number, callback: () => void): void {
    if (this.closed) return;
    this.pending.set(key, { at, callback });
    if (at < this.armedAt) this.arm(at);
  }

  /** Forgets what `key` scheduled. */
  cancel(key: object): void {
    this.pending.delete(key);
  }

  private arm(at: number): void {
    this.helper ??= this.start();
    this.armedAt = at;
    this.deadline[0] = at;
    Atomics.store(this.signal, 0, (Atomics.load(this.signal, 0) + 1) & 0x3fffffff);
    Atomics.notify(this.signal, 0);
  }

  private fire(): void {
    const now = preciseNow();
    let next = Infinity;
    for (const [key, entry] of [...this.pending]) {
      if (entry.at <= now) {
        this.pending.delete(key);
        entry.callback();
      }
    }
    for (const entry of this.pending.values()) next = Math.min(next, entry.at);
    if (next < this.armedAt) this.arm(next);
  }

  /** Stops the helper thread; pending callbacks are dropped. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pending.clear();
    Atomics.store(this.signal, 0, -1);
    Atomics.notify(this.signal, 0);
    await this.helper?.terminate();
  }
}
