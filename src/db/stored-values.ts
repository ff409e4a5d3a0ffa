import type { BatchStatus, DeadLetterReason } from './schema.js';

/**
 * The closed sets of values that columns hold, named by the contract (the types in schema.ts use them).
 */

/** The dead-letter reasons of the contract (the values `dead_letters.reason` holds). */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  'LOCK_BUSY',
  'CONFLICT',
  'INVALID',
  'DB_ERROR',
  'INSUFFICIENT_FUNDS',
  'UNKNOWN',
];

/** The batch statuses of the contract (the values `reward_batches.status` holds), in the order a batch passes them. */
export const BATCH_STATUSES: readonly BatchStatus[] = [
  'pending',
  'processing',
  'completed',
  'completed_with_failures',
  'reverted',
  'partially_reverted',
];

/** The operator actions the trail records (CONTRACT: `windfall audit`; `audit_log.action`). */
export const AUDIT_ACTIONS = [
  'lock.force_release',
  'dlq.replay',
  'dlq.purge',
  'batch.revert',
  'campaign.budget',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** The event types (CONTRACT, Events): a batch settled (`completed` or `completed_with_failures`), a batch reverted. */
export const BATCH_EVENT_TYPES = ['batch.completed', 'batch.reverted'] as const;
export type BatchEventType = (typeof BATCH_EVENT_TYPES)[number];

/** Delivery states of an event: waiting for a 2xx, answered with one, given up on (24 h after it was created). */
export const BATCH_EVENT_STATES = ['pending', 'delivered', 'failed'] as const;
export type BatchEventState = (typeof BATCH_EVENT_STATES)[number];
