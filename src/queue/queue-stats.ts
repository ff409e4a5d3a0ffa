import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WindfallMetrics } from '../metrics/metrics.js';
import { BATCH_PRIORITIES, lanePriorities } from './job-priority.js';
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

/** Prioritized jobs whose timestamps one call of {@link OLDEST_OF_RANKS_SCRIPT} reads (the exact reading). */
const EXACT_PAGE = 1000;

/**
 * The oldest `timestamp` of the prioritized jobs ranked `ARGV[1]` to `ARGV[2]` in `KEYS[1]` (-1 when none has one),
 * and how many jobs that was; `ARGV[3]` is the queue's key prefix. Read in Redis: a page costs the client one round
 * trip and two numbers, not one command and one string per job. (The job keys share the queue's hash tag, as
 * BullMQ's own scripts assume on Redis Cluster.)
 */
const OLDEST_OF_RANKS_SCRIPT = `
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
local oldest = -1
for _, id in ipairs(ids) do
  local t = tonumber(redis.call('HGET', ARGV[3] .. id, 'timestamp'))
  if t and (oldest < 0 or t < oldest) then oldest = t end
end
return {#ids, oldest}`;

/** Prioritized jobs a sample reads at each end of each priority lane (see {@link sampleQueueStats}). */
export const LANE_SAMPLE = 10;

/** BullMQ scores a prioritized job `priority × 2^32 + a counter of the queue` (its getPriorityScore). */
const PRIORITY_SCORE_UNIT = 2 ** 32;

type Client = Pick<Redis, 'pipeline' | 'eval'>;

async function clientOf(queue: Queue): Promise<Client> {
  // every key of a queue shares its hash tag on Redis Cluster: one pipeline serves
  return (await queue.getBackend().client) as unknown as Redis;
}

/** The oldest of the jobs' `timestamp`s (one pipeline of HGETs), or null. */
async function oldestOf(client: Client, queue: Queue, ids: Iterable<string>): Promise<number | null> {
  const pipeline = client.pipeline();
  let asked = 0;
  for (const id of ids) {
    pipeline.hget(queue.toKey(id), 'timestamp');
    asked += 1;
  }
  if (asked === 0) return null;
  let oldest: number | null = null;
  for (const [error, value] of (await pipeline.exec()) ?? []) {
    if (error || value === null) continue;
    const time = Number(value);
    if (Number.isFinite(time)) oldest = oldest === null ? time : Math.min(oldest, time);
  }
  return oldest;
}

/** Reads (into `pipeline`) the id at the old end of each first-in-first-out list: `wait`, and `paused` of older BullMQ versions. */
function readFifoHeads(pipeline: ReturnType<Client['pipeline']>, queue: Queue): void {
  // jobs are pushed on the left and taken from the right: the right end is the oldest
  pipeline.lindex(queue.toKey('wait'), -1);
  pipeline.lindex(queue.toKey('paused'), -1);
}

function idsOf(results: [Error | null, unknown][] | null): Set<string> {
  const ids = new Set<string>();
  for (const [error, value] of results ?? []) {
    if (error || value === null || value === undefined) continue;
    if (Array.isArray(value)) for (const id of value) ids.add(String(id));
    else ids.add(String(value));
  }
  return ids;
}

/**
 * When the oldest waiting job was added (ms since the epoch), exactly, or null: the old end of the wait lists, and
 * the timestamps of every prioritized job (prioritized jobs are ordered by priority, not age: a big batch's last
 * chunks wait longest), read in Redis {@link EXACT_PAGE} at a time. Linear in the queue's length (one round trip per
 * 1,000 jobs, each a few milliseconds of Redis; memory flat): for `windfall queues`.
 */
async function oldestWaitingTimestamp(queue: Queue): Promise<number | null> {
  const client = await clientOf(queue);
  const heads = client.pipeline();
  readFifoHeads(heads, queue);
  let oldest = await oldestOf(client, queue, idsOf(await heads.exec()));
  const key = queue.toKey('prioritized');
  for (let start = 0; ; start += EXACT_PAGE) {
    const [read, time] = (await client.eval(
      OLDEST_OF_RANKS_SCRIPT,
      1,
      key,
      start,
      start + EXACT_PAGE - 1,
      queue.toKey(''),
    )) as [number, number];
    if (time >= 0) oldest = oldest === null ? time : Math.min(oldest, time);
    if (read < EXACT_PAGE) return oldest;
  }
}

