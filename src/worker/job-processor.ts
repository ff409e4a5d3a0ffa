import { DelayedError, type Job } from 'bullmq';
import type pg from 'pg';
import type { Semaphore } from '../concurrency/semaphore.js';
import { refreshStoredStatus } from '../batch/batch-status.js';
import type { DeadLetterReason } from '../db/schema.js';
import type { DeadLetterEntry, NewDeadLetter } from '../dead-letters/dead-letter-store.js';
import { chunkSource, recordDeadLetters, replaySource } from '../dead-letters/dead-letter-store.js';
import type { Logger } from '../log/logger.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { UserLocks } from '../lock/user-locks.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { RewardJobData } from '../queue/job-data.js';
import type { Reward } from '../rewards/reward.js';
import type { JobWork } from './chunk-work.js';
import { loadChunkWork, loadReplayWork } from './chunk-work.js';
import type { SettleSummary } from './settle-users.js';
import { settleUsers } from './settle-users.js';
import { pipelineOf } from './user-pipeline.js';
import { withDatabaseRetry } from './database-retry.js';

/** A job attempt left users that may succeed later: BullMQ retries the job (only those users remain to do). */
export class UsersRetryLaterError extends Error {
  override readonly name = 'UsersRetryLaterError';
}

/** What the processor needs. */
export interface ProcessorContext {
  readonly pool: pg.Pool;
  readonly locks: UserLocks;
  readonly policy: LockPolicy;
  readonly limiter: Semaphore;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /** Aborted when the worker must stop: lock waits end, unstarted users are put back. */
  readonly signal: AbortSignal;
  /** Called with entries written to the dead-letter table, to mirror them into the dead-letter queue. */
  readonly onDeadLetters?: (entries: readonly DeadLetterEntry[]) => Promise<void>;
}

/** Counts of one processed job, for logs and tests. */
export interface JobResult {
  readonly users: number;
  readonly applied: number;
  readonly alreadyApplied: number;
  readonly duplicates: number;
  readonly deadLettered: number;
}

function deadLetter(
  work: JobWork,
  job: { data: RewardJobData; attempts: number },
  uid: string,
  rewards: readonly Reward[],
  reason: DeadLetterReason,
  error: string,
): NewDeadLetter {
  const { data } = job;
  return {
    source:
      data.kind === 'chunk'
        ? chunkSource(data.batchId, data.chunkNo, uid, reason, rewards.map((reward) => reward.rewardId))
        : replaySource(data.deadLetterId, reason, rewards.map((reward) => reward.rewardId)),
    batchId: work.batchId,
    chunkNo: data.kind === 'chunk' ? data.chunkNo : null,
    replayOf: data.kind === 'replay' ? data.deadLetterId : null,
    uid,
    shard: work.shard,
    rewards,
    reason,
    error,
    attempts: job.attempts,
  };
}

/** Merges conflict findings of the same user (found before and during the transaction) into one entry. */
function conflictsByUser(summary: SettleSummary): Map<string, { rewards: Reward[]; details: string[] }> {
  const merged = new Map<string, { rewards: Reward[]; details: string[] }>();
  for (const conflict of summary.conflicts) {
    const entry = merged.get(conflict.uid) ?? { rewards: [], details: [] };
    entry.rewards.push(...conflict.rewards);
    entry.details.push(conflict.detail);
    merged.set(conflict.uid, entry);
  }
  return merged;
}

/**
 * Processes one shard job (a chunk, or the replay of a dead-letter entry):
 * load the rewards with what the ledger already holds → settle each user under its lock → record duplicates and
 * permanent failures → retry the job for transient failures, or dead-letter them after the last attempt →
 * mark the chunk complete. Every step is idempotent, so a job that runs twice (stall, crash, retry) changes nothing.
 */
