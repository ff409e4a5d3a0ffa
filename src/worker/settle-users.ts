import type { Semaphore } from '../concurrency/semaphore.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { Reward } from '../rewards/reward.js';
import type { SettleContext } from '../wallet/settle-user.js';
import type { UserFailure } from '../wallet/user-failure.js';
import { classifyUserFailure } from '../wallet/user-failure.js';
import { describeConflict } from '../wallet/ledger-operation.js';
import type { UserWork } from './chunk-work.js';
import { pipelineOf } from './user-pipeline.js';

/** What happened to the users of a job in one attempt. */
export interface SettleSummary {
  applied: number;
  alreadyApplied: number;
  /** Reward ids found already applied elsewhere. */
  readonly duplicates: string[];
  /** Users whose rewards conflict (their other rewards were applied). */
  readonly conflicts: { uid: string; rewards: Reward[]; detail: string }[];
  /** Users that failed for good (e.g. invalid): dead-letter now. */
  readonly permanent: { uid: string; rewards: Reward[]; failure: UserFailure }[];
  /** Users that failed for now (busy lock, database down): retry, or dead-letter after the last attempt. */
  readonly transient: { uid: string; rewards: Reward[]; failure: UserFailure }[];
  /** Users not attempted or cut short because the worker is stopping: run them again later, no attempt counted. */
  readonly interrupted: string[];
}

/** Options of {@link settleUsers}. */
export interface SettleUsersOptions {
  readonly batchId: string;
  readonly policy: LockPolicy;
  /** Shared by every job of the process: bounds users in flight. */
  readonly limiter: Semaphore;
  readonly signal: AbortSignal;
}

/**
 * Applies each user's pending rewards under that user's lock, different users concurrently (bounded by the shared
 * limiter), through the process's {@link UserPipeline}: locks taken and released many users per Redis round trip,
 * one transaction per user. One user's failure never touches another's: every user ends in exactly one list of the
 * summary. Resolves once every user's lock is released.
 */
export async function settleUsers(context: SettleContext, users: readonly UserWork[], options: SettleUsersOptions): Promise<SettleSummary> {
  const summary: SettleSummary = {
    applied: 0,
    alreadyApplied: 0,
    duplicates: [],
    conflicts: [],
    permanent: [],
    transient: [],
    interrupted: [],
  };
  for (const user of users) {
    summary.alreadyApplied += user.alreadyApplied;
    summary.duplicates.push(...user.duplicates);
    if (user.conflicts.length > 0) {
      summary.conflicts.push({
        uid: user.uid,
        rewards: user.conflicts.map((c) => c.reward),
        detail: user.conflicts.map((c) => `${c.reward.rewardId}: ${c.detail}`).join('; '),
      });
    }
  }

  const pipeline = pipelineOf(options.limiter);
  await Promise.all(
    users
      .filter((user) => user.pending.length > 0)
      .map(async (user) => {
        if (options.signal.aborted) {
          summary.interrupted.push(user.uid);
          return;
        }
        try {
          const result = await pipeline.run({
            context,
            uid: user.uid,
            operations: user.pending.map((reward) => ({ operationId: reward.rewardId, amount: reward.amount, kind: 'reward' as const, description: reward.description })),
            batchId: options.batchId,
            policy: options.policy,
            signal: options.signal,
          });
          const conflicting: Reward[] = [];
          const details: string[] = [];
          result.results.forEach((outcome, index) => {
            const reward = user.pending[index]!;
            if (outcome.outcome === 'applied') summary.applied += 1;
            else if (outcome.outcome === 'already_applied') summary.alreadyApplied += 1;
            else if (outcome.outcome === 'duplicate') summary.duplicates.push(reward.rewardId);
            else {
              conflicting.push(reward);
              if (outcome.existing) details.push(`${reward.rewardId}: ${describeConflict(reward.uid, reward.amount, outcome.existing)}`);
            }
          });
          if (conflicting.length > 0) summary.conflicts.push({ uid: user.uid, rewards: conflicting, detail: details.join('; ') });
        } catch (error) {
          const failure = classifyUserFailure(error);
          if (failure.interrupted) summary.interrupted.push(user.uid);
          else if (failure.transient) summary.transient.push({ uid: user.uid, rewards: user.pending, failure });
          else summary.permanent.push({ uid: user.uid, rewards: user.pending, failure });
        }
      }),
  );
  return summary;
}
