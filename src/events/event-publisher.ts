import type { JobsOptions } from 'bullmq';
import type pg from 'pg';
import { withTimeout } from '../concurrency/with-timeout.js';
import type { Logger } from '../log/logger.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { pendingEvents, type RecordedEvent } from './event-store.js';

/** The data of a delivery job: the event's id (the row holds the rest) and when it was recorded (for the backoff). */
export interface EventJobData {
  readonly eventId: string;
  /** ISO 8601. */
  readonly createdAt: string;
}

/** How long {@link EventPublisher.publish} waits for Redis before leaving the job to be re-added later. */
const PUBLISH_WAIT_MS = 5000;

/** The name of the custom backoff the delivery worker implements. */
export const EVENT_BACKOFF_TYPE = 'webhook';

/** Deterministic job id of an event's delivery: adding it again while its job exists is a no-op. */
export function eventJobId(eventId: string): string {
  return `e_${eventId}`;
}

/**
 * Options of a delivery job: retried with the worker's custom backoff until the event is 24 h old (the worker then
 * gives up, marking the event `failed`), so the attempt count is only a backstop; finished jobs are trimmed
 * (PostgreSQL keeps the record).
 */
export const EVENT_JOB_OPTIONS: JobsOptions = {
  attempts: 1_000_000,
  backoff: { type: EVENT_BACKOFF_TYPE },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600 },
};

/** Hands a recorded event to its delivery (implemented by {@link EventPublisher}). */
export interface EventSink {
  /** Adds the event's delivery job. Never throws: an event whose job could not be added is re-added later. */
  publish(event: RecordedEvent): Promise<void>;
}

/** Options of {@link EventPublisher}. */
export interface EventPublisherOptions {
  readonly pool: pg.Pool;
  readonly queues: WindfallQueues;
  readonly logger: Logger;
}

/**
 * Adds delivery jobs to the events queue (`<prefix>:events`) for recorded events, one job per event (job id
 * {@link eventJobId}). The event row is written first, with the batch status that calls for it; its job is added
 * after. A process that dies in between, or a Redis that loses the job, leaves the event `pending` without a job:
 * {@link EventPublisher.resumePending} (run when a delivery worker starts and by the recovery watchdog) adds it again.
 */
export class EventPublisher implements EventSink {
  constructor(private readonly options: EventPublisherOptions) {}

  async publish(event: RecordedEvent): Promise<void> {
    try {
      // a Redis that does not answer must not hold the job that completed the batch (the add may still land later)
      await withTimeout(this.add(event), PUBLISH_WAIT_MS);
    } catch (error) {
      this.options.logger.warn(
        { err: error, eventId: event.id },
        'could not add the delivery job of a batch event; it stays pending and is re-added when a worker starts or the recovery watchdog scans',
      );
    }
  }

  private async add(event: RecordedEvent): Promise<void> {
    const data: EventJobData = { eventId: event.id, createdAt: event.createdAt.toISOString() };
    await this.options.queues.events().add('deliver', data, { ...EVENT_JOB_OPTIONS, jobId: eventJobId(event.id) });
  }

  /**
   * Adds the delivery job of every pending event that has none in Redis, or whose job has finished (completed, or
   * failed by BullMQ) while the event is still pending. Returns how many were added. Idempotent: a job that exists
   * (waiting, delayed, active) is left alone.
   */
  async resumePending(): Promise<number> {
    const queue = this.options.queues.events();
    let added = 0;
    for (const event of await pendingEvents(this.options.pool)) {
      const job = await queue.getJob(eventJobId(event.id));
      if (job) {
        const state = await job.getState();
        if (state !== 'completed' && state !== 'failed') continue;
        await job.remove();
      }
      await this.add(event);
      added += 1;
    }
    if (added > 0) this.options.logger.info({ events: added }, 'delivery jobs of pending batch events re-added');
    return added;
  }
}
