import { DelayedError, type Job } from 'bullmq';
import type pg from 'pg';
import { refreshStoredStatus } from '../status/batch-status.js';
import type { EventSink } from '../events/event-publisher.js';
import type { DeadLetterEntry } from '../dead-letters/dead-letter-store.js';
import { claimChunk, claimEntry, FencedOutError } from '../db/fences.js';
import { isLockTimeout } from '../db/pg-errors.js';
import type { ChunkDeadLetter, ReplayDeadLetter, WrittenDeadLetter } from '../dead-letters/dead-letter-writer.js';
import { recordChunkDeadLetters, recordReplayDeadLetters } from '../dead-letters/dead-letter-writer.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { RewardJobData } from '../queue/job-data.js';
import { describeConflict } from '../ledger/ledger-operation.js';
import type { Admission } from '../settlement/admission.js';
import type { JobWork } from './job-work.js';
import { loadClaimedChunk, loadReplayWork } from './job-work.js';
import type { ServiceGate } from '../services/service-gate.js';
import { databaseStep } from '../services/service-gate.js';
import type { SettlementPipeline } from '../settlement/settlement-pipeline.js';
import type { UserFailure, UserOutcome, UserTask } from '../settlement/user-task.js';

/** A job attempt left users that may succeed later: BullMQ retries the job (only those users remain to do). */
class UsersRetryLaterError extends Error {
  override readonly name = 'UsersRetryLaterError';
}

/** What the processor needs: the worker's shared parts. */
export interface ProcessorContext {
  /** Job-level steps: loading a job's users, recording dead letters, completing a chunk. */
  readonly pool: pg.Pool;
  readonly pipeline: SettlementPipeline;
  readonly admission: Admission;
  /** Paused while PostgreSQL cannot work: job-level steps wait for it instead of spending an attempt. */
  readonly postgresGate: ServiceGate;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /** Aborted when the worker must stop: lock waits end, unstarted users are put back. */
  readonly signal: AbortSignal;
  /** Called with entries written to the dead-letter table, to mirror them into the dead-letter queue. */
  readonly onDeadLetters?: (entries: readonly DeadLetterEntry[]) => Promise<void>;
  /** Webhooks configured: a job that completes its batch records the batch's event and hands it here. */
  readonly events?: EventSink;
}

/** Counts of one processed job, for logs and tests. */
export interface JobResult {
  readonly users: number;
  readonly applied: number;
  readonly alreadyApplied: number;
  readonly duplicates: number;
  readonly deadLettered: number;
}

const NOTHING: JobResult = Object.freeze({ users: 0, applied: 0, alreadyApplied: 0, duplicates: 0, deadLettered: 0 });

/** The worker stops while a job-level step waits for PostgreSQL: the job goes back to its queue, no attempt counted. */
class StoppingError extends Error {
  override readonly name = 'StoppingError';
}

/** A user's failure as its dead-letter entry says it. */
function failureText(failure: UserFailure, attempt: number): string {
  return failure.transient
    ? `${failure.message} (after ${attempt} attempt${attempt === 1 ? '' : 's'})`
    : failure.message;
}

/** What one attempt did to a job's users. */
interface AttemptSummary {
  applied: number;
  alreadyApplied: number;
  duplicates: number;
  /** Users to retry on the next attempt, with why. */
  readonly retry: { uid: string; failure: UserFailure }[];
  interrupted: number;
  /** Users whose statement found the job's fence moved on (another attempt owns the job now). */
  fenced: number;
  /** Users (or some of their rewards) to hand to the dead-letter queue now. */
  readonly deadLetters: {
    task: UserTask;
    reason: UserFailure['reason'];
    error: string;
    rewardIds: readonly string[] | null;
  }[];
}

function summarize(
  tasks: readonly UserTask[],
  outcomes: readonly UserOutcome[],
  attempt: number,
  finalAttempt: boolean,
): AttemptSummary {
  const summary: AttemptSummary = {
    applied: 0,
    alreadyApplied: 0,
    duplicates: 0,
    retry: [],
    interrupted: 0,
    fenced: 0,
    deadLetters: [],
  };
  outcomes.forEach((outcome, i) => {
    const task = tasks[i]!;
    if (outcome.kind === 'interrupted') summary.interrupted += 1;
    else if (outcome.kind === 'fenced') summary.fenced += 1;
    else if (outcome.kind === 'settled') {
      summary.applied += outcome.applied;
      summary.alreadyApplied += outcome.alreadyApplied;
      summary.duplicates += outcome.duplicates;
      if (outcome.conflicts.length > 0) {
        const details = outcome.conflicts.map(
          (conflict) => `${conflict.rewardId}: ${describeConflict(task.uid, conflict.amount, conflict.existing)}`,
        );
        summary.deadLetters.push({
          task,
          reason: 'CONFLICT',
          error: `rewardId already used with a different user or amount: ${details.join('; ')}`,
          rewardIds: outcome.conflicts.map((conflict) => conflict.rewardId),
        });
      }
    } else if (outcome.failure.transient && !finalAttempt)
      summary.retry.push({ uid: task.uid, failure: outcome.failure });
    else
      summary.deadLetters.push({
        task,
        reason: outcome.failure.reason,
        error: failureText(outcome.failure, attempt),
        rewardIds: null,
      });
  });
  return summary;
}

