import { BATCH_PRIORITIES, type BatchPriority } from '../db/stored-values.js';

export { BATCH_PRIORITIES, type BatchPriority } from '../db/stored-values.js';

/** Priority values per lane: BullMQ takes 1 … 2,097,152 (lower first), three lanes of 600,000 fit. */
const LANE_WIDTH = 600_000;
const LANE_BASE: Record<BatchPriority, number> = { high: 0, normal: LANE_WIDTH, low: 2 * LANE_WIDTH };

/** True for `high`, `normal` and `low`. */
export function isBatchPriority(value: unknown): value is BatchPriority {
  return typeof value === 'string' && (BATCH_PRIORITIES as readonly string[]).includes(value);
}

/**
 * The BullMQ priority of a chunk job: its batch's lane, then its turn within the batch on its shard (`turn` 0 for the
 * batch's first chunk of that shard, 1 for the second, …). Lower runs first, equal values first in first out, so:
 *
 * - every `high` chunk runs before any `normal` one, which run before any `low` one, whatever was queued before;
 * - within a lane, batches take turns: the first chunk of a batch enqueued now runs before the 5th chunk of a big
 *   batch enqueued earlier, so a small batch waits for about one chunk per shard, not for the whole big batch.
 */
export function chunkJobPriority(lane: BatchPriority, turn: number): number {
  return LANE_BASE[lane] + Math.min(Math.max(0, Math.floor(turn)), LANE_WIDTH - 1) + 1;
}

/** The BullMQ priority of a dead-letter replay: a first turn in its batch's lane (an operator is waiting for it). */
export function replayJobPriority(lane: BatchPriority = 'normal'): number {
  return chunkJobPriority(lane, 0);
}

/** The BullMQ priorities of a lane: its first and its last. */
export function lanePriorities(lane: BatchPriority): { readonly first: number; readonly last: number } {
  return { first: LANE_BASE[lane] + 1, last: LANE_BASE[lane] + LANE_WIDTH };
}
