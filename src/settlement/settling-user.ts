import type { LockHandle } from '../lock/user-locks.js';
import type { UserOutcome, UserTask } from './user-task.js';
import { INTERRUPTED } from './user-task.js';

/** A user on its way through the settlement pipeline: in line, then locked, in a transaction, and released. */
export interface SettlingUser {
  readonly task: UserTask;
  /** The job's BullMQ priority: the line is kept in this order (lower first), then in arrival order. */
  readonly rank: number;
  /** Its lock, once taken. */
  handle?: LockHandle;
  /** Its outcome, once known; delivered once its lock is given back. */
  outcome?: UserOutcome;
  /** Delivers the outcome to the user's job. */
  readonly done: (outcome: UserOutcome) => void;
}

/** Delivers each user's outcome (interrupted when none is known); called once their locks are given back or left to expire. */
export function deliverAfterRelease(users: readonly SettlingUser[]): void {
  for (const user of users) user.done(user.outcome ?? INTERRUPTED);
}
