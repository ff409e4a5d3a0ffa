import { withTimeout } from '../concurrency/with-timeout.js';
import { retryConflicts } from '../db/retry.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';

/** Options of {@link ServiceGate}. */
export interface ServiceGateOptions {
  /** The service's name in logs and in the `service` label of `windfall_worker_paused`. */
  readonly service: 'Redis' | 'PostgreSQL';
  /** Succeeds once the service takes work again (it should write, as the work does). */
  readonly probe: () => Promise<unknown>;
  /** True for errors that mean "the service cannot work now" (they pause the gate); other errors are the caller's. */
  readonly isFault: (error: unknown) => boolean;
  /** Turns a fault into a short, secret-free text for logs. Default: the error's message. */
  readonly describe?: (error: unknown) => string;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /** Wait before the first probe after a fault, ms; doubled after each failed probe. Default 50. */
  readonly firstProbeDelayMs?: number;
  /** Longest wait between probes, ms. Default 5000. */
  readonly maxProbeDelayMs?: number;
  /** A probe that has not answered after this long has failed, ms. Default 2000. */
  readonly probeTimeoutMs?: number;
  /** While paused, a summary line is logged this often, ms. Default 30000. */
  readonly summaryIntervalMs?: number;
}

/** Thrown to waiters of a gate closed for good (the worker is stopping). */
export class GateClosedError extends Error {
  override readonly name = 'GateClosedError';
}

/** A pause that starts this soon after the gate resumed is logged at debug level (the same outage), ms. */
const RELAPSE_WINDOW_MS = 30_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Pauses the worker's use of one service while that service cannot work (Redis at its memory limit or read-only,
 * PostgreSQL read-only during a failover or refusing connections, either unreachable), instead of failing the work at
 * hand: those faults are not the rewards' fault, and no job attempt is spent on them.
 *
 * The first fault pauses the gate and logs once; a probe then tries the service with backoff (50 ms doubling to 5 s)
 * until it works, logging a summary every 30 s while paused and one line when it resumes. Work waits with
 * {@link whenOpen} or runs through {@link run}, which waits and tries again after each fault.
 */
export class ServiceGate {
  private pausedSince: number | null = null;
  private faultsWhilePaused = 0;
  private lastFault = '';
  private waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  private readonly listeners: (() => void)[] = [];
  private ended = false;
  private resumedAt = 0;
  /** The current pause started soon after the last one ended (logged at debug level). */
  private relapsed = false;

  constructor(private readonly options: ServiceGateOptions) {
    options.metrics?.workerPaused.set({ service: options.service }, 0);
  }

  /** True while the service is believed to work. */
  get isOpen(): boolean {
    return this.pausedSince === null;
  }

  /** `performance.now()` when the gate last opened again after a pause; 0 when it never paused. */
  get lastResumedAt(): number {
    return this.resumedAt;
  }

  /** Calls `listener` each time the gate opens again. */
  onOpen(listener: () => void): void {
    this.listeners.push(listener);
  }

  private describe(error: unknown): string {
    if (this.options.describe) return this.options.describe(error);
    return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);
  }

  /** Reports a fault of the service: pauses the gate (once) and starts probing. */
  fault(error: unknown): void {
    this.lastFault = this.describe(error);
    this.faultsWhilePaused += 1;
    if (this.pausedSince !== null || this.ended) return;
    this.pausedSince = Date.now();
    this.faultsWhilePaused = 1;
    this.options.metrics?.workerPaused.set({ service: this.options.service }, 1);
    // a fault soon after resuming is the same outage's tail (the other statements sent before it ended): the first
    // warning told it already
    this.relapsed = this.resumedAt > 0 && performance.now() - this.resumedAt < RELAPSE_WINDOW_MS;
    this.options.logger[this.relapsed ? 'debug' : 'warn'](
      { service: this.options.service, fault: this.lastFault },
      `${this.options.service} cannot work now: pausing its use and retrying until it can (no reward is failed for this)`,
    );
    void this.probeUntilOpen();
  }

  private async probeUntilOpen(): Promise<void> {
    const first = this.options.firstProbeDelayMs ?? 50;
    const max = this.options.maxProbeDelayMs ?? 5000;
    const timeoutMs = this.options.probeTimeoutMs ?? 2000;
    const summaryEvery = this.options.summaryIntervalMs ?? 30_000;
    let delay = first;
    let lastSummary = Date.now();
    while (this.pausedSince !== null && !this.ended) {
      await sleep(delay * (0.8 + Math.random() * 0.4));
      if (this.ended) return;
      try {
        await withTimeout(this.options.probe(), timeoutMs);
        this.resume();
        return;
      } catch (error) {
        this.lastFault = this.describe(error);
        delay = Math.min(delay * 2, max);
      }
      if (Date.now() - lastSummary >= summaryEvery) {
        lastSummary = Date.now();
        this.options.logger.warn(
          {
            service: this.options.service,
            pausedForMs: Date.now() - this.pausedSince,
            faults: this.faultsWhilePaused,
            fault: this.lastFault,
          },
          `${this.options.service} still cannot work: still paused`,
        );
      }
    }
  }

  private resume(): void {
    if (this.pausedSince === null) return;
    const pausedForMs = Date.now() - this.pausedSince;
    this.pausedSince = null;
    this.resumedAt = performance.now();
    this.options.metrics?.workerPaused.set({ service: this.options.service }, 0);
    this.options.logger[this.relapsed ? 'debug' : 'info'](
      { service: this.options.service, pausedForMs, faults: this.faultsWhilePaused },
      `${this.options.service} works again: resuming`,
    );
    this.faultsWhilePaused = 0;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.resolve();
    for (const listener of this.listeners) listener();
  }

  /** Resolves once the gate is open (at once when it is); rejects when `signal` aborts or the gate is ended. */
  whenOpen(signal?: AbortSignal): Promise<void> {
    if (this.ended)
      return Promise.reject(new GateClosedError(`${this.options.service} gate closed: the worker is stopping`));
    if (this.pausedSince === null) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((waiter) => waiter !== entry);
        reject(signal!.reason);
      };
      const entry = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(entry);
    });
  }

  /**
   * Runs `step`; when it fails with a fault of the service, pauses the gate, waits until it opens and runs `step`
   * again, for as long as it takes (until `signal` aborts). Any other error is thrown. `step` must be idempotent.
   */
  async run<T>(step: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (;;) {
      await this.whenOpen(signal);
      try {
        return await step();
      } catch (error) {
        if (!this.options.isFault(error) || signal?.aborted || this.ended) throw error;
        this.fault(error);
      }
    }
  }

  /** Stops probing; waiters are rejected with {@link GateClosedError}. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters)
      waiter.reject(new GateClosedError(`${this.options.service} gate closed: the worker is stopping`));
  }
}

/**
 * A database step of the worker: waits out PostgreSQL outages through `gate` (however long) and runs the step again
 * after clashes with concurrent work ({@link retryConflicts}). The step must be idempotent.
 */
export function databaseStep<T>(gate: ServiceGate, step: () => Promise<T>, signal: AbortSignal): Promise<T> {
  return gate.run(() => retryConflicts(step, { signal }), signal);
}