export async function processRewardJob(context: ProcessorContext, job: Job<RewardJobData>, token: string | undefined): Promise<JobResult> {
  const data = job.data;
  const maxAttempts = job.opts.attempts ?? 1;
  const attempt = job.attemptsMade + 1;
  const finalAttempt = attempt >= maxAttempts;
  const log = context.logger.child({ jobId: job.id, batchId: data.batchId, ...(data.kind === 'chunk' ? { chunkNo: data.chunkNo } : { deadLetterId: data.deadLetterId }), shard: data.shard, attempt });
  const started = performance.now();

  // load only when the process's line of users is short, one job at a time: memory stays bounded whatever the jobs
  // in flight
  const loaded = await pipelineOf(context.limiter).admission(context.signal);
  let work: JobWork | null;
  try {
    work = await withDatabaseRetry(log, context.signal, () =>
      data.kind === 'chunk'
        ? // a first run skips the ledger lookup (the user statement reports known ids itself); a re-run uses it to
          // leave users whose rewards are all applied unlocked
          loadChunkWork(context.pool, data.batchId, data.chunkNo, { ledger: job.attemptsMade > 0 || (job.stalledCounter ?? 0) > 0 })
        : loadReplayWork(context.pool, data.deadLetterId),
    );
  } catch (error) {
    loaded();
    throw error;
  }
  if (!work) {
    loaded();
    log.warn('job points at a chunk or dead-letter entry that is not recorded; nothing to do');
    return { users: 0, applied: 0, alreadyApplied: 0, duplicates: 0, deadLettered: 0 };
  }

  const settling = settleUsers({ db: context.pool, locks: context.locks, logger: log, metrics: context.metrics }, work.users, {
    batchId: work.batchId,
    policy: context.policy,
    limiter: context.limiter,
    signal: context.signal,
  });
  loaded(); // the job's users are in line now
  const summary = await settling;

  const jobInfo = { data, attempts: attempt };
  const deadLetters: NewDeadLetter[] = [];
  for (const [uid, conflict] of conflictsByUser(summary)) {
    deadLetters.push(
      deadLetter(work, jobInfo, uid, conflict.rewards, 'CONFLICT', `rewardId already used with a different user or amount: ${conflict.details.join('; ')}`),
    );
  }
  for (const failed of summary.permanent) {
    deadLetters.push(deadLetter(work, jobInfo, failed.uid, failed.rewards, failed.failure.reason, failed.failure.message));
  }
  const retryLater = summary.transient.length > 0 && !finalAttempt;
  if (!retryLater) {
    for (const failed of summary.transient) {
      deadLetters.push(
        deadLetter(work, jobInfo, failed.uid, failed.rewards, failed.failure.reason, `${failed.failure.message} (after ${attempt} attempt${attempt === 1 ? '' : 's'})`),
      );
    }
  }

  const written = await withDatabaseRetry(log, context.signal, async () => {
    if (summary.duplicates.length > 0) {
      await context.pool.query(
        'insert into reward_duplicates (batch_id, reward_id) select $1, unnest($2::text[]) on conflict do nothing',
        [work.batchId, summary.duplicates],
      );
    }
    return recordDeadLetters(context.pool, deadLetters);
  });

  const deadLetteredRewards = written.reduce((sum, entry) => sum + entry.rewards.length, 0);
  context.metrics?.rewards.inc({ outcome: 'applied' }, summary.applied);
  context.metrics?.rewards.inc({ outcome: 'duplicate' }, summary.duplicates.length);
  if (deadLetteredRewards > 0) context.metrics?.rewards.inc({ outcome: 'dead_lettered' }, deadLetteredRewards);
  for (const entry of written) context.metrics?.deadLetters.inc({ reason: entry.reason });
  if (written.length > 0) {
    for (const entry of written) {
      log.warn({ uid: entry.uid, reason: entry.reason, rewards: entry.rewards.length, deadLetterId: entry.id, error: entry.error }, 'rewards dead-lettered');
    }
    await context.onDeadLetters?.(written).catch((error: unknown) => {
      log.warn({ err: error }, 'could not mirror dead-letter entries into the dead-letter queue; they are recorded in PostgreSQL');
    });
  }

  if (summary.interrupted.length > 0) {
    // The worker is stopping: put the job back without counting an attempt; finished users are skipped next time.
    log.info({ users: summary.interrupted.length }, 'worker stopping: job put back for its remaining users');
    await job.moveToDelayed(Date.now() + 1000, token);
    throw new DelayedError();
  }
  if (retryLater) {
    const users = summary.transient.map((failed) => `${failed.uid} (${failed.failure.reason}: ${failed.failure.message})`);
    log.warn({ users: summary.transient.length, attempt, maxAttempts }, 'users failed for now; the job will be retried for them');
    throw new UsersRetryLaterError(`${summary.transient.length} user(s) failed transiently on attempt ${attempt} of ${maxAttempts}: ${users.slice(0, 5).join('; ')}`);
  }

  await withDatabaseRetry(log, context.signal, async () => {
    if (data.kind === 'chunk') {
      await context.pool.query('update reward_chunks set completed_at = now() where batch_id = $1 and chunk_no = $2 and completed_at is null', [
        data.batchId,
        data.chunkNo,
      ]);
    }
    await refreshStoredStatus(context.pool, work.batchId);
  });

  const result: JobResult = {
    users: work.users.length,
    applied: summary.applied,
    alreadyApplied: summary.alreadyApplied,
    duplicates: summary.duplicates.length,
    deadLettered: deadLetteredRewards,
  };
  log.debug({ ...result, ms: Math.round(performance.now() - started) }, 'job done');
  return result;
}
