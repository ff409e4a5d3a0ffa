/**
 * Lets one job at a time load its users, and only while fewer than `admitBelow` users wait in the settlement
 * pipeline's line: the worker's memory then does not grow with the jobs in flight (each BullMQ worker runs several).
 * Waiting jobs are admitted by rank (their BullMQ priority: lower first), then in arrival order: a small batch's
 * chunk fetched behind a dozen chunks of a big batch is loaded before them, as the queue would have handed it out.
 */
export class Admission {
  private readonly waiting: { readonly admit: () => void; readonly rank: number; readonly seq: number }[] = [];
  private arrivals = 0;
  private loading = 0;

  /**
   * @param admitBelow users in line below which a job may load (about two waves of transactions ahead).
   * @param usersInLine the pipeline's line length now.
   */
  constructor(
    private readonly admitBelow: number,
    private readonly usersInLine: () => number,
  ) {}

  /**
   * Resolves once this job may load (at once when it may, or when `signal` aborts) with the function to call once its
   * users are in line, or its load failed: the next job may load then.
   * @param rank the job's BullMQ priority (lower is admitted first; 0, the default, first of all).
   */
  enter(signal: AbortSignal, rank = 0): Promise<() => void> {
    return new Promise((resolve) => {
      let done = false;
      const leave = (): void => {
        if (done) return;
        done = true;
        this.loading -= 1;
        this.check();
      };
      const admit = (): void => {
        signal.removeEventListener('abort', admit);
        const at = this.waiting.findIndex((waiter) => waiter.admit === admit);
        if (at >= 0) this.waiting.splice(at, 1);
        this.loading += 1;
        resolve(leave);
      };
      if (signal.aborted || this.hasRoom()) {
        admit();
        return;
      }
      signal.addEventListener('abort', admit, { once: true });
      this.waiting.push({ admit, rank, seq: this.arrivals++ });
    });
  }

  private hasRoom(): boolean {
    return this.loading === 0 && this.usersInLine() < this.admitBelow;
  }

  /** Admits the next waiting job if there is room now (the pipeline calls it as its line shortens). */
  check(): void {
    if (this.waiting.length === 0 || !this.hasRoom()) return;
    let next = this.waiting[0]!;
    for (const waiter of this.waiting)
      if (waiter.rank < next.rank || (waiter.rank === next.rank && waiter.seq < next.seq)) next = waiter;
    next.admit();
  }
}