/**
 * Processes one shard job (a chunk, or the replay of a dead-letter entry):
 * load the job's users → settle them through the worker's {@link SettlementPipeline} (locks, group transactions) →
 * hand conflicts and permanent failures to the dead-letter queue → retry the job for transient failures, or
 * dead-letter them after the last attempt → mark the chunk complete. Every step is idempotent, so a job that runs
 * twice (stall, crash, retry) changes nothing. A PostgreSQL or Redis outage pauses the work; it spends no attempt.
 */
export async function processRewardJob(
  context: ProcessorContext,
  job: Job<RewardJobData>,
  token: string | undefined,
): Promise<JobResult> {
  const data = job.data;
  const maxAttempts = job.opts.attempts ?? 1;
  const attempt = job.attemptsMade + 1;
  const finalAttempt = attempt >= maxAttempts;
  const log = context.logger.child({
    jobId: job.id,
    batchId: data.batchId,
    ...(data.kind === 'chunk' ? { chunkNo: data.chunkNo } : { deadLetterId: data.deadLetterId }),
    shard: data.shard,
    attempt,
  });
  const started = performance.now();
  const { signal } = context;
  /** A job-level database step: waits out PostgreSQL outages, runs again after clashes. */
  const step = <T>(run: () => Promise<T>): Promise<T> =>
    databaseStep(context.postgresGate, run, signal).catch((error: unknown) => {
      throw signal.aborted ? new StoppingError('worker stopping', { cause: error }) : error;
    });

  /**
   * A step that moves the job's fence on (ADR 0013: the claim of its chunk or entry, the dead-letter writer), sent
   * again while it waits past its lock timeout for statements of the job still running in PostgreSQL (an earlier
   * attempt's, or one this attempt gave up on; their own lock timeout bounds them); the worker may stop between tries.
   */
  const behindFence = async <T>(run: () => Promise<T>): Promise<T> => {
    for (let waited = false; ; waited = true) {
      try {
        return await step(run);
      } catch (error) {
        if (!isLockTimeout(error)) throw error;
        if (signal.aborted) throw new StoppingError('worker stopping', { cause: error });
        if (!waited) log.warn('waiting for a statement of this job still running in PostgreSQL (an earlier attempt)');
      }
    }
  };

  try {
    let fence: string;
    let work: JobWork | null;
    let settling: Promise<UserOutcome[]>;
    if (data.kind === 'replay') {
      const claimed = await behindFence(() => claimEntry(context.pool, data.deadLetterId));
      if (claimed === null) {
        log.info('dead-letter entry was purged (or removed) before its replay ran; replay skipped');
        return NOTHING;
      }
      fence = claimed;
      // load only when the process's line of users is short, one job at a time: memory stays bounded whatever the
      // jobs in flight
      const admitted = await context.admission.enter(signal, job.opts.priority ?? 0);
      try {
        work = await step(() => loadReplayWork(context.pool, data.deadLetterId, claimed));
        if (!work) {
          log.warn('job points at a dead-letter entry that is not recorded; nothing to do');
          return NOTHING;
        }
        settling = context.pipeline.settle(work.tasks, job.opts.priority ?? 0);
      } finally {
        admitted(); // the job's users are in line now (or its load failed)
      }
    } else {
      const claimed = await behindFence(() => claimChunk(context.pool, data.batchId, data.chunkNo));
      if (claimed.kind !== 'claimed') {
        if (claimed.kind === 'missing') log.warn('job points at a chunk that is not recorded; nothing to do');
        else log.debug('chunk already complete; nothing to do');
        return NOTHING;
      }
      fence = claimed.fence;
      const admitted = await context.admission.enter(signal, job.opts.priority ?? 0);
      try {
        work = await step(() => loadClaimedChunk(context.pool, data.batchId, data.chunkNo, claimed));
        settling = context.pipeline.settle(work.tasks, job.opts.priority ?? 0);
      } finally {
        admitted();
      }
    }
    const outcomes = await settling;
    const summary = summarize(work.tasks, outcomes, attempt, finalAttempt);
    if (summary.fenced > 0) {
      throw new FencedOutError(
        `${summary.fenced} user(s) of this attempt found the job's fence moved on: another attempt claimed the job, or its rewards were given up`,
      );
    }

    const recorded = await behindFence(() =>
      data.kind === 'chunk'
        ? recordChunkDeadLetters(
            context.pool,
            { kind: 'chunk', batchId: data.batchId, chunkNo: data.chunkNo, fence },
            summary.deadLetters.map((entry): ChunkDeadLetter => ({
              batchId: data.batchId,
              chunkNo: data.chunkNo,
              shard: work.shard,
              uid: entry.task.uid,
              reason: entry.reason,
              error: entry.error,
              attempts: attempt,
              rewardIds: entry.rewardIds,
            })),
          )
        : recordReplayDeadLetters(
            context.pool,
            { kind: 'replay', deadLetterId: data.deadLetterId, fence },
            summary.deadLetters.map((entry): ReplayDeadLetter => ({
              replayOf: data.deadLetterId,
              reason: entry.reason,
              error: entry.error,
              attempts: attempt,
              rewardIds: entry.rewardIds,
            })),
          ),
    );
    const written: readonly WrittenDeadLetter[] = recorded.entries;
    fence = recorded.fence;

    const deadLettered = written.reduce((sum, entry) => sum + entry.rewardCount, 0);
    context.metrics?.rewards.inc({ outcome: 'applied' }, summary.applied);
    context.metrics?.rewards.inc({ outcome: 'duplicate' }, summary.duplicates);
    if (deadLettered > 0) context.metrics?.rewards.inc({ outcome: 'dead_lettered' }, deadLettered);
    for (const entry of written) context.metrics?.deadLetters.inc({ reason: entry.reason });
    if (written.length > 0) {
      for (const entry of written) {
        log.warn(
          { uid: entry.uid, reason: entry.reason, rewards: entry.rewardCount, entryId: entry.id, error: entry.error },
          'rewards dead-lettered',
        );
      }
      await context.onDeadLetters?.(written).catch((error: unknown) => {
        log.warn(
          { err: error },
          'could not mirror dead-letter entries into the dead-letter queue; they are recorded in PostgreSQL',
        );
      });
    }

    if (summary.interrupted > 0) throw new StoppingError(`${summary.interrupted} user(s) interrupted`);
    if (summary.retry.length > 0) {
      const users = summary.retry.map(({ uid, failure }) => `${uid} (${failure.reason}: ${failure.message})`);
      log.warn({ users: summary.retry.length, maxAttempts }, 'users failed for now; the job will be retried for them');
      throw new UsersRetryLaterError(
        `${summary.retry.length} user(s) failed transiently on attempt ${attempt} of ${maxAttempts}: ${users.slice(0, 5).join('; ')}`,
      );
    }

    await step(async () => {
      if (data.kind === 'chunk') {
        // only while this attempt still owns the chunk: a later attempt completes it itself
        await context.pool.query(
          'update reward_chunks set completed_at = now() where batch_id = $1 and chunk_no = $2 and fence = $3 and completed_at is null',
          [data.batchId, data.chunkNo, fence],
        );
      }
      await refreshStoredStatus(context.pool, work.batchId, context.events);
    });

    const result: JobResult = {
      users: work.tasks.length,
      applied: summary.applied,
      alreadyApplied: summary.alreadyApplied,
      duplicates: summary.duplicates,
      deadLettered,
    };
    log.debug({ ...result, ms: Math.round(performance.now() - started) }, 'job done');
    return result;
  } catch (error) {
    if (error instanceof FencedOutError) {
      // Another attempt owns the job (this one was taken over while frozen or cut off), or its rewards were given up
      // (a revert, a cancel): decide nothing more. If the job is still this worker's, it runs again later without
      // counting an attempt, and its next claim finds what is left to do; if not, BullMQ refuses the move.
      log.warn({ why: error.message }, 'job attempt fenced out: it applies and dead-letters nothing more');
      await job.moveToDelayed(Date.now() + 1000, token);
      throw new DelayedError();
    }
    if (!(error instanceof StoppingError)) throw error;
    // The worker is stopping: put the job back without counting an attempt; settled users are found settled next time.
    log.info({ why: error.message }, 'worker stopping: job put back for its remaining users');
    await job.moveToDelayed(Date.now() + 1000, token);
    throw new DelayedError();
  }
}
