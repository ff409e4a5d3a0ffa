import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type pg from 'pg';
import { withTimeout } from '../concurrency/with-timeout.js';
import { DEFAULT_CONFIG } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import { eventsQueueName } from '../queue/queue-names.js';
import type { RedisClient } from '../services/redis-connection.js';
import { renderEventBody } from './batch-event.js';
import {
  DEFAULT_DELIVERY_BACKOFF,
  deliveryExpired,
  nextAttemptDelayMs,
  type DeliveryBackoff,
} from './delivery-backoff.js';
import type { EventJobData, EventPublisher } from './event-publisher.js';
import { markDelivered, recordFailedAttempt, startAttempt } from './event-store.js';
import { DEFAULT_DELIVERY_TIMEOUT_MS, postEvent } from './post-event.js';

/** Deliveries in flight at once per process unless told otherwise (not a setting: deliveries are light). */
const DEFAULT_DELIVERY_CONCURRENCY = 4;

/** Options of {@link EventDeliveryWorker}. */
export interface EventDeliveryOptions {
  readonly pool: pg.Pool;
  /** BullMQ opens its blocking connection from it. */
  readonly redis: RedisClient;
  readonly prefix: string;
  readonly cluster?: boolean;
  /** WINDFALL_WEBHOOK_URL. */
  readonly url: string;
  /** WINDFALL_WEBHOOK_SECRET. */
  readonly secret: string;
  /** Deliveries in flight at once in this process. Default 4. */
  readonly concurrency?: number;
  /** Longest attempt, connection to the answer's last byte. Default 10000. */
  readonly timeoutMs?: number;
  /** Retry schedule and the 24 h limit. Default {@link DEFAULT_DELIVERY_BACKOFF}. */
  readonly backoff?: DeliveryBackoff;
  /** BullMQ job lock: a dead worker's delivery is taken over after about this long. Default 30000 (`WINDFALL_JOB_LOCK_MS`'s). */
  readonly jobLockMs?: number;
  /** Times a delivery may be taken over from a dead worker before BullMQ fails it (the watchdog then re-adds it). Default 1000 (`WINDFALL_MAX_STALLED`'s). */
  readonly maxStalledCount?: number;
  /** Re-adds the jobs of pending events when the worker starts. */
  readonly publisher?: Pick<EventPublisher, 'resumePending'>;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics;
}

/** What a delivery job did. */
export type DeliveryResult =
  | { readonly outcome: 'delivered'; readonly attempt: number; readonly status: number }
  | { readonly outcome: 'skipped' };

/**
 * Delivers batch events: consumes the events queue (`<prefix>:events`), POSTs each event, signed at send time, to
 * the webhook URL, and records the outcome on its row. A 2xx marks it `delivered`. Any other outcome records the
 * error and fails the attempt, which BullMQ retries after {@link nextAttemptDelayMs}; an attempt failing once the
 * event is 24 h old marks it `failed` and ends its job. An attempt is counted before its request goes out, so a
 * worker killed mid-request leaves a counted attempt, and its job is taken over by another worker once the job lock
 * expires: delivery is at least once, and receivers dedupe on the event id.
 */
