import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { WindfallQueues } from './windfall-queues.js';

/** Job counts of one queue, and how long its oldest waiting job has waited. */
export interface QueueStats {
  readonly queue: string;
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  readonly failed: number;
  readonly completed: number;
  /** Milliseconds since the oldest waiting job was added; null when none waits. */
  readonly oldestWaitingMs: number | null;
}

/** Most prioritized jobs whose age is read per queue (a timestamp per job, in one round trip). */
const MAX_PRIORITIZED_AGES = 20_000;

/**
 * When the oldest waiting job was added (ms since the epoch), or null. The wait list is first in first out (its
 * oldest is at one end); prioritized jobs are ordered by priority, not age (a big batch's last chunks wait longest),
 * so the timestamps of all of them (up to {@link MAX_PRIORITIZED_AGES}) are read.
 */
async function oldestWaitingTimestamp(queue: Queue): Promise<number | null> {
  const [fifo, prioritized] = await Promise.all([
    queue.getJobs(['wait'], 0, 0, true),
    queue.getRanges(['prioritized'], 0, MAX_PRIORITIZED_AGES - 1, true),
  ]);
  const times = fifo.filter(Boolean).map((job) => job.timestamp);
  if (prioritized.length > 0) {
    // every key of a queue shares its hash tag on Redis Cluster: one pipeline serves
    const client = (await queue.getBackend().client) as unknown as Redis;
    const pipeline = client.pipeline();
    for (const id of prioritized) pipeline.hget(queue.toKey(id), 'timestamp');
    for (const [error, value] of (await pipeline.exec()) ?? []) if (!error && value !== null) times.push(Number(value));
  }
  return times.length === 0 ? null : times.reduce((oldest, time) => Math.min(oldest, time));
}

/** Counts of every shard queue, the dead-letter queue and the events queue. */
export async function readQueueStats(queues: WindfallQueues): Promise<QueueStats[]> {
  const now = Date.now();
  return Promise.all(
    queues.all().map(async ({ name, queue }) => {
      const counts = await queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed');
      const oldest = await oldestWaitingTimestamp(queue);
      return {
        queue: name,
        waiting: (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0),
        active: counts['active'] ?? 0,
        delayed: counts['delayed'] ?? 0,
        failed: counts['failed'] ?? 0,
        completed: counts['completed'] ?? 0,
        oldestWaitingMs: oldest === null ? null : Math.max(0, now - oldest),
      };
    }),
  );
}

/** Samples queue depths into `windfall_queue_jobs{queue,state}` and `windfall_queue_oldest_waiting_seconds{queue}`. */
export async function sampleQueueDepths(queues: WindfallQueues, metrics: WindfallMetrics): Promise<void> {
  for (const stats of await readQueueStats(queues)) {
    for (const state of ['waiting', 'active', 'delayed', 'failed', 'completed'] as const) {
      metrics.queueJobs.set({ queue: stats.queue, state }, stats[state]);
    }
    metrics.queueOldestWaiting.set({ queue: stats.queue }, (stats.oldestWaitingMs ?? 0) / 1000);
  }
}
