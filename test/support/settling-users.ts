import type pg from 'pg';
import type { LockHandle } from '../../src/lock/user-locks.js';
import { silentLogger } from '../../src/log/logger.js';
import { ServiceGate } from '../../src/services/service-gate.js';
import type { GroupSettlementOptions } from '../../src/settlement/group-settlement.js';
import type { SettlingUser } from '../../src/settlement/settling-user.js';
import type { RewardSource, UserOutcome, UserTask } from '../../src/settlement/user-task.js';

/** A user for the parts of the settlement pipeline, recording the outcomes delivered to its job. */
export interface TrackedUser extends SettlingUser {
  /** Every outcome delivered, in order (one is expected). */
  readonly delivered: UserOutcome[];
  /** Resolves with the first outcome delivered. */
  readonly settled: Promise<UserOutcome>;
}

export interface TrackedUserOptions {
  readonly rank?: number;
  readonly rewards?: number;
  /** Default: chunk 0 of batch `b`. */
  readonly source?: RewardSource;
  /** A task of its own (staged rewards) instead of one made up from the other options. */
  readonly task?: UserTask;
  readonly handle?: LockHandle;
  readonly outcome?: UserOutcome;
}

export const SETTLED: UserOutcome = { kind: 'settled', applied: 1, alreadyApplied: 0, duplicates: 0, conflicts: [] };

export function trackedUser(uid: string, options: TrackedUserOptions = {}): TrackedUser {
  const delivered: UserOutcome[] = [];
  let resolve: (outcome: UserOutcome) => void = () => undefined;
  const settled = new Promise<UserOutcome>((done) => (resolve = done));
  const user: TrackedUser = {
    task: options.task ?? {
      uid,
      source: options.source ?? { kind: 'chunk', batchId: 'b', chunkNo: 0, shard: 0, excluded: [], fence: '0' },
      rewards: options.rewards ?? 1,
    },
    rank: options.rank ?? 0,
    delivered,
    settled,
    done: (outcome) => {
      delivered.push(outcome);
      resolve(outcome);
    },
  };
  if (options.handle) user.handle = options.handle;
  if (options.outcome) user.outcome = options.outcome;
  return user;
}

/**
 * Options of a group settlement as a test runs it: statements on `statements`, a gate that probes `control`, never
 * aborted, silent; waits of 5 s (a held row in a group) and 60 s (a user alone) unless given.
 */
export function groupSettlementOptions(
  statements: pg.Pool,
  control: pg.Pool,
  options: Partial<Pick<GroupSettlementOptions, 'lockWaitMs' | 'heldRowWaitMs' | 'metrics'>> = {},
): GroupSettlementOptions {
  const gate = new ServiceGate({
    service: 'PostgreSQL',
    probe: () => control.query('select 1'),
    isFault: () => false,
    logger: silentLogger(),
  });
  return {
    pool: statements,
    gate,
    signal: new AbortController().signal,
    logger: silentLogger(),
    metrics: options.metrics,
    lockWaitMs: options.lockWaitMs ?? 5000,
    heldRowWaitMs: options.heldRowWaitMs ?? 60_000,
  };
}
