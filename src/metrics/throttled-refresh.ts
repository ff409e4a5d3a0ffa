/** How often `/metrics` refreshes the figures it reads from Redis and PostgreSQL, at most: every 5 seconds. */
export const METRICS_REFRESH_MS = 5000;

/**
 * Runs a refresh at most once per interval, however often it is asked for: a call within `intervalMs` of the last
 * refresh's start returns at once (the figures that refresh set stay), and calls while a refresh runs wait for that
 * one. So scrapes, however many and however frequent, cost the services at most one refresh per interval, and a slow
 * service never has two refreshes piled on it.
 */
export class ThrottledRefresh {
  private startedAt = Number.NEGATIVE_INFINITY;
  private running: Promise<void> | undefined;

  constructor(
    private readonly refresh: () => Promise<void>,
    /** Default {@link METRICS_REFRESH_MS} (5000). */
    readonly intervalMs: number = METRICS_REFRESH_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Refreshes unless a refresh started within the interval; resolves when the figures are as fresh as allowed. */
  run(): Promise<void> {
    if (this.running) return this.running;
    if (this.now() - this.startedAt < this.intervalMs) return Promise.resolve();
    this.startedAt = this.now();
    const running = this.refresh().finally(() => {
      this.running = undefined;
    });
    this.running = running;
    return running;
  }
}
