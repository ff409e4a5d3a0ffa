import type { Logger } from '../../log/logger.js';
import type { Windfall } from '../../runtime/windfall.js';
import { withTimeout } from '../../concurrency/with-timeout.js';

/** The services `/readyz` checks. */
export type ReadinessCheckName = 'redis' | 'postgres';

/** One check as `/readyz` shows it: whether it passed, how long it took, and which service failed — no more. */
export interface ReadinessCheck {
  readonly ok: boolean;
  readonly ms: number;
  /** Present when the check failed: `Redis does not answer` or `PostgreSQL does not answer`. */
  readonly error?: string;
}

/** The answer of `/readyz`. */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: Readonly<Record<ReadinessCheckName, ReadinessCheck>>;
}

/**
 * What an unauthenticated caller learns of a failed check. The driver's own text (hosts, ports, user and
 * database names, "password authentication failed for user …") goes to the server log only.
 */
export const PUBLIC_FAILURE: Readonly<Record<ReadinessCheckName, string>> = {
  redis: 'Redis does not answer',
  postgres: 'PostgreSQL does not answer',
};

/**
 * The readiness checks of `windfall serve`: PING Redis and `select 1` on PostgreSQL, each within `timeoutMs`.
 * The detail of a failure is logged once when a check starts failing (warn, with the driver's error and, for
 * Redis, its last connection error) and once when it passes again (info, with how long it failed) — not on every
 * probe, so a load balancer probing every second does not flood the log.
 */
export class ReadinessChecks {
  private readonly failingSince = new Map<ReadinessCheckName, number>();
  private lastRedisError: Error | undefined;
  private readonly rememberRedisError = (error: Error): void => {
    this.lastRedisError = error;
  };
  private readonly forgetRedisError = (): void => {
    this.lastRedisError = undefined;
  };

  constructor(
    private readonly windfall: Windfall,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
  ) {
    // a command waits across reconnects, so a refused connection shows up as a timeout: keep the reason for the log
    windfall.redis.on('error', this.rememberRedisError);
    windfall.redis.on('ready', this.forgetRedisError);
  }

  /** Runs both checks at once. */
  async check(): Promise<Readiness> {
    const [redis, postgres] = await Promise.all([
      this.probe('redis', () => this.windfall.redis.ping()),
      this.probe('postgres', () => this.windfall.database.pool.query('select 1')),
    ]);
    return { ready: redis.ok && postgres.ok, checks: { redis, postgres } };
  }

  /** Stops listening to the Redis connection. */
  close(): void {
    this.windfall.redis.off('error', this.rememberRedisError);
    this.windfall.redis.off('ready', this.forgetRedisError);
  }

  private async probe(name: ReadinessCheckName, check: () => Promise<unknown>): Promise<ReadinessCheck> {
    const started = performance.now();
    try {
      await withTimeout(check(), this.timeoutMs);
    } catch (error) {
      const ms = Math.round(performance.now() - started);
      this.failed(name, error);
      return { ok: false, ms, error: PUBLIC_FAILURE[name] };
    }
    this.passed(name);
    return { ok: true, ms: Math.round(performance.now() - started) };
  }

  private failed(name: ReadinessCheckName, error: unknown): void {
    if (this.failingSince.has(name)) return;
    this.failingSince.set(name, Date.now());
    const connectionError = name === 'redis' && this.lastRedisError ? { connectionError: this.lastRedisError } : {};
    this.logger.warn(
      { check: name, err: error, ...connectionError },
      `readiness check failed: ${PUBLIC_FAILURE[name]}; /readyz answers 503 until it passes (logged once)`,
    );
  }

  private passed(name: ReadinessCheckName): void {
    const since = this.failingSince.get(name);
    if (since === undefined) return;
    this.failingSince.delete(name);
    this.logger.info(
      { check: name, failedForMs: Date.now() - since },
      `readiness check passes again: ${name === 'redis' ? 'Redis' : 'PostgreSQL'} answers`,
    );
  }
}
