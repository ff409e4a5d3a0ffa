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

/** Counts of every shard queue and the dead-letter queue. */
export async function readQueueStats(queues: WindfallQueues): Promise<QueueStats[]> {
  const now = Date.now();
  return Promise.all(
    queues.all().map(async ({ name, queue }) => {
      const counts = await queue.getJobCounts('waiting', 'paused', 'prioritized', 'active', 'delayed', 'failed', 'completed');
      // asc = true lists the oldest first; with several states each contributes its oldest.
      const candidates = await queue.getJobs(['wait', 'paused', 'prioritized'], 0, 0, true);
      const oldest = candidates.filter(Boolean).sort((a, b) => a.timestamp - b.timestamp)[0];
      return {
        queue: name,
        waiting: (counts['waiting'] ?? 0) + (counts['paused'] ?? 0) + (counts['prioritized'] ?? 0),
        active: counts['active'] ?? 0,
        delayed: counts['delayed'] ?? 0,
        failed: counts['failed'] ?? 0,
        completed: counts['completed'] ?? 0,
        oldestWaitingMs: oldest ? Math.max(0, now - oldest.timestamp) : null,
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
