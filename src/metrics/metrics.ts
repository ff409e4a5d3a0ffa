import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DEAD_LETTER_REASONS } from '../db/stored-values.js';

/** Outcomes of a lock acquisition, the `outcome` label of `windfall_lock_acquire_total`. */
export type LockOutcome = 'acquired' | 'busy' | 'timeout' | 'error';
/** Outcomes of a reward, the `outcome` label of `windfall_rewards_total`. */
export type RewardOutcome = 'applied' | 'duplicate' | 'dead_lettered';

/** Outcomes of a webhook delivery attempt, the `outcome` label of `windfall_webhook_deliveries_total`. */
export type WebhookOutcome = 'delivered' | 'retry' | 'failed';
const WEBHOOK_OUTCOMES: readonly WebhookOutcome[] = ['delivered', 'retry', 'failed'];

/** Label values every process exports from the start (at 0), so that `rate()` and alerts see a series before the first event. */
const KNOWN_POLICIES = ['default', 'batch', 'reward'] as const;
const LOCK_OUTCOMES: readonly LockOutcome[] = ['acquired', 'busy', 'timeout', 'error'];
const REWARD_OUTCOMES: readonly RewardOutcome[] = ['applied', 'duplicate', 'dead_lettered'];

/**
 * The Prometheus metrics of one Windfall process (names fixed by the contract), in a registry of its own so
 * that tests and several in-process services do not collide.
 */
export class WindfallMetrics {
  readonly registry = new Registry();

  readonly lockAcquire = new Counter({
    name: 'windfall_lock_acquire_total',
    help: 'Per-user lock acquisitions by policy and outcome (acquired, busy = retries ran out, timeout = caller deadline/abort, error).',
    labelNames: ['policy', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly lockRetries = new Histogram({
    name: 'windfall_lock_retries',
    help: 'Retries a lock acquisition needed before it ended (0 = taken at the first attempt).',
    labelNames: ['policy'] as const,
    buckets: [0, 1, 2, 3, 5, 8, 10, 15, 20],
    registers: [this.registry],
  });

  readonly lockWait = new Histogram({
    name: 'windfall_lock_wait_seconds',
    help: 'Time from asking for a per-user lock to getting it or giving up.',
    labelNames: ['policy'] as const,
    buckets: [0.001, 0.005, 0.05, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly lockHold = new Histogram({
    name: 'windfall_lock_hold_seconds',
    help: 'Time a per-user lock was held, from acquisition to release.',
    labelNames: ['policy'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60],
    registers: [this.registry],
  });

  readonly rewards = new Counter({
    name: 'windfall_rewards_total',
    help: 'Rewards settled by outcome: applied, duplicate (already applied before), dead_lettered.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'windfall_dead_letter_total',
    help: 'Dead-letter entries written (one per user and reason), by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly userTransaction = new Histogram({
    name: 'windfall_user_tx_seconds',
    help: "Duration of one PostgreSQL transaction settling users (each user's rewards of a job all inside it; see windfall_users_per_transaction).",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  readonly usersPerTransaction = new Histogram({
    name: 'windfall_users_per_transaction',
    help: 'Users settled by one PostgreSQL transaction of the worker (group commit; at most WINDFALL_USERS_PER_TRANSACTION).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  readonly workerPaused = new Gauge({
    name: 'windfall_worker_paused',
    help: '1 while a worker pauses its use of a service that cannot work (Redis full or read-only, PostgreSQL read-only or refusing connections, either unreachable), else 0.',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: 'windfall_queue_jobs',
    help: 'Jobs per queue (shard queues, dead-letter queue, events) and state, read from Redis at most every 5 s.',
    labelNames: ['queue', 'state'] as const,
    registers: [this.registry],
  });

  readonly queueOldestWaiting = new Gauge({
    name: 'windfall_queue_oldest_waiting_seconds',
    help: 'Age of the oldest waiting job per queue (0 when none waits), read from Redis at most every 5 s: exact for first-in-first-out jobs, sampled at both ends of each priority lane for prioritized ones (never older than the truth). The dead-letter queue has no worker: its jobs wait until replayed or purged.',
    labelNames: ['queue'] as const,
    registers: [this.registry],
  });

  readonly deadLettersOpen = new Gauge({
    name: 'windfall_dead_letters_open',
    help: 'Open dead-letter entries in PostgreSQL (the durable record), by reason; read by `windfall serve` at most every 5 s.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly deadLetterRewardsOpen = new Gauge({
    name: 'windfall_dead_letter_rewards_open',
    help: 'Rewards inside open dead-letter entries, by reason; read by `windfall serve` at most every 5 s.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly httpRequests = new Counter({
    name: 'windfall_http_requests_total',
    help: 'HTTP requests answered by `windfall serve`, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'windfall_http_request_seconds',
    help: 'Time to answer an HTTP request of `windfall serve`, by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: 'windfall_webhook_deliveries_total',
    help: 'Batch event delivery attempts by outcome: delivered (a 2xx), retry (failed, tried again later), failed (failed when the event was 24 h old: given up).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  constructor(options: { readonly defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? false)
      collectDefaultMetrics({ register: this.registry, prefix: 'windfall_process_' });
    for (const policy of KNOWN_POLICIES) {
      for (const outcome of LOCK_OUTCOMES) this.lockAcquire.inc({ policy, outcome }, 0);
      this.lockRetries.zero({ policy });
      this.lockWait.zero({ policy });
      this.lockHold.zero({ policy });
    }
    for (const outcome of REWARD_OUTCOMES) this.rewards.inc({ outcome }, 0);
    for (const reason of DEAD_LETTER_REASONS) this.deadLetters.inc({ reason }, 0);
    for (const outcome of WEBHOOK_OUTCOMES) this.webhookDeliveries.inc({ outcome }, 0);
  }
}
