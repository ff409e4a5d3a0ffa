/**
 * Windfall as a library: what an application that credits, enqueues, inspects or receives needs, and nothing of
 * the machinery behind it (SQL, queues, the worker's stages). `openWindfall` wires everything from a configuration;
 * the CLI (`windfall`) and the process entry points in workers/ are built on the same objects.
 *
 * Kept deliberately small: `test/unit/public-api.test.ts` lists every name, so that a new export is a decision.
 */

// Opening Windfall: configuration, logging, the object that owns connections, queues and workers
export { openWindfall, Windfall, type OpenOptions } from './runtime/windfall.js';
export { ServiceUnavailableError } from './services/service-check.js';
// every error below is a WindfallError with a stable code (docs/errors.md)
export { WindfallError } from './errors/windfall-error.js';
export type { ErrorCode } from './errors/error-table.js';
export { loadConfig, DEFAULT_CONFIG, type WindfallConfig } from './config/config.js';
export { ConfigError } from './config/config-error.js';
export { createLogger, silentLogger, LOG_LEVELS, type Logger, type LogLevel } from './log/logger.js';
export { migrateToLatest } from './db/migrate.js';

// Wallets: the seed's operations, each user's in one transaction under the user's lock
export {
  WalletService,
  type WalletServiceOptions,
  type CallOptions,
  type SingleOperationOptions,
  type SingleOperationResult,
  type BalanceOperation,
  type RewardInput,
  type UserReport,
  type BatchCallReport,
  type LedgerEntryView,
} from './wallet/wallet-service.js';
export { InsufficientFundsError, OperationConflictError, InvalidOperationError } from './wallet/wallet-errors.js';
export { LockBusyError, LockTimeoutError } from './lock/lock-errors.js';
export { DEFAULT_POLICY, BATCH_POLICY, REWARD_POLICY, totalWaitMs, type LockPolicy } from './lock/lock-policy.js';
export type { LockStatus } from './lock/user-locks.js';
export { parseAmount, formatAmount, MAX_REWARD_AMOUNT } from './money/amount.js';

// Batches: enqueueing, their status, reverting them
export {
  RewardProducer,
  type EnqueueOptions,
  type EnqueueResult,
  type ProducerOptions,
} from './producer/reward-producer.js';
export {
  readRewardFile,
  recordsFromArray,
  CsvHeaderError,
  type RewardFileFormat,
  type SourceRecord,
} from './rewards/reward-sources.js';
export type { Reward, RowError } from './rewards/reward.js';
export { BatchValidationError, BatchConflictError } from './rewards/batch-errors.js';
export { getBatchReport, type BatchReport } from './status/batch-status.js';
export {
  revertBatch,
  BatchRevertRefusedError,
  UnknownBatchError,
  RevertRequestError,
  type RevertReport,
  type RevertOptions,
} from './revert/batch-revert.js';
export type { BatchStatus, BatchPriority, DeadLetterReason, DeadLetterState } from './db/schema.js';

// Campaign budgets
export {
  setCampaignBudget,
  getCampaignReport,
  CampaignRequestError,
  UnknownCampaignError,
  type CampaignReport,
} from './campaign/campaign-budget.js';
export { BudgetExceededError } from './staging/budget-reservation.js';

// Operating: dead letters, the books, the audit trail, queues
export {
  DeadLetterService,
  type ReplayReport,
  type PurgeReport,
  type ReplayedEntry,
  type SkippedEntry,
} from './dead-letters/dead-letter-service.js';
import { DeadLetterService } from './dead-letters/dead-letter-service.js';
/** @deprecated The former name of {@link DeadLetterService} (it is a service over a table, not a queue); kept until 1.0. */
export const DeadLetterQueue = DeadLetterService;
/** @deprecated The former name of {@link DeadLetterService}; kept until 1.0. */
export type DeadLetterQueue = DeadLetterService;
export { DEAD_LETTER_REASONS } from './db/stored-values.js';
export type { DeadLetterEntry, DeadLetterFilter, ListedDeadLetter } from './dead-letters/dead-letter-store.js';
export { reconcile, type ReconcileReport, type ReconcileOptions, type Mismatch } from './reconcile/reconcile.js';
export { listAudit, type AuditRecord, type AuditFilter } from './audit/audit-trail.js';
export { AUDIT_ACTIONS, type AuditAction } from './db/stored-values.js';
export { readQueueStats, type QueueStats } from './queue/queue-stats.js';

// Batch events, for receivers
export {
  verifySignature,
  SIGNATURE_HEADER,
  DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
  type SignatureCheck,
} from './events/event-signature.js';
export { listEvents, type EventDelivery, type EventFilter } from './events/event-store.js';
export type { BatchEventBody, BatchEventData } from './events/batch-event.js';
export type { BatchEventType, BatchEventState } from './db/stored-values.js';
