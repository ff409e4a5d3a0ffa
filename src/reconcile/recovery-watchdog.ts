import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import type { RedisClient } from '../queue/redis-connection.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { resumeOpenWork, type ResumeReport } from './resume-work.js';

/** Options of {@link RecoveryWatchdog}. */
export interface RecoveryWatchdogOptions {
  readonly pool: pg.Pool;
  readonly queues: WindfallQueues;
  /** For the guard key that lets one process of the prefix scan per interval. */
  readonly redis: RedisClient;
  readonly prefix: string;
  /** Time between scans (and the least age of work it touches). */
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Called after each scan that ran (tests, metrics). */
  readonly onScan?: (report: ResumeReport) => void;
}

/**
 * Runs {@link resumeOpenWork} every `intervalMs` in a worker process, so that jobs Redis lost (a restart without
 * AOF) or BullMQ failed for good (stalled too often, a long database outage) are re-added without an operator.
 * One process per prefix scans per interval (a `SET NX PX` guard key); the others skip. Errors are logged and the
 * next interval tries again. Work younger than one interval is left alone.
 */
export class RecoveryWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly guardKey: string;
  private readonly token = randomUUID();

  constructor(private readonly options: RecoveryWatchdogOptions) {
    this.guardKey = `${options.prefix}:recovery-guard`;
  }

  /** Starts the periodic scan (the first after one interval). Idempotent. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      this.running ??= this.scanOnce()
        .then(() => undefined)
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'recovery scan failed; trying again next interval'))
        .finally(() => {
          this.running = undefined;
        });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One scan, if no other process of this prefix scanned within the interval. Returns null when skipped. */
  async scanOnce(): Promise<ResumeReport | null> {
    const taken = await this.options.redis.set(this.guardKey, this.token, 'PX', this.options.intervalMs, 'NX');
    if (taken !== 'OK') return null;
    const report = await resumeOpenWork(this.options.pool, this.options.queues, {
      minAgeMs: this.options.intervalMs,
      logger: this.options.logger,
    });
    this.options.onScan?.(report);
    return report;
  }

  /** Stops scanning and waits for a scan in progress. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