export class EventDeliveryWorker {
  private worker: Worker<EventJobData, DeliveryResult> | undefined;
  private closing: Promise<void> | undefined;
  private readonly backoff: DeliveryBackoff;
  /** Deliveries in flight in this process. */
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly options: EventDeliveryOptions) {
    this.backoff = options.backoff ?? DEFAULT_DELIVERY_BACKOFF;
  }

  /** Starts consuming, after re-adding the jobs of pending events that lost theirs. Resolves once connected. */
  async start(): Promise<void> {
    if (this.worker) return;
    const lockMs = this.options.jobLockMs ?? DEFAULT_CONFIG.jobLockMs;
    const worker = new Worker<EventJobData, DeliveryResult>(
      eventsQueueName(this.options.cluster ?? DEFAULT_CONFIG.redisCluster),
      (job) => this.track(this.deliver(job)),
      {
        connection: this.options.redis,
        prefix: this.options.prefix,
        concurrency: this.options.concurrency ?? DEFAULT_DELIVERY_CONCURRENCY,
        maxStalledCount: this.options.maxStalledCount ?? DEFAULT_CONFIG.maxStalledCount,
        lockDuration: lockMs,
        stalledInterval: lockMs,
        autorun: false,
        settings: {
          backoffStrategy: (attemptsMade: number, _type?: string, _error?: Error, job?: { data: EventJobData }) =>
            nextAttemptDelayMs(
              attemptsMade,
              job ? Date.parse(job.data.createdAt) : Date.now(),
              Date.now(),
              this.backoff,
            ),
        },
      },
    );
    worker.on('error', (error) => this.options.logger.warn({ err: error }, 'event delivery worker error'));
    this.worker = worker;
    worker
      .run()
      .catch((error: unknown) =>
        this.options.logger.error({ err: error }, 'event delivery worker stopped with an error'),
      );
    await worker.waitUntilReady();
    await this.options.publisher?.resumePending().catch((error: unknown) => {
      this.options.logger.warn(
        { err: error },
        'could not re-add the delivery jobs of pending batch events; the recovery watchdog tries again',
      );
    });
    this.options.logger.info(
      {
        receiver: new URL(this.options.url).origin,
        concurrency: this.options.concurrency ?? DEFAULT_DELIVERY_CONCURRENCY,
      },
      'event delivery started',
    );
  }

  private track<T>(delivery: Promise<T>): Promise<T> {
    this.running.add(delivery);
    const forget = (): void => {
      this.running.delete(delivery);
    };
    delivery.then(forget, forget);
    return delivery;
  }

  private async deliver(job: Job<EventJobData>): Promise<DeliveryResult> {
    const { pool, logger, metrics } = this.options;
    const event = await startAttempt(pool, job.data.eventId);
    if (!event) return { outcome: 'skipped' };
    const log = { eventId: event.id, type: event.type, batchId: event.data['batchId'], attempt: event.attempt };
    const body = renderEventBody(event);
    const outcome = await postEvent(this.options.url, this.options.secret, body, {
      eventId: event.id,
      timeoutMs: this.options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS,
    });
    if (outcome.ok) {
      await markDelivered(pool, event.id);
      metrics?.webhookDeliveries.inc({ outcome: 'delivered' });
      logger.info({ ...log, status: outcome.status }, 'batch event delivered');
      return { outcome: 'delivered', attempt: event.attempt, status: outcome.status };
    }
    const giveUp = deliveryExpired(event.createdAt.getTime(), Date.now(), this.backoff);
    await recordFailedAttempt(pool, event.id, outcome.error, giveUp);
    metrics?.webhookDeliveries.inc({ outcome: giveUp ? 'failed' : 'retry' });
    if (giveUp) {
      logger.error(
        { ...log, error: outcome.error },
        'batch event not delivered within 24 h of being recorded: given up (state failed)',
      );
      throw new UnrecoverableError(`event ${event.id} given up after ${event.attempt} attempts: ${outcome.error}`);
    }
    const delayMs = nextAttemptDelayMs(job.attemptsMade + 1, event.createdAt.getTime(), Date.now(), this.backoff);
    logger.warn(
      { ...log, error: outcome.error, retryInMs: delayMs },
      'batch event delivery failed; it will be retried',
    );
    throw new Error(`event ${event.id} attempt ${event.attempt}: ${outcome.error}`);
  }

  /**
   * Stops fetching and waits for deliveries in flight (each ends within its timeout, plus 5 s for PostgreSQL to record
   * it), then closes BullMQ without waiting for its fetch loop (a loop blocked on a reconnecting Redis never ends).
   * A delivery still running then is left: its job is taken over once its lock expires. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const worker = this.worker;
      if (!worker) return;
      await worker.pause(true).catch(() => undefined);
      const waitMs = (this.options.timeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS) + 5000;
      await withTimeout(Promise.allSettled([...this.running]), waitMs).catch(() =>
        this.options.logger.warn(
          { deliveries: this.running.size, waitedMs: waitMs },
          'event deliveries still running at shutdown; leaving them to be taken over by another worker',
        ),
      );
      await withTimeout(worker.close(true), 5000).catch(() =>
        this.options.logger.warn('event delivery worker not closed in time; leaving it'),
      );
    })();
    return this.closing;
  }
}
