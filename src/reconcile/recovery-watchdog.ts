import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { EventPublisher } from '../events/event-publisher.js';
import type { Logger } from '../log/logger.js';
import type { RedisClient } from '../services/redis-connection.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { resumeOpenWork, type ResumeReport } from './resume-work.js';

/** What one tick of the watchdog did. */
export type WatchdogTick =
  | { readonly outcome: 'scanned'; readonly report: ResumeReport }
  /** Another process of the prefix holds the guard: it scans. */
  | { readonly outcome: 'held-elsewhere' }
  /** The previous scan of this process is still running. */
  | { readonly outcome: 'still-scanning' }
  | { readonly outcome: 'failed'; readonly error: unknown };

/** Options of {@link RecoveryWatchdog}. */
export interface RecoveryWatchdogOptions {
  readonly pool: pg.Pool;
  readonly queues: WindfallQueues;
  /** For the guard key that lets one process of the prefix scan. */
  readonly redis: RedisClient;
  readonly prefix: string;
  /** Time between scans. */
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Webhooks configured: each scan also re-adds the delivery jobs of pending batch events that lost theirs. */
  readonly events?: Pick<EventPublisher, 'resumePending'> | undefined;
  /** Called after each tick with what it did (tests, metrics). */
  readonly onTick?: (tick: WatchdogTick) => void;
}

/**
 * Takes the guard (`SET NX PX`) or renews it when it holds our token; 1 when we hold it now, else 0. Atomic, so two
 * processes never both hold it.
 */
const HOLD_GUARD_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

/** Deletes the guard if it holds our token. */
const RELEASE_GUARD_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * Runs {@link resumeOpenWork} every `intervalMs` in a worker process, so that jobs Redis lost (a restart without
 * AOF) or BullMQ failed for good (stalled too often, a long database outage) are re-added without an operator.
 *
 * One process per prefix scans: the one holding the guard key `<prefix>:recovery-guard`. It renews the guard at
 * each tick (TTL two intervals), also at the ticks that find its previous scan still running, and so scans at every
 * tick; the others skip, and one of them takes the guard over
 * within two intervals once the holder is gone (at its next tick when the holder stopped cleanly and released it).
 * Errors are logged and the next tick tries again. Lost work comes back within one interval of being found lost:
 * only batches still being handed over are left alone until they are one interval old.
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
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  private tick(): void {
    if (this.running) {
      // a scan longer than the guard's two intervals must not let another process start a second one
      this.holdGuard().catch((error: unknown) =>
        this.options.logger.debug({ err: error }, 'could not renew the recovery guard during a long scan'),
      );
      this.options.onTick?.({ outcome: 'still-scanning' });
      return;
    }
    this.running = this.scanOnce()
      .then((report) => this.options.onTick?.(report ? { outcome: 'scanned', report } : { outcome: 'held-elsewhere' }))
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error }, 'recovery scan failed; trying again next interval');
        this.options.onTick?.({ outcome: 'failed', error });
      })
      .finally(() => {
        this.running = undefined;
      });
  }

  /**
   * One scan, if this process holds (or can take) the guard; it then keeps it for two intervals. Returns null when
   * another process holds it.
   */
  async scanOnce(): Promise<ResumeReport | null> {
    if (!(await this.holdGuard())) return null;
    const report = await resumeOpenWork(this.options.pool, this.options.queues, {
      minAgeMs: this.options.intervalMs,
      logger: this.options.logger,
    });
    await this.options.events?.resumePending();
    return report;
  }

  /** Takes or renews the guard for two intervals; false when another process holds it. */
  private async holdGuard(): Promise<boolean> {
    const held = await this.options.redis.eval(
      HOLD_GUARD_SCRIPT,
      1,
      this.guardKey,
      this.token,
      String(2 * this.options.intervalMs),
    );
    return Number(held) === 1;
  }

  /**
   * Stops scanning, waits for a scan in progress and hands the guard back, so another process takes over at its
   * next tick (skipped when Redis is not connected, and given up after 1 s: the guard then expires by itself).
   * Idempotent.
   */
  async stop(): Promise<void> {
    const first = !this.stopped;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    if (!first || this.options.redis.status !== 'ready') return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.options.redis.eval(RELEASE_GUARD_SCRIPT, 1, this.guardKey, this.token),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 1000);
          timer.unref();
        }),
      ]);
    } catch (error) {
      this.options.logger.debug({ err: error }, 'could not release the recovery guard; it expires by itself');
    } finally {
      clearTimeout(timer);
    }
  }
}
