/**
 * Windfall as a library: configuration, money, per-user locks, the wallet service, the producer, the worker,
 * dead letters and batch status. The CLI (`windfall`) and the process entry points in workers/ are built on it.
 */
export * from './config/index.js';
export * from './money/index.js';
export * from './lock/index.js';
export * from './db/index.js';
export * from './wallet/index.js';
export * from './batch/index.js';
export * from './metrics/index.js';
export * from './log/index.js';
export * from './concurrency/index.js';
export * from './runtime/index.js';
export * from './rewards/reward.js';
export * from './rewards/field-rules.js';
export * from './rewards/reward-sources.js';
export { RewardProducer, type EnqueueResult, type ProducerOptions } from './queue/reward-producer.js';
export { WindfallQueues, type QueueSettings } from './queue/windfall-queues.js';
export { shardOf } from './queue/shard-routing.js';
export { readQueueStats, type QueueStats } from './queue/queue-stats.js';
export { RewardWorker, type RewardWorkerOptions } from './worker/reward-worker.js';
export { DeadLetterQueue, type ReplayReport } from './dead-letters/dead-letter-queue.js';
export * from './dead-letters/dead-letter-store.js';
export * from './reconcile/index.js';
export { AUDIT_ACTIONS, listAudit, type AuditAction, type AuditFilter, type AuditRecord } from './audit/audit-trail.js';
export * from './events/index.js';
