/**
 * Limits how many tasks run at once. Waiters are served first come, first served.
 */
export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];

  /** @param permits tasks allowed at once (≥ 1). */
  constructor(readonly permits: number) {
    if (!Number.isInteger(permits) || permits < 1)
      throw new RangeError(`permits must be a whole number ≥ 1, got ${permits}`);
    this.available = permits;
  }

  /** Tasks waiting for a permit. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Runs `task` once a permit is free and gives the permit back when it settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.releasePermit();
    }
  }

  private acquire(): Promise<void> {
    if (this.available > 0) {
      this.available -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private releasePermit(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available += 1;
  }
}

/** Runs `worker` over `items` with at most `limit` at once; resolves when all have settled (never rejects early). */
export async function forEachLimited<T>(
  items: Iterable<T>,
  limit: number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const semaphore = new Semaphore(limit);
  const running: Promise<void>[] = [];
  for (const item of items) running.push(semaphore.run(() => worker(item)));
  await Promise.allSettled(running);
}
