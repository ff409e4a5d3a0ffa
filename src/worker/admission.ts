/**
 * Lets one job at a time load its users, and only while fewer than `admitBelow` users wait in the settlement
 * pipeline's line: the worker's memory then does not grow with the jobs in flight (each BullMQ worker runs several).
 */
export class Admission {
  private readonly waiting: (() => void)[] = [];
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
   */
  enter(signal: AbortSignal): Promise<() => void> {
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
        const at = this.waiting.indexOf(admit);
        if (at >= 0) this.waiting.splice(at, 1);
        this.loading += 1;
        resolve(leave);
      };
      if (signal.aborted || this.hasRoom()) {
        admit();
        return;
      }
      signal.addEventListener('abort', admit, { once: true });
      this.waiting.push(admit);
    });
  }

  private hasRoom(): boolean {
    return this.loading === 0 && this.usersInLine() < this.admitBelow;
  }

  /** Admits the next waiting job if there is room now (the pipeline calls it as its line shortens). */
  check(): void {
    if (this.waiting.length > 0 && this.hasRoom()) this.waiting[0]!();
  }
}
