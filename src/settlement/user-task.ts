import type { DeadLetterReason } from '../db/schema.js';
import type { ExistingEntry } from '../ledger/ledger-operation.js';

/** Where a user's rewards wait in PostgreSQL: the staged rows of a batch chunk, or a dead-letter entry being replayed. */
export type RewardSource =
  | {
      readonly kind: 'chunk';
      readonly batchId: string;
      readonly chunkNo: number;
      readonly shard: number;
      /** The user's rewards of the chunk already in its dead-letter entries: left out. */
      readonly excluded: readonly string[];
      /** The chunk's fence as the job attempt claimed it (ADR 0013): the statement settles nothing once it moved on. */
      readonly fence: string;
    }
  | {
      readonly kind: 'replay';
      readonly batchId: string;
      readonly deadLetterId: string;
      /** The entry's fence as the replay attempt claimed it (ADR 0013). */
      readonly fence: string;
    };

/** One user's part of a job, handed to the settlement pipeline. */
export interface UserTask {
  readonly uid: string;
  readonly source: RewardSource;
  /** Rewards to settle (for sizing transactions; the statement reads the rewards themselves). */
  readonly rewards: number;
}

/** A reward whose id the ledger holds with another user or amount. */
export interface ConflictingReward {
  readonly rewardId: string;
  readonly amount: bigint;
  readonly existing: ExistingEntry;
}

/** Why a user's rewards were not applied, and whether a later attempt may apply them. */
export interface UserFailure {
  readonly reason: DeadLetterReason;
  /** True when a later attempt of the job may succeed (a busy lock, a clash with concurrent transactions). */
  readonly transient: boolean;
  readonly message: string;
}

/** What became of a user's rewards in one job attempt: each user ends in exactly one of these. */
export type UserOutcome =
  | {
      readonly kind: 'settled';
      /** Inserted into the ledger now. */
      readonly applied: number;
      /** Applied earlier by the same batch (an earlier run of the job). */
      readonly alreadyApplied: number;
      /** Applied earlier by another batch or call, with the same user and amount. */
      readonly duplicates: number;
      /** Refused: the id was used with another user or amount. The user's other rewards were applied. */
      readonly conflicts: readonly ConflictingReward[];
    }
  | { readonly kind: 'failed'; readonly failure: UserFailure }
  /** The worker is stopping: not attempted, or cut short before its transaction; run it again later. */
  | { readonly kind: 'interrupted' }
  /**
   * Nothing applied: the fence of the user's chunk (or replayed entry) had moved on — a later attempt of its job
   * claimed it, or the rewards were given up (dead-lettered, reverted). This attempt must stop without deciding
   * anything more about the job's rewards.
   */
  | { readonly kind: 'fenced' };

export const INTERRUPTED: UserOutcome = Object.freeze({ kind: 'interrupted' });
export const FENCED: UserOutcome = Object.freeze({ kind: 'fenced' });

/** The outcome of a user whose rewards were not applied in this attempt. */
export function failedOutcome(reason: UserFailure['reason'], transient: boolean, message: string): UserOutcome {
  return { kind: 'failed', failure: { reason, transient, message } };
}
