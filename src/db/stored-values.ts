/**
 * The closed sets of values that columns hold, named by the contract (the types in schema.ts use them).
 */

/** The dead-letter reasons of the contract (the values `dead_letters.reason` holds). */
export const DEAD_LETTER_REASONS = [
  'LOCK_BUSY',
  'CONFLICT',
  'INVALID',
  'DB_ERROR',
  'INSUFFICIENT_FUNDS',
  'UNKNOWN',
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

/** Where a dead-letter entry stands (`dead_letters.state`): waiting, replayed, or taken out of the queue. */
export const DEAD_LETTER_STATES = ['open', 'replayed', 'purged'] as const;
export type DeadLetterState = (typeof DEAD_LETTER_STATES)[number];

/** The batch statuses of the contract (the values `reward_batches.status` holds), in the order a batch passes them. */
export const BATCH_STATUSES = [
  'pending',
  'processing',
  'completed',
  'completed_with_failures',
  'cancelled',
  'reverted',
  'partially_reverted',
] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** The lanes a batch may ask for (CONTRACT: `enqueue --priority`, `priority` in `POST /v1/batches`). */
export const BATCH_PRIORITIES = ['high', 'normal', 'low'] as const;
export type BatchPriority = (typeof BATCH_PRIORITIES)[number];

/** The operator actions the trail records (CONTRACT: `windfall audit`; `audit_log.action`). */
export const AUDIT_ACTIONS = [
  'lock.force_release',
  'dlq.replay',
  'dlq.purge',
  'batch.revert',
  'batch.cancel',
  'campaign.budget',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/**
 * The event types (CONTRACT, Events): a batch settled (`completed` or `completed_with_failures`), reverted, or
 * cancelled.
 */
export const BATCH_EVENT_TYPES = ['batch.completed', 'batch.reverted', 'batch.cancelled'] as const;
export type BatchEventType = (typeof BATCH_EVENT_TYPES)[number];

/** Delivery states of an event: waiting for a 2xx, answered with one, given up on (24 h after it was created). */
export const BATCH_EVENT_STATES = ['pending', 'delivered', 'failed'] as const;
export type BatchEventState = (typeof BATCH_EVENT_STATES)[number];
