import type { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import { describeRedisError, isRedisUnavailable } from '../services/redis-errors.js';
import type { ServiceGate } from '../services/service-gate.js';
import { MAX_LOCKS_PER_ROUND } from './lock-rounds.js';
import type { SettlingUser } from './settling-user.js';
import { deliverAfterRelease } from './settling-user.js';

/** Longest a finished user's lock waits to be released with others (or with the next locks taken), ms. */
const RELEASE_DELAY_MS = 5;

/** Options of {@link LockRelease}. */
export interface LockReleaseOptions {
  readonly locks: UserLocks;
  /** Faulted when Redis cannot release the locks (they then expire by their TTL). */
  readonly redisGate: ServiceGate;
  readonly logger: Logger;
}

/**
 * Gives back finished users' locks together, many per Redis round trip (token-checked: a lock taken over by someone
 * else is left alone): with the next lock round ({@link take}), or on their own {@link RELEASE_DELAY_MS} (5 ms)
 * after the first one is queued, or at once when half of {@link MAX_LOCKS_PER_ROUND} (256) are queued. A user's
 * outcome is delivered once its lock is released (or once the release failed: the lock then expires by its TTL).
 */
export class LockRelease {
  private queued: SettlingUser[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly options: LockReleaseOptions) {}

  /** Locks queued for release. */
  get pending(): number {
    return this.queued.length;
  }

  /** Queues a finished user's lock for release (a user without a lock has its outcome delivered at once). */
  release(user: SettlingUser): void {
    if (!user.handle) {
      deliverAfterRelease([user]);
      return;
    }
    this.queued.push(user);
    if (this.queued.length >= MAX_LOCKS_PER_ROUND / 2) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), RELEASE_DELAY_MS);
  }

  /**
   * Takes the queued users, whose locks the caller releases in its own round trip (a lock round) and whose outcomes
   * it then delivers.
   */
  take(): SettlingUser[] {
    clearTimeout(this.timer);
    this.timer = undefined;
    const users = this.queued;
    this.queued = [];
    return users;
  }

  /** Releases the queued locks now, in one round trip. */
  flush(): void {
    const users = this.take();
    if (users.length === 0) return;
    const releasing = this.options.locks.releaseMany(users.map((user) => user.handle!)).then(
      () => deliverAfterRelease(users),
      (error: unknown) => {
        if (isRedisUnavailable(error)) this.options.redisGate.fault(error);
        else
          this.options.logger.warn(
            { err: { message: describeRedisError(error) }, users: users.length },
            'could not release user locks; they expire by their TTL',
          );
        deliverAfterRelease(users);
      },
    );
    this.inFlight.add(releasing);
    void releasing.finally(() => this.inFlight.delete(releasing));
  }

  /** Releases the queued locks and waits for the releases on their way (the worker is stopping). */
  async close(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