/**
 * When the oldest waiting job was added, sampled at a cost that does not grow with the queue: the old end of the wait
 * lists (exact: they are first in first out), and the first and last {@link LANE_SAMPLE} prioritized jobs of each
 * priority lane. Within a lane jobs go by turn, equal turns first in first out, and a batch's chunks share its
 * enqueue time: a lane's head holds the oldest of the lowest turns, its tail the last chunks of its biggest batch,
 * so the oldest job is almost always among them. Otherwise the answer is younger than the truth (a lower bound of
 * the age), never older. Two round trips: one pipeline of 8 reads, one of at most 6 × LANE_SAMPLE + 2 HGETs.
 */
async function sampledOldestWaitingTimestamp(queue: Queue): Promise<number | null> {
  const client = await clientOf(queue);
  const reads = client.pipeline();
  readFifoHeads(reads, queue);
  const key = queue.toKey('prioritized');
  for (const lane of BATCH_PRIORITIES) {
    const { first, last } = lanePriorities(lane);
    const min = first * PRIORITY_SCORE_UNIT;
    const max = (last + 1) * PRIORITY_SCORE_UNIT - 1;
    reads.zrangebyscore(key, min, max, 'LIMIT', 0, LANE_SAMPLE);
    reads.zrevrangebyscore(key, max, min, 'LIMIT', 0, LANE_SAMPLE);
  }
  return oldestOf(client, queue, idsOf(await reads.exec()));
}

/** Counts of one queue (one MULTI) and its oldest waiting job's age, read by `oldest`. */
async function statsOf(
  name: string,
  queue: Queue,
  oldest: (queue: Queue) => Promise<number | null>,
): Promise<QueueStats> {
  const [counts, oldestAt] = await Promise.all([
    queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'),
    oldest(queue),
  ]);
  return {
    queue: name,
    waiting: (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0),
    active: counts['active'] ?? 0,
    delayed: counts['delayed'] ?? 0,
    failed: counts['failed'] ?? 0,
    completed: counts['completed'] ?? 0,
    oldestWaitingMs: oldestAt === null ? null : Math.max(0, Date.now() - oldestAt),
  };
}

/**
 * Counts of every shard queue, the dead-letter queue and the events queue, with the exact age of each one's oldest
 * waiting job (every prioritized job's timestamp is read: linear in the queues' length). For `windfall queues`.
 */
export async function readQueueStats(queues: WindfallQueues): Promise<QueueStats[]> {
  // one queue after the other: one page of timestamps in flight at a time, whatever the number of shards
  const stats: QueueStats[] = [];
  for (const { name, queue } of queues.all()) stats.push(await statsOf(name, queue, oldestWaitingTimestamp));
  return stats;
}

/**
 * {@link readQueueStats} at a cost that does not grow with the queues' length (for `/metrics`): exact counts, and the
 * oldest waiting age sampled (see {@link sampledOldestWaitingTimestamp}). Per queue: 3 round trips, about 80 Redis
 * commands at most (a MULTI of 7 counts, 8 range reads, up to 62 HGETs).
 */
export async function sampleQueueStats(queues: WindfallQueues): Promise<QueueStats[]> {
  return Promise.all(queues.all().map(({ name, queue }) => statsOf(name, queue, sampledOldestWaitingTimestamp)));
}

/**
 * Samples queue depths ({@link sampleQueueStats}) into `windfall_queue_jobs{queue,state}` and
 * `windfall_queue_oldest_waiting_seconds{queue}`.
 */
export async function sampleQueueDepths(queues: WindfallQueues, metrics: WindfallMetrics): Promise<void> {
  for (const stats of await sampleQueueStats(queues)) {
    for (const state of ['waiting', 'active', 'delayed', 'failed', 'completed'] as const) {
      metrics.queueJobs.set({ queue: stats.queue, state }, stats[state]);
    }
    metrics.queueOldestWaiting.set({ queue: stats.queue }, (stats.oldestWaitingMs ?? 0) / 1000);
  }
}
